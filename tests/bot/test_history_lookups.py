"""Rate-aware recovery and refused payloads in the outbox, against the loopback Slack.

Slack's history methods allow non-Marketplace apps about one call a minute: a retry reads the channel back only
when the attempt before it may have posted (a timeout, a 5xx without a body), at most once per channel per minute,
and a message Slack refuses as too long is sent smaller, never again as it was."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.error import URLError

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse
from sqlalchemy import Engine

from bot.blocks.kit import section, text_units
from bot.core.routing import Router
from bot.delivery import lookup
from bot.delivery.notifier import SMALLER_TEXT, Notifier, make_client
from storage.openmetadata.fqn import url_segment
from storage.persistence import outbox, threads
from storage.persistence.db import session_factory
from tests.agents.test_pipeline import STG_ORDERS, all_incidents, sync_and_process
from tests.bot import test_notifier

engine = test_notifier.engine  # the store, over SQLite and PostgreSQL
CHANNEL = "C_INCIDENTS"
HISTORY = ("conversations.history", "conversations.replies")


class Clock:
    """A monotonic clock the test moves (the read-back budget's minute)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def notifier(slack_api, clock: Clock) -> Notifier:
    """A drainer whose Slack calls time out after 1 s (claims of 3 s), with its own read-back budget."""
    client = make_client(slack_api.token, base_url=slack_api.url)
    budget = lookup.HistoryBudget(clock=clock)
    return Notifier(client, Router([], CHANNEL), claim_seconds=3.0, history=budget)


def read_backs(slack_api) -> int:
    return sum(len(slack_api.calls(m)) for m in HISTORY)


def cards(slack_api) -> Counter[int]:
    return Counter(
        m["metadata"]["event_payload"]["incident_id"]
        for m in slack_api.parents(CHANNEL)
        if (m.get("metadata") or {}).get("event_type") == "dnabot_incident"
    )


def later(minutes: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


# ------------------------------------------------------------------------------------------ when to read back


@pytest.mark.parametrize(
    "fault", [{"status": 429, "retry_after": 0}, {"status": 500}, {"error": "ratelimited"}], ids=str
)
def test_a_definite_refusal_then_success_posts_without_reading_the_channel(
    db_url, om_demo, engine, notifier, slack_api, fault
):
    """A 429 or an `ok: false` answer proves nothing was posted: the retry posts straight away."""
    sync_and_process(db_url, om_demo)
    slack_api.fail("chat.postMessage", times=1, **fault)

    notifier.publish(engine)
    notifier.publish(engine, now=later(10))  # past any backoff

    [known] = [i.id for i in all_incidents(db_url)]
    assert cards(slack_api) == {known: 1}
    assert read_backs(slack_api) == 0
    assert len([c for c in slack_api.calls("chat.postMessage") if not c.args.get("thread_ts")]) == 2


def test_a_timeout_then_success_reads_the_channel_once_and_adopts_the_card(
    db_url, om_demo, engine, notifier, slack_api
):
    """The post landed but its answer never came: the retry reads the channel back once, finds the card and
    adopts it; the thread follows into that message."""
    sync_and_process(db_url, om_demo)
    [known] = [i.id for i in all_incidents(db_url)]
    slack_api.stall("chat.postMessage", 2.0)  # Slack posts it, the answer comes after the client's 1 s timeout

    first = notifier.publish(engine)  # times out; retried in this drain or the next once its backoff is over
    second = notifier.publish(engine, now=later(10))

    assert first.posted + second.posted == [known] and cards(slack_api) == {known: 1}
    assert len(slack_api.calls("conversations.history")) == 1
    [card] = slack_api.parents(CHANNEL)
    assert card.get("edited")  # adopted and brought up to date, not posted again
    with session_factory(engine)() as session:
        assert threads.thread_of(session, known).ts == card["ts"]
    assert len(slack_api.thread(CHANNEL, card["ts"])) > 1
    assert not slack_api.calls("conversations.replies")  # the details were first attempts: no read-back


def test_a_storm_of_unsure_failures_on_one_channel_reads_it_back_at_most_once_a_minute(
    db_url, om_demo, engine, notifier, slack_api, clock
):
    sync_and_process(db_url, om_demo)
    for table, column in (
        (STG_ORDERS, "status"),
        ("warehouse.shop.staging.stg_customers", "email"),
        ("warehouse.shop.raw.orders", "amount"),
    ):
        om_demo.admin("POST", f"/admin/tables/{url_segment(table)}/columns/{column}/rename", {"newName": f"{column}2"})
    sync_and_process(db_url, om_demo)
    expected = {i.id for i in all_incidents(db_url) if i.status != "resolved"}
    assert len(expected) >= 3
    slack_api.stall("chat.postMessage", 1.5, times=len(expected))  # every card lands, no answer comes back

    notifier.publish(engine)
    assert read_backs(slack_api) <= 1
    minute = 0
    while pending_cards(engine) and minute < 3 * len(expected):
        minute += 1
        clock.now += 61  # the next minute of the read-back budget
        notifier.publish(engine, now=later(10 * minute))
        assert read_backs(slack_api) <= minute + 1  # the channel read back at most once a minute
    assert not pending_cards(engine)
    assert cards(slack_api) == Counter({i: 1 for i in expected})  # nothing lost, nothing doubled
    assert read_backs(slack_api) >= 1  # and the cards that landed unseen were found, not posted again


def pending_cards(engine: Engine) -> int:
    with session_factory(engine)() as session:
        return sum(1 for r in outbox.rows(session, status=outbox.PENDING, limit=500) if r.kind == "card")


def test_slack_s_429_on_the_read_back_is_honoured_by_waiting(db_url, om_demo, engine, notifier, slack_api, clock):
    sync_and_process(db_url, om_demo)
    [known] = [i.id for i in all_incidents(db_url)]
    slack_api.stall("chat.postMessage", 2.0)
    slack_api.fail("conversations.history", status=429, retry_after=120, times=1)

    notifier.publish(engine)
    notifier.publish(engine, now=later(10))

    with session_factory(engine)() as session:
        [row] = [r for r in outbox.rows(session, status=outbox.PENDING) if r.kind == "card" and r.last_error]
    assert "120s" in (row.last_error or "") and "looks]" in (row.last_error or "")
    assert cards(slack_api) == {known: 1} and len(slack_api.calls("conversations.history")) == 1  # waits: no post
    assert len([c for c in slack_api.calls("chat.postMessage") if not c.args.get("thread_ts")]) == 1

    clock.now += 121  # Slack's Retry-After is over
    assert notifier.publish(engine, now=later(20)).posted == [known]
    assert cards(slack_api) == {known: 1} and len(slack_api.calls("conversations.history")) == 2


def test_what_counts_as_an_unsure_failure() -> None:
    def api_error(status: int, error: str) -> SlackApiError:
        response = SlackResponse(
            client=None,
            http_verb="POST",
            api_url="https://slack.com/api/chat.postMessage",
            req_args={},
            data={"ok": False, "error": error},
            headers={},
            status_code=status,
        )
        return SlackApiError(error, response)

    assert lookup.unsure(TimeoutError("timed out")) and lookup.unsure(ConnectionResetError())
    assert lookup.unsure(api_error(502, "Received a response in a non-JSON format: <html>bad gateway"))
    assert not lookup.unsure(api_error(429, "ratelimited")) and not lookup.unsure(api_error(200, "channel_not_found"))
    assert not lookup.unsure(api_error(500, "fatal_error"))  # an `ok: false` answer: Slack says it did not post
    assert not lookup.unsure(URLError(ConnectionRefusedError()))  # nothing was sent
    assert lookup.must_look(2, None)  # an attempt that left no word (its replica died): look
    assert not lookup.must_look(2, lookup.marked("HTTP 429", 2, False))
    assert lookup.must_look(3, lookup.marked("HTTP 429", 2, False))  # attempt 2 vanished after it
    assert lookup.must_look(2, lookup.marked("TimeoutError", 2, True))


def test_the_read_back_budget_allows_one_call_per_channel_a_minute() -> None:
    clock = Clock()
    budget = lookup.HistoryBudget(clock=clock)
    assert budget.read("C1", lambda: "read") == "read" and budget.read("C2", lambda: "other") == "other"
    with pytest.raises(lookup.LookLater) as waiting:
        budget.read("C1", lambda: "again")
    assert 59 < waiting.value.seconds <= 60
    clock.now += 60
    assert budget.read("C1", lambda: "next minute") == "next minute"


# ------------------------------------------------------------------------------------------ refused payloads


def test_a_card_refused_as_too_long_is_sent_smaller_never_again_as_it_was(db_url, om_demo, engine, notifier, slack_api):
    sync_and_process(db_url, om_demo)
    [known] = [i.id for i in all_incidents(db_url)]
    slack_api.fail("chat.postMessage", error="msg_blocks_too_long", times=1)

    result = notifier.publish(engine)

    assert result.posted == [known] and result.failed == []
    [card] = slack_api.parents(CHANNEL)
    assert f"`dnabot incident {known}` shows it in full" in card["blocks"][0]["text"]["text"]
    posts = [c for c in slack_api.calls("chat.postMessage") if not c.args.get("thread_ts")]
    assert len(posts) == 2 and posts[0].args["blocks"] != posts[1].args["blocks"]
    assert len(slack_api.thread(CHANNEL, card["ts"])) > 1  # the thread goes on under the short card


def digest_row(engine: Engine, blocks: list[dict]) -> str:
    key = "digest:C_INCIDENTS:2026-11-24"
    with session_factory(engine).begin() as session:
        payload = {"channel": CHANNEL, "count": 3, "text": "Daily incident digest", "blocks": blocks}
        outbox.enqueue(session, key, "digest", lane=f"digest:{CHANNEL}", now=datetime.now(UTC), payload=payload)
    return key


def test_a_long_message_refused_is_re_rendered_within_a_smaller_budget_once(engine, notifier, slack_api):
    blocks = [section(f"{i} " + "x" * 2800) for i in range(3)]  # 8.4k: within our budget, refused all the same
    key = digest_row(engine, blocks)
    slack_api.fail("chat.postMessage", error="msg_blocks_too_long", times=1)

    notifier.publish(engine)

    first, second = slack_api.calls("chat.postMessage")
    assert text_units(first.args["blocks"]) > SMALLER_TEXT >= text_units(second.args["blocks"])
    assert "`/dna incidents open` shows it all" in str(second.args["blocks"])
    with session_factory(engine)() as session:
        assert outbox.delivered_result(session, key) is not None


def test_a_message_refused_however_small_is_dead_at_once_and_never_retried(engine, notifier, slack_api):
    key = digest_row(engine, [section(f"{i} " + "x" * 2800) for i in range(3)])
    slack_api.fail("chat.postMessage", error="msg_blocks_too_long", times=5)

    notifier.publish(engine)
    notifier.publish(engine, now=later(60))

    assert len(slack_api.calls("chat.postMessage")) == 3  # as rendered, smaller, the short fallback: then no more
    with session_factory(engine)() as session:
        [row] = [r for r in outbox.rows(session) if r.key == key]
    assert row.status == outbox.DEAD and "msg_blocks_too_long" in (row.last_error or "")
