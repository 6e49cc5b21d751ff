"""The notifier against the loopback Slack: one thread per incident, the card updated in place, history as replies."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.blocks import render_incident_thread
from bot.core.routing import Router
from bot.delivery.notifier import Notifier, PublishResult, make_client
from storage.openmetadata.fqn import url_segment
from storage.persistence import incidents, outbox, threads
from storage.persistence.db import make_engine, session_factory
from tests.agents.test_pipeline import ORDERS_TEST, STG_ORDERS, all_incidents, detail, rename, sync_and_process

DEFAULT, ORDERS, ANALYTICS = "C_DEFAULT", "C_ORDERS", "C_ANALYTICS"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROUTES = f"""
default_channel: {DEFAULT}
rules:
  - match: {{fqn: "{STG_ORDERS}"}}
    channel: {ORDERS}
  - match: {{fqn: "warehouse.shop.analytics.*"}}
    channel: {ANALYTICS}
owners:
  ana: U0ANA
"""


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def router(tmp_path: Path) -> Router:
    path = tmp_path / "routing.yml"
    path.write_text(ROUTES, encoding="utf-8")
    return Router.from_file(path)


@pytest.fixture
def notifier(slack_api, router: Router) -> Notifier:
    client = make_client(slack_api.token, base_url=slack_api.url)
    return Notifier(client, router, om_ui_url="http://om.example")


def fail_orders_test(om) -> None:
    om.admin(
        "POST", f"/admin/tests/{url_segment(ORDERS_TEST)}/result", {"status": "Failed", "result": "status is NULL"}
    )


def texts(message: dict) -> str:
    """Everything a reader sees in one message: its text and every text object in its blocks."""
    found: list[str] = [message.get("text") or ""]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.get("blocks") or [])
    return "\n".join(found)


def renamed_incident(db_url: str, om, engine: Engine, notifier: Notifier) -> tuple[int, str]:
    """Given a synced catalog already on Slack, when `status` is renamed upstream: the new incident and its ts."""
    sync_and_process(db_url, om)
    notifier.publish(engine)
    rename(om, "status", "order_state")
    _, run = sync_and_process(db_url, om)
    [incident_id] = run.opened
    result = notifier.publish(engine)
    assert result.posted == [incident_id] and result.updated == [] and result.failed == []
    with session_factory(engine)() as session:
        thread = threads.thread_of(session, incident_id)
    assert thread is not None and thread.channel == ORDERS
    return incident_id, thread.ts


def test_a_rename_opens_one_thread_with_the_card_the_details_and_the_lineage_picture(
    db_url, om_demo, engine, notifier, slack_api
):
    incident_id, ts = renamed_incident(db_url, om_demo, engine, notifier)

    [card] = slack_api.parents(ORDERS)
    assert card["ts"] == ts
    assert card["metadata"]["event_type"] == "dnabot_incident"
    assert card["metadata"]["event_payload"]["incident_id"] == incident_id
    seen = texts(card)
    assert "SEV1" in seen and "stg_orders" in seen and "<@U0ANA>" in seen
    assert "http://om.example/table/" in str(card["blocks"])

    story = detail(db_url, incident_id)
    replies = slack_api.thread(ORDERS, ts)[1:]
    posted = [m for m in replies if m.get("blocks")]
    assert len(posted) == len(render_incident_thread(story)) >= 1
    [png] = [f for f in slack_api.files if f["channel"] == ORDERS]
    assert png["thread_ts"] == ts and png["name"] == f"incident-{incident_id}-lineage.png"
    assert png["content"].startswith(PNG_MAGIC)

    # The earlier, already-known incident went to the default channel, not into this thread.
    assert len(slack_api.parents(DEFAULT)) == 1

    # Nothing new: a second publish posts, updates and uploads nothing.
    calls = len(slack_api.calls())
    assert notifier.publish(engine) == PublishResult()
    assert len(slack_api.calls()) == calls


def test_a_failing_test_joins_the_thread_and_updates_the_card(db_url, om_demo, engine, notifier, slack_api):
    incident_id, ts = renamed_incident(db_url, om_demo, engine, notifier)
    before = len(slack_api.thread(ORDERS, ts))

    fail_orders_test(om_demo)
    _, run = sync_and_process(db_url, om_demo)
    assert incident_id in run.attached
    result = notifier.publish(engine)

    assert result.posted == [] and result.updated == [incident_id] and result.replies >= 1
    assert [c.args["ts"] for c in slack_api.calls("chat.update")] == [ts]
    assert len(slack_api.parents(ORDERS)) == 1  # no new top-level post
    thread = slack_api.thread(ORDERS, ts)
    assert len(thread) == before + result.replies
    assert any("symptom" in texts(m) for m in thread[before:])
    assert slack_api.message(ORDERS, ts).get("edited")


def test_a_status_change_updates_the_card_and_is_told_in_the_thread(db_url, om_demo, engine, notifier, slack_api):
    incident_id, ts = renamed_incident(db_url, om_demo, engine, notifier)

    with session_factory(engine).begin() as session:
        incidents.set_status(session, incident_id, "acknowledged", actor="U0ANA", now=datetime.now(UTC))
    result = notifier.publish(engine)

    assert result == PublishResult(updated=[incident_id], replies=1)
    card = slack_api.message(ORDERS, ts)
    assert "acknowledged" in texts(card).lower()
    last = slack_api.thread(ORDERS, ts)[-1]
    assert "acknowledged the incident" in texts(last) and "<@U0ANA>" in texts(last)
    assert notifier.publish(engine) == PublishResult()


def test_a_rate_limited_post_is_retried_and_posted_once(db_url, om_demo, engine, notifier, slack_api):
    sync_and_process(db_url, om_demo)
    slack_api.fail("chat.postMessage", status=429, retry_after=0, times=1)

    result = notifier.publish(engine)

    [known] = [i.id for i in all_incidents(db_url)]
    assert result.posted == [known] and result.failed == []
    [card] = slack_api.parents(DEFAULT)
    assert card["metadata"]["event_payload"]["incident_id"] == known
    parent_posts = [c for c in slack_api.calls("chat.postMessage") if not c.args.get("thread_ts")]
    assert len(parent_posts) == 2  # refused once with 429, then accepted: one card
    assert notifier.publish(engine) == PublishResult()


def test_a_slack_error_leaves_the_incident_pending_for_the_next_publish(db_url, om_demo, engine, notifier, slack_api):
    sync_and_process(db_url, om_demo)
    slack_api.fail("chat.postMessage", error="channel_not_found", times=1)

    [known] = [i.id for i in all_incidents(db_url)]
    assert notifier.publish(engine) == PublishResult(failed=[known])
    with session_factory(engine)() as session:
        assert threads.thread_of(session, known) is None and threads.pending(session) == [known]

    with session_factory(engine)() as session:
        row = outbox.rows(session, status=outbox.PENDING)[-1]  # the oldest: the others wait behind it
    assert row.kind == "card" and "channel_not_found" in (row.last_error or "")
    assert row.attempts == 0  # a workspace to fix (invite the bot) never counts towards a dead letter
    assert row.available_at > datetime.now(UTC)  # backing off: an immediate publish does not hammer Slack
    assert notifier.publish(engine) == PublishResult()

    later = datetime.now(UTC) + timedelta(minutes=2)  # such a row is checked again about every minute
    assert notifier.publish(engine, now=later).posted == [known]
    assert len(slack_api.parents(DEFAULT)) == 1


def test_routing_sends_an_analytics_incident_to_its_channel_and_skips_resolved_ones(
    db_url, om_demo, engine, notifier, slack_api
):
    sync_and_process(db_url, om_demo)
    [known] = [i.id for i in all_incidents(db_url)]
    with session_factory(engine).begin() as session:
        incidents.set_status(session, known, "resolved", actor="U0ANA", now=datetime.now(UTC), reason="fixed")
    fail_orders_test(om_demo)
    _, run = sync_and_process(db_url, om_demo)
    [analytics] = run.opened

    result = notifier.publish(engine)

    assert result.posted == [analytics]  # the resolved incident never had a thread, so it gets none
    [card] = slack_api.parents(ANALYTICS)
    assert card["metadata"]["event_payload"]["incident_id"] == analytics
    assert "warehouse.shop.analytics.orders" in texts(card)
    assert slack_api.parents(DEFAULT) == [] and slack_api.parents(ORDERS) == []


def test_a_card_slack_took_without_the_answer_being_recorded_is_adopted_not_posted_again(
    db_url, om_demo, engine, notifier, slack_api
):
    sync_and_process(db_url, om_demo)
    [known] = [i.id for i in all_incidents(db_url)]
    # A replica claimed the card, Slack took the post, and the replica died before recording the answer.
    [claimed] = outbox.claim(
        engine, "dead-replica/1", now=datetime.now(UTC), lease_seconds=0.05, lanes=["slack:incident:1"]
    )
    fp = detail(db_url, known).incident.fingerprint
    client = make_client(slack_api.token, base_url=slack_api.url)
    meta = {
        "event_type": "dnabot_incident",
        "event_payload": {"incident_id": known, "fingerprint": fp, "key": claimed.key},
    }
    posted = client.chat_postMessage(channel=DEFAULT, text="old card", metadata=meta)
    time.sleep(0.1)  # the dead replica's claim runs out

    result = notifier.publish(engine)

    assert result.posted == [known]
    [card] = slack_api.parents(DEFAULT)
    assert card["ts"] == posted["ts"] and card.get("edited")  # adopted and brought up to date
    with session_factory(engine)() as session:
        assert threads.thread_of(session, known).ts == posted["ts"]
    assert len(slack_api.thread(DEFAULT, posted["ts"])) > 1  # its details followed into that thread
    assert slack_api.calls("conversations.history")  # it looked before posting, because the row was tried


def test_a_first_attempt_posts_without_reading_the_channel(db_url, om_demo, engine, notifier, slack_api):
    sync_and_process(db_url, om_demo)
    assert notifier.publish(engine).posted
    assert not slack_api.calls("conversations.history")  # the fast path: one post, no history call


def test_a_dead_card_is_revived_once_its_cause_is_fixed(db_url, om_demo, engine, notifier, slack_api):
    sync_and_process(db_url, om_demo)
    [known] = [i.id for i in all_incidents(db_url)]
    slack_api.fail("chat.postMessage", error="invalid_blocks", times=10)  # refused for good: dead at once
    assert notifier.publish(engine).failed == [known]
    with session_factory(engine)() as session:
        dead = [r.kind for r in outbox.rows(session, status=outbox.DEAD)]
        assert dead and set(dead) == {"card"} and threads.thread_of(session, known) is None
    slack_api.state.faults.clear()  # the blocks are fixed (a new release)

    assert notifier.reconcile(engine) == 1  # the next tick revives it (the workspace may have been fixed)
    assert notifier.publish(engine).posted == [known]
    assert len(slack_api.parents(DEFAULT)) == 1


def test_two_drainers_on_a_slow_slack_post_each_card_once(db_url, om_demo, engine, router, slack_api):
    """A batch is delivered row after row: with Slack slow, the later rows' claims could run out mid-batch and a
    second drainer take them over. Claims renewed row by row, and a new card always looking for one already
    posted, keep it to one card per incident."""
    sync_and_process(db_url, om_demo)
    for table, column in (
        (STG_ORDERS, "status"),
        ("warehouse.shop.staging.stg_customers", "email"),
        ("warehouse.shop.raw.orders", "amount"),
        ("warehouse.shop.raw.customers", "country"),
    ):
        om_demo.admin("POST", f"/admin/tables/{url_segment(table)}/columns/{column}/rename", {"newName": f"{column}2"})
    sync_and_process(db_url, om_demo)
    expected = {i.id for i in all_incidents(db_url) if i.status != "resolved"}
    assert len(expected) >= 4
    slack_api.stall("chat.postMessage", 0.6, times=200)  # every post lands, its answer comes 0.6 s later

    def drainer(name: str) -> Notifier:
        client = make_client(slack_api.token, base_url=slack_api.url)
        return Notifier(client, router, holder=name, claim_seconds=2.0, batch=20)

    first = threading.Thread(target=drainer("replica-a").publish, args=(engine,))
    first.start()
    second = drainer("replica-b")
    while first.is_alive():  # a second drainer polls while the first is still busy with its batch
        second.publish(engine)
        time.sleep(0.1)
    drainer("replica-c").publish(engine, now=datetime.now(UTC) + timedelta(minutes=10))  # whatever is left

    cards = Counter(
        m["metadata"]["event_payload"]["incident_id"]
        for channel in (DEFAULT, ORDERS, ANALYTICS)
        for m in slack_api.parents(channel)
        if (m.get("metadata") or {}).get("event_type") == "dnabot_incident"
    )
    assert set(cards) == expected and set(cards.values()) == {1}, cards
