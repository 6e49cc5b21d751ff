"""The transactional outbox on SQLite and PostgreSQL: idempotent enqueue, ordered lanes, claims, retries, dead rows."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine

from storage.persistence import db, outbox
from storage.persistence.outbox import OutboxRow

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEASE = 60.0


def put(engine: Engine, key: str, lane: str, *, kind: str = "card", at: datetime = T0, **kwargs: Any) -> bool:
    """Enqueue one row in a transaction of its own."""
    with db.session_factory(engine).begin() as session:
        return outbox.enqueue(session, key, kind, lane=lane, now=at, **kwargs)


def take(engine: Engine, holder: str = "replica-a", *, at: datetime = T0, **kwargs: Any) -> list[OutboxRow]:
    return outbox.claim(engine, holder, now=at, lease_seconds=kwargs.pop("lease", LEASE), **kwargs)


def keys(rows: list[OutboxRow]) -> list[str]:
    return [row.key for row in rows]


def row(engine: Engine, key: str) -> OutboxRow:
    with db.session_factory(engine)() as session:
        return next(r for r in outbox.rows(session, limit=1000) if r.key == key)


def settle(
    engine: Engine, how: str, row_id: int, holder: str = "replica-a", *, at: datetime = T0, **kwargs: Any
) -> Any:
    """Run outbox.complete / retry_later / give_up in a committed transaction; what it returned."""
    with db.session_factory(engine).begin() as session:
        if how == "complete":
            return outbox.complete(session, row_id, holder, now=at, **kwargs)
        if how == "retry_later":
            kwargs.setdefault("error", "Slack: HTTP 500")
            kwargs.setdefault("delay_seconds", 30)
            kwargs.setdefault("max_attempts", 5)
            return outbox.retry_later(session, row_id, holder, now=at, **kwargs)
        assert how == "give_up"
        return outbox.give_up(session, row_id, holder, now=at, error=kwargs.get("error", "channel_not_found"))


# ------------------------------------------------------------------------------------------------ enqueue


def test_enqueue_is_idempotent_by_key_and_part_of_the_callers_transaction(engine: Engine) -> None:
    assert put(engine, "card:7:v1", "slack:incident:7", payload={"version": 1}) is True
    # The same side effect owed twice (a retried sync, two replicas) is one row; the first payload stays.
    assert put(engine, "card:7:v1", "slack:incident:7", payload={"version": 99}, at=T0 + timedelta(minutes=5)) is False
    with db.session_factory(engine)() as session:
        assert [(r.key, r.payload) for r in outbox.rows(session)] == [("card:7:v1", {"version": 1})]

    fresh = row(engine, "card:7:v1")
    assert (fresh.status, fresh.attempts, fresh.claimed_by, fresh.retried) == ("pending", 0, None, False)
    assert fresh.available_at == fresh.created_at == T0
    assert fresh.lane == outbox.incident_lane(7) == "slack:incident:7"
    assert outbox.incident_lane(7, "om") == "om:incident:7"

    # Written in the caller's transaction: a rolled-back incident change owes nothing.
    with db.session_factory(engine)() as session:
        assert outbox.enqueue(session, "notice:7:1", "notice", lane="slack:incident:7", now=T0) is True
        session.rollback()
    with db.session_factory(engine)() as session:
        assert keys(outbox.rows(session)) == ["card:7:v1"]
        assert outbox.has_pending(session, "slack:incident:7") and not outbox.has_pending(session, "slack:incident:8")

    with pytest.raises(ValueError, match="timezone-aware"):
        put(engine, "naive", "lane", at=datetime(2026, 3, 2, 9, 0))


# -------------------------------------------------------------------------------------------------- claim


def test_claim_takes_the_oldest_due_row_of_each_lane_oldest_lanes_first(engine: Engine) -> None:
    for key, lane in [("a1", "a"), ("b1", "b"), ("a2", "a"), ("c1", "c"), ("b2", "b"), ("c2", "c")]:
        put(engine, key, lane)
    put(engine, "d1", "d", delay_seconds=30)  # e.g. a digest scheduled for later

    assert keys(take(engine, "replica-b", lanes=["c", "b"])) == ["b1", "c1"]
    assert keys(take(engine, limit=1)) == ["a1"]
    assert take(engine) == []  # every lane's head is out; the rows behind them wait
    assert keys(take(engine, at=T0 + timedelta(seconds=30))) == ["d1"]  # due now; the claims still run

    claimed = row(engine, "b1")
    assert claimed.claimed_by == "replica-b"
    assert claimed.claimed_until == T0 + timedelta(seconds=LEASE)
    assert (claimed.attempts, claimed.retried) == (1, False)


def test_rows_of_a_lane_go_out_strictly_in_order(engine: Engine) -> None:
    # The head of each lane is held back in a different way; the row behind it must wait whatever the reason.
    put(engine, "late-1", "late", delay_seconds=300)
    put(engine, "late-2", "late")
    for lane in ("claimed", "backoff", "delivered", "skipped", "dead"):
        put(engine, f"{lane}-1", lane)
        put(engine, f"{lane}-2", lane)
    heads = {r.lane: r for r in take(engine)}
    assert sorted(heads) == ["backoff", "claimed", "dead", "delivered", "skipped"]
    assert settle(engine, "retry_later", heads["backoff"].id, delay_seconds=600) == "pending"
    settle(engine, "complete", heads["delivered"].id, result={"ts": "1.1"})
    settle(engine, "complete", heads["skipped"].id, status=outbox.SKIPPED, note="resolved before its card was posted")
    settle(engine, "give_up", heads["dead"].id)

    later = T0 + timedelta(seconds=10)
    assert keys(take(engine, "replica-c", at=later)) == ["delivered-2", "skipped-2", "dead-2"]
    assert take(engine, "replica-c", at=later) == []
    for blocked in ("late-2", "claimed-2", "backoff-2"):
        assert row(engine, blocked).attempts == 0, blocked

    settle(engine, "complete", heads["claimed"].id)
    assert keys(take(engine, "replica-c", at=later)) == ["claimed-2"]


def test_a_claim_hides_the_row_until_it_expires_then_another_holder_retries_it(engine: Engine) -> None:
    put(engine, "card:1:v1", "slack:incident:1")
    [first] = take(engine, "replica-a")
    assert (first.attempts, first.retried, first.claimed_by) == (1, False, "replica-a")

    assert take(engine, "replica-b", at=T0 + timedelta(seconds=30)) == []
    assert take(engine, "replica-b", at=T0 + timedelta(seconds=LEASE)) == []  # runs out only after claimed_until
    [again] = take(engine, "replica-b", at=T0 + timedelta(seconds=LEASE + 1))
    assert again.id == first.id
    # A second attempt: replica-a may have posted before dying, so the deliverer looks before re-posting.
    assert (again.attempts, again.retried, again.claimed_by) == (2, True, "replica-b")
    assert again.claimed_until == T0 + timedelta(seconds=2 * LEASE + 1)


def test_a_holder_that_lost_its_claim_can_no_longer_settle_the_row(engine: Engine) -> None:
    put(engine, "card:1:v1", "slack:incident:1")
    put(engine, "card:2:v1", "slack:incident:2")
    [old, other] = take(engine, "replica-a")
    [mine] = take(engine, "replica-b", at=T0 + timedelta(seconds=LEASE + 1), lanes=[old.lane])

    later = T0 + timedelta(seconds=LEASE + 5)
    assert settle(engine, "complete", old.id, "replica-a", at=later) is False
    assert settle(engine, "retry_later", old.id, "replica-a", at=later) is None
    assert settle(engine, "give_up", old.id, "replica-a", at=later) is False
    assert settle(engine, "complete", old.id, "someone-else", at=later) is False
    current = row(engine, old.key)
    assert (current.status, current.claimed_by, current.attempts, current.last_error) == (
        "pending",
        "replica-b",
        2,
        None,
    )

    assert settle(engine, "complete", mine.id, "replica-b", at=later, result={"channel": "C1", "ts": "2.0"}) is True
    assert settle(engine, "complete", mine.id, "replica-b", at=later) is False  # settled once only
    done = row(engine, old.key)
    assert (done.status, done.claimed_by, done.claimed_until, done.delivered_at) == ("delivered", None, None, later)

    # A claim that ran out but that nobody took over is still its holder's to settle.
    assert settle(engine, "complete", other.id, "replica-a", at=T0 + timedelta(hours=1)) is True


def test_retry_later_backs_off_then_parks_the_row_dead_after_max_attempts(engine: Engine) -> None:
    put(engine, "notice:3:1", "slack:incident:3", kind="notice")
    at = T0
    for attempt in (1, 2):
        [claimed] = take(engine, at=at)
        assert claimed.attempts == attempt
        status = settle(engine, "retry_later", claimed.id, at=at, error=f"HTTP 503 #{attempt}", max_attempts=3)
        assert status == "pending"
        waiting = row(engine, claimed.key)
        assert waiting.available_at == at + timedelta(seconds=30)
        assert (waiting.claimed_by, waiting.claimed_until, waiting.last_error) == (None, None, f"HTTP 503 #{attempt}")
        assert take(engine, at=at + timedelta(seconds=29)) == []  # backing off, not forgotten
        at += timedelta(seconds=30)

    [last] = take(engine, at=at)
    assert last.attempts == 3
    assert settle(engine, "retry_later", last.id, at=at, error="x" * 5000, max_attempts=3) == "dead"
    dead = row(engine, last.key)
    assert (dead.status, dead.delivered_at, len(dead.last_error or "")) == ("dead", at, 2000)
    assert take(engine, at=at + timedelta(days=1)) == []

    # Slack is back: the operator requeues it, and it gets a fresh set of attempts.
    with db.session_factory(engine).begin() as session:
        assert outbox.requeue(session, [last.id], now=at) == 1
    [revived] = take(engine, at=at)
    assert revived.retried  # an attempt may have reached Slack before: look before posting again
    assert settle(engine, "retry_later", revived.id, at=at, max_attempts=3) == "pending"


def test_complete_records_the_result_and_give_up_parks_dead_at_once(engine: Engine) -> None:
    put(engine, "card:4:v1", "slack:incident:4")
    put(engine, "reply:4:9", "slack:incident:4", kind="reply")
    put(engine, "om_status:4", "om:incident:4", kind="om_status")
    with db.session_factory(engine)() as session:
        assert outbox.delivered_result(session, "card:4:v1") is None  # owed, not delivered
    card, om = take(engine)
    settle(engine, "complete", card.id, result={"channel": "C42", "ts": "1700000000.000100"})
    assert settle(engine, "give_up", om.id, at=T0 + timedelta(seconds=3), error="OpenMetadata 403: forbidden") is True
    [reply] = take(engine)
    settle(engine, "complete", reply.id, status=outbox.SKIPPED, note="the thread was deleted")

    with db.session_factory(engine)() as session:
        assert outbox.delivered_result(session, "card:4:v1") == {"channel": "C42", "ts": "1700000000.000100"}
        assert outbox.delivered_result(session, "reply:4:9") is None  # skipped: nothing was posted
        assert outbox.delivered_result(session, "unknown") is None
        assert [(r.key, r.status, r.last_error) for r in outbox.rows(session, status="dead")] == [
            ("om_status:4", "dead", "OpenMetadata 403: forbidden")
        ]
        assert keys(outbox.rows(session)) == ["om_status:4", "reply:4:9", "card:4:v1"]  # newest first
        assert keys(outbox.rows(session, limit=1)) == ["om_status:4"]
        assert row(engine, "reply:4:9").last_error == "the thread was deleted"
        assert not outbox.has_pending(session, "slack:incident:4")


def test_dead_rows_stay_until_requeued_while_finished_rows_are_purged(engine: Engine) -> None:
    for key in ("dead-1", "dead-2", "old-delivered", "old-skipped", "new-delivered", "pending"):
        put(engine, key, key)
    claimed = {r.key: r for r in take(engine, lanes=["dead-1", "dead-2", "old-delivered", "old-skipped"])}
    settle(engine, "give_up", claimed["dead-1"].id)
    settle(engine, "give_up", claimed["dead-2"].id)
    settle(engine, "complete", claimed["old-delivered"].id)
    settle(engine, "complete", claimed["old-skipped"].id, status=outbox.SKIPPED)
    [new] = take(engine, lanes=["new-delivered"])
    settle(engine, "complete", new.id, at=T0 + timedelta(days=8))

    with db.session_factory(engine).begin() as session:
        assert outbox.purge(session, older_than=T0 + timedelta(days=7)) == 2
        assert outbox.purge(session, older_than=T0 + timedelta(days=7)) == 0
    with db.session_factory(engine)() as session:
        assert sorted(keys(outbox.rows(session))) == ["dead-1", "dead-2", "new-delivered", "pending"]

    later = T0 + timedelta(days=9)
    with db.session_factory(engine).begin() as session:
        assert outbox.requeue(session, [claimed["dead-1"].id, new.id], now=later) == 1  # delivered stays delivered
    revived = row(engine, "dead-1")
    assert (revived.status, revived.available_at, revived.delivered_at) == ("pending", later, None)
    [again] = take(engine, at=later, lanes=["dead-1", "dead-2"])
    # Attempted before: the deliverer looks for an earlier post before posting again.
    assert (again.key, again.attempts, again.retried) == ("dead-1", 2, True)
    with db.session_factory(engine).begin() as session:
        assert outbox.requeue(session, None, now=later) == 1  # every dead row: only dead-2 is left
        assert outbox.requeue(session, None, now=later) == 0
    assert keys(take(engine, at=later, lanes=["dead-1", "dead-2"])) == ["dead-2"]
    assert row(engine, "new-delivered").status == "delivered"


def test_stats_count_pending_by_kind_dead_rows_and_the_oldest_pending_age(engine: Engine) -> None:
    with db.session_factory(engine)() as session:
        assert outbox.stats(session, T0) == outbox.OutboxStats(0, 0, None, {})

    put(engine, "delivered-first", "a", at=T0 - timedelta(hours=1))
    put(engine, "card-1", "b", at=T0)
    put(engine, "notice-1", "c", kind="notice", at=T0 + timedelta(seconds=90))
    put(engine, "card-2", "b", at=T0 + timedelta(seconds=120))
    put(engine, "dead-1", "d", kind="om_status", at=T0 - timedelta(hours=2))
    claimed = {r.key: r for r in take(engine, lanes=["a", "d", "b"])}  # card-1 stays pending while claimed
    settle(engine, "complete", claimed["delivered-first"].id)
    settle(engine, "give_up", claimed["dead-1"].id)

    # `now` in another zone: the age must not depend on how the database hands timestamps back.
    paris = timezone(timedelta(hours=1))
    with db.session_factory(engine)() as session:
        box = outbox.stats(session, (T0 + timedelta(minutes=5, seconds=30)).astimezone(paris))
    assert box == outbox.OutboxStats(
        pending=3, dead=1, oldest_pending_age_seconds=330.0, pending_by_kind={"card": 2, "notice": 1}
    )


def test_newer_pending_sees_a_later_row_of_the_same_kind_in_the_lane(engine: Engine) -> None:
    put(engine, "card:5:v1", "slack:incident:5")
    put(engine, "notice:5:1", "slack:incident:5", kind="notice")
    put(engine, "card:6:v2", "slack:incident:6")
    [v1, _] = take(engine)
    with db.session_factory(engine)() as session:
        assert outbox.newer_pending(session, v1) is False  # a notice and another incident's card don't count
    put(engine, "card:5:v2", "slack:incident:5")
    with db.session_factory(engine)() as session:
        assert outbox.newer_pending(session, v1) is True  # v1 can be skipped: v2 will show the newer card
    settle(engine, "complete", v1.id, status=outbox.SKIPPED)
    [notice] = take(engine)
    settle(engine, "complete", notice.id)
    [v2] = take(engine, lanes=["slack:incident:5"])
    with db.session_factory(engine)() as session:
        assert v2.key == "card:5:v2" and outbox.newer_pending(session, v2) is False


# ------------------------------------------------------------------------------------------- concurrency


def test_replicas_draining_at_once_deliver_every_row_once_and_in_lane_order(db_url: str) -> None:
    """Six replicas (own engines, own connections) drain 30 lanes × 3 rows: each row once, each lane in order."""
    lanes, per_lane, replicas = 30, 3, 6
    setup = db.make_engine(db_url)
    try:
        with db.session_factory(setup).begin() as session:
            for seq in range(per_lane):
                for lane in range(lanes):
                    outbox.enqueue(session, f"{lane}:{seq}", "card", lane=f"lane-{lane}", now=T0, payload={"seq": seq})
    finally:
        setup.dispose()

    guard = threading.Lock()
    posted: dict[str, list[int]] = defaultdict(list)  # what each lane's Slack thread shows, in order
    in_flight: dict[int, str] = {}
    overlaps: list[str] = []
    lost: list[str] = []
    failures: list[BaseException] = []
    start = threading.Barrier(replicas)
    deadline = time.monotonic() + 20

    def replica(name: str) -> None:
        engine = db.make_engine(db_url)
        try:
            start.wait()
            while time.monotonic() < deadline:
                with guard:
                    if sum(map(len, posted.values())) == lanes * per_lane:
                        return
                claimed = outbox.claim(engine, name, now=T0 + timedelta(seconds=1), lease_seconds=300, limit=4)
                if not claimed:
                    time.sleep(0.002)
                    continue
                for row in claimed:
                    with guard:
                        if row.id in in_flight:
                            overlaps.append(f"{row.key} claimed by {name} while {in_flight[row.id]} held it")
                        in_flight[row.id] = name
                        posted[row.lane].append(row.payload["seq"])  # delivered while the claim is held
                    with db.session_factory(engine).begin() as session:
                        if not outbox.complete(session, row.id, name, now=T0 + timedelta(seconds=2)):
                            lost.append(f"{name} lost its claim on {row.key}")
                    with guard:
                        del in_flight[row.id]
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=replica, args=(f"replica-{n}",)) for n in range(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures, failures
    assert overlaps == []
    assert lost == []
    assert posted == {f"lane-{lane}": list(range(per_lane)) for lane in range(lanes)}

    check = db.make_engine(db_url)
    try:
        with db.session_factory(check)() as session:
            final = outbox.rows(session, limit=1000)
    finally:
        check.dispose()
    assert len(final) == lanes * per_lane
    assert {(r.status, r.attempts) for r in final} == {("delivered", 1)}  # nobody claimed a row twice


def test_replicas_racing_for_one_due_row_get_it_once(db_url: str) -> None:
    contenders = 6
    setup = db.make_engine(db_url)
    engines = [db.make_engine(db_url) for _ in range(contenders)]
    try:
        put(setup, "card:9:v1", "slack:incident:9")
        for engine in engines:  # connections opened before the race starts
            take(engine, at=T0 - timedelta(days=1))
        start = threading.Barrier(contenders)
        results: dict[int, list[OutboxRow]] = {}

        def contend(n: int) -> None:
            start.wait()
            results[n] = take(engines[n], f"replica-{n}")

        threads = [threading.Thread(target=contend, args=(n,)) for n in range(contenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        winners = [(n, rows) for n, rows in results.items() if rows]
        assert len(results) == contenders and len(winners) == 1, results
        [(n, [won])] = winners
        assert (won.claimed_by, won.attempts) == (f"replica-{n}", 1)
        assert row(setup, won.key).claimed_by == f"replica-{n}"
    finally:
        for engine in (setup, *engines):
            engine.dispose()


def test_a_claim_is_renewed_before_delivery_only_while_it_still_holds(engine: Engine) -> None:
    put(engine, "card:1:v1", "slack:incident:1")
    put(engine, "card:2:v1", "slack:incident:2")
    first, second = take(engine, "replica-a/1")
    # delivering the first row took most of the lease: the second is renewed before its turn, and holds
    assert outbox.extend_claim(engine, second.id, "replica-a/1", now=T0 + timedelta(seconds=50), lease_seconds=LEASE)
    [taken] = take(engine, "replica-b/1", at=T0 + timedelta(seconds=LEASE + 1))
    assert taken.id == first.id  # the first one's claim ran out; the renewed one still holds
    # a claim that already ran out cannot be renewed: the deliverer must leave the row alone
    assert not outbox.extend_claim(
        engine, first.id, "replica-a/1", now=T0 + timedelta(seconds=200), lease_seconds=LEASE
    )
    assert not outbox.extend_claim(
        engine, second.id, "someone-else", now=T0 + timedelta(seconds=60), lease_seconds=LEASE
    )


def test_an_uncounted_retry_gives_the_attempt_back_and_never_dies(engine: Engine) -> None:
    put(engine, "card:1:v1", "slack:incident:1")
    for n in range(8):  # e.g. the bot is not invited to the channel yet: nothing reached Slack
        at = T0 + timedelta(hours=n)
        [claimed] = take(engine, f"r/{n}", at=at)
        status = settle(engine, "retry_later", claimed.id, f"r/{n}", at=at, max_attempts=3, counted=False)
        assert status == outbox.PENDING
    assert row(engine, "card:1:v1").attempts == 0


def test_requeue_key_revives_one_dead_row_so_a_retry_looks_first(engine: Engine) -> None:
    put(engine, "card:1:v1", "slack:incident:1")
    [claimed] = take(engine)
    settle(engine, "give_up", claimed.id)
    with db.session_factory(engine).begin() as session:
        assert outbox.requeue_key(session, "card:1:v1", now=T0)
        assert not outbox.requeue_key(session, "card:1:v1", now=T0)  # pending now: nothing to revive
    [again] = take(engine, "replica-b", at=T0 + timedelta(seconds=1))
    assert again.key == "card:1:v1" and again.retried
