"""Three real `dnabot serve` replicas (HTTP mode) on one PostgreSQL: nothing lost, nothing doubled.

Each test starts the processes against a fresh database, the loopback Slack Web API and the OpenMetadata
simulator, then breaks something upstream (or in Slack, or in a replica) and checks what Slack ends up showing.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.core.actions import ActionId, encode_value
from storage.openmetadata.fqn import url_segment
from tests.e2e.replicas import CHANNEL, ReplicaSet, wait_until
from tests.fakes.db import fresh_database
from tests.fakes.slack_signing import app_mention_event, block_action, slash_command

pytestmark = pytest.mark.postgres

STG_ORDERS = "warehouse.shop.staging.stg_orders"
ANALYTICS_ORDERS = "warehouse.shop.analytics.orders"


@pytest.fixture
def cluster(om_demo, slack_api, tmp_path: Path) -> Iterator[ReplicaSet]:
    with fresh_database("postgres") as url:
        replicas = ReplicaSet(url, om_demo, slack_api, tmp_path)
        try:
            yield replicas
        finally:
            replicas.stop()


def incident_cards(slack_api) -> Counter[int]:
    """How many top-level cards each incident has in the incident channel."""
    found: Counter[int] = Counter()
    for message in slack_api.parents(CHANNEL):
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        if "incident_id" in payload:
            found[payload["incident_id"]] += 1
    return found


def rename(om, fqn: str, old: str, new: str) -> None:
    om.admin("POST", f"/admin/tables/{url_segment(fqn)}/columns/{old}/rename", {"newName": new})


def open_incidents(cluster: ReplicaSet) -> set[int]:
    return {row.id for row in cluster.query("SELECT id FROM incidents WHERE status <> 'resolved'")}


def settled(cluster: ReplicaSet, slack_api, count: int) -> Counter[int]:
    """Wait until `count` incidents have a card and the outbox has nothing left to deliver."""

    def done() -> Counter[int] | None:
        cards = incident_cards(slack_api)
        pending = cluster.query("SELECT count(*) AS n FROM outbox WHERE status = 'pending'")[0].n
        return cards if len(cards) >= count and pending == 0 else None

    try:
        return wait_until(done, 60, f"{count} incident cards and an empty outbox")
    except TimeoutError:
        print(cluster.logs())
        raise


def test_three_replicas_post_one_thread_per_incident_and_never_sync_at_once(cluster, om_demo, slack_api):
    cluster.start(3)
    first = settled(cluster, slack_api, 1)  # the test incident OpenMetadata already has open
    rename(om_demo, STG_ORDERS, "status", "order_state")
    rename(om_demo, ANALYTICS_ORDERS, "status", "state")
    cards = settled(cluster, slack_api, len(first) + 1)
    wait_until(lambda: len(cluster.query("SELECT id FROM sync_runs WHERE status = 'succeeded'")) >= 6, 30, "6 syncs")

    cards = incident_cards(slack_api)
    assert cards and set(cards.values()) == {1}, cards  # exactly one card per incident
    assert open_incidents(cluster) <= set(cards)
    for incident_id in cards:  # each thread has its details once and its picture once
        [row] = cluster.query("SELECT channel, ts FROM incident_threads WHERE incident_id = :i", i=incident_id)
        thread = slack_api.thread(row.channel, row.ts)
        keys = [((m.get("metadata") or {}).get("event_payload") or {}).get("key") for m in thread]
        keys = [k for k in keys if k]
        assert len(keys) == len(set(keys)), keys
        assert sum(1 for f in slack_api.files if f["thread_ts"] == row.ts) == 1

    runs = cluster.query("SELECT started_at, finished_at FROM sync_runs ORDER BY started_at")
    span = (runs[-1].started_at - runs[0].started_at).total_seconds()
    assert len(runs) <= span / 2 + 2, (len(runs), span)  # once per 2 s tick across the replicas, not three times
    for before, after in itertools.pairwise(runs):
        assert before.finished_at is not None and before.finished_at <= after.started_at, (before, after)
    holders = {row.holder for row in cluster.query("SELECT holder FROM leases WHERE name = 'scheduler'")}
    assert len(holders) == 1 and holders <= {"r0", "r1", "r2"}
    leading = [r.name for r in cluster.replicas if httpx.get(f"{r.url}/healthz").json()["replica"]["leader"]]
    assert leading == list(holders)  # each replica knows whether it leads
    assert cluster.query("SELECT count(*) AS n FROM outbox WHERE status = 'dead'")[0].n == 0


def test_a_replica_killed_mid_post_leaves_exactly_one_thread(cluster, om_demo, slack_api):
    cluster.start(3)
    settled(cluster, slack_api, 1)
    before = set(incident_cards(slack_api))
    slack_api.stall("chat.postMessage", 30)  # the next post lands in Slack, but its sender never hears back

    rename(om_demo, STG_ORDERS, "status", "order_state")
    stuck = wait_until(
        lambda: cluster.query(
            "SELECT incident_id, claimed_by FROM outbox WHERE kind = 'card' AND status = 'pending' "
            "AND claimed_by IS NOT NULL"
        ),
        30,
        "a replica claiming the new card",
    )[0]
    wait_until(lambda: set(incident_cards(slack_api)) - before, 10, "the card reaching Slack")
    victim = cluster.by_name(stuck.claimed_by.split("/")[0])  # claims are <replica>/<token>
    victim.kill9()  # posted, not recorded: the claim runs out and another replica takes the row over

    cards = settled(cluster, slack_api, len(before) + 1)
    victim.start()
    wait_until(victim.healthy, 60, "the killed replica back")
    cards = settled(cluster, slack_api, len(before) + 1)

    assert cards[stuck.incident_id] == 1, cards
    assert set(cards.values()) == {1}
    [row] = cluster.query(
        "SELECT attempts, claimed_by, status FROM outbox WHERE kind = 'card' AND incident_id = :i ORDER BY id LIMIT 1",
        i=stuck.incident_id,
    )
    assert row.status == "delivered" and row.attempts >= 2  # retried after looking: adopted, not re-posted
    [thread] = cluster.query("SELECT channel, ts FROM incident_threads WHERE incident_id = :i", i=stuck.incident_id)
    replies = slack_api.thread(thread.channel, thread.ts)[1:]
    assert replies and sum(1 for f in slack_api.files if f["thread_ts"] == thread.ts) == 1


def test_slack_failing_for_a_while_loses_nothing(cluster, om_demo, slack_api):
    cluster.start(3)
    settled(cluster, slack_api, 1)
    before = set(incident_cards(slack_api))
    slack_api.fail("chat.postMessage", status=500, times=6)
    slack_api.fail("chat.postMessage", status=429, retry_after=1, times=4)
    slack_api.fail("files.getUploadURLExternal", status=503, times=3)

    rename(om_demo, STG_ORDERS, "status", "order_state")
    rename(om_demo, ANALYTICS_ORDERS, "status", "state")
    cards = settled(cluster, slack_api, len(before) + 2)

    assert set(cards.values()) == {1}, cards
    refused = [c for c in slack_api.calls("chat.postMessage") if c.at]  # every call, refused ones included
    assert len(refused) > sum(cards.values())  # the failures did happen
    for incident_id in set(cards) - before:
        [thread] = cluster.query("SELECT channel, ts FROM incident_threads WHERE incident_id = :i", i=incident_id)
        assert len(slack_api.thread(thread.channel, thread.ts)) > 1
        assert sum(1 for f in slack_api.files if f["thread_ts"] == thread.ts) == 1
    assert cluster.query("SELECT count(*) AS n FROM outbox WHERE status = 'dead'")[0].n == 0


def test_the_same_event_delivered_three_times_is_processed_once(cluster, om_demo, slack_api):
    replicas = cluster.start(3)
    settled(cluster, slack_api, 1)
    ts = slack_api.user_message("C1", "<@UBOT> why did stg_orders break?")
    body = app_mention_event("<@UBOT> why did stg_orders break?", ts=ts, event_id="EvE2E0000001")
    answers = [replicas[0].post(body), replicas[1].post(body, retry_num=1), replicas[2].post(body, retry_num=2)]
    assert [a.status_code for a in answers] == [200, 200, 200]

    slack_api.wait_for(lambda: [m for m in slack_api.thread("C1", ts) if m["ts"] != ts and m.get("edited")], 20)
    command = slash_command("status", response_url=slack_api.response_url("status"))
    assert replicas[1].post(command).status_code == 200
    assert replicas[2].post(command, retry_num=1).status_code == 200
    slack_api.wait_for(lambda: slack_api.responses("status"), 20)

    time.sleep(2)  # time for a doubled answer to show up, if there were one
    replies = [m for m in slack_api.thread("C1", ts) if m["ts"] != ts]
    assert len(replies) == 1, replies
    assert len(slack_api.responses("status")) == 1
    assert cluster.query("SELECT count(*) AS n FROM inbound_events WHERE source = 'slack'")[0].n == 2


def test_a_dead_leader_is_replaced_and_the_ticks_go_on(cluster, om_demo, slack_api):
    cluster.start(3)
    settled(cluster, slack_api, 1)
    [lease] = cluster.query("SELECT holder, expires_at FROM leases WHERE name = 'scheduler'")
    leader = cluster.by_name(lease.holder)
    leader.kill9()  # no clean shutdown: the lease is not released, it has to run out
    killed_at = cluster.query("SELECT now() AS killed_at")[0].killed_at

    def new_leader() -> str | None:
        [row] = cluster.query("SELECT holder FROM leases WHERE name = 'scheduler'")
        return row.holder if row.holder != lease.holder else None

    successor = wait_until(new_leader, 30, "another replica taking the lease")
    assert successor in {"r0", "r1", "r2"} - {lease.holder}
    # the new leader's ticks sync, and a change made now still gets its one thread
    rename(om_demo, STG_ORDERS, "status", "order_state")
    cards = settled(cluster, slack_api, 2)
    assert set(cards.values()) == {1}
    after = cluster.query(
        "SELECT count(*) AS n FROM sync_runs WHERE started_at > :t AND status = 'succeeded'", t=killed_at
    )
    assert after[0].n >= 1


def test_a_click_and_its_retry_on_two_replicas_change_the_card_once(cluster, om_demo, slack_api):
    replicas = cluster.start(3)
    settled(cluster, slack_api, 1)
    rename(om_demo, STG_ORDERS, "status", "order_state")
    cards = settled(cluster, slack_api, 2)
    [row] = cluster.query(
        "SELECT i.id, i.fingerprint, t.channel, t.ts FROM incidents i JOIN incident_threads t ON t.incident_id = i.id "
        "WHERE i.root_fqn = :fqn",
        fqn=STG_ORDERS,
    )
    value = encode_value("incident", id=row.id, fp=row.fingerprint[:64])
    slack_api.users({"ben@shop.example": "U0BENOKAFOR"})  # stg_orders' owner, known by their verified email
    click = block_action(ActionId.ACK, value, user="U0BENOKAFOR", channel=row.channel, message_ts=row.ts)
    before = len(slack_api.thread(row.channel, row.ts))

    assert replicas[0].post(click).status_code == 200
    assert replicas[1].post(click, retry_num=1).status_code == 200  # the same click, delivered again elsewhere
    # the click is acked first and handled right after: wait for it, then for Slack to be brought up to date
    wait_until(
        lambda: cluster.query("SELECT status FROM incidents WHERE id = :i", i=row.id)[0].status == "acknowledged",
        20,
        "the click handled",
    )
    settled(cluster, slack_api, len(cards))
    time.sleep(1.0)  # room for a doubled change to show up, if there were one
    told = [m for m in slack_api.thread(row.channel, row.ts)[before:] if "acknowledged" in str(m.get("blocks"))]
    assert len(told) == 1, told  # one history reply, not two
    updates = [c for c in slack_api.calls("chat.update") if c.args.get("ts") == row.ts]
    assert len(updates) == 1  # the card changed once
    assert "Acknowledged by" in str(slack_api.message(row.channel, row.ts)["blocks"])
