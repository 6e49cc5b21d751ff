"""Coordination between replicas on SQLite and PostgreSQL: leases, inbound dedup, sync requests, mention threads."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine

from storage.persistence import coordination as co
from storage.persistence import db
from storage.persistence.models import InboundEvent, Lease, SyncRequest

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEADER = "scheduler"
R = TypeVar("R")


def run(engine: Engine, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Call a coordination function in a transaction of its own, committed on return (as a replica would)."""
    with db.session_factory(engine).begin() as session:
        return fn(session, *args, **kwargs)


def lease(engine: Engine, holder: str, at: datetime, *, name: str = LEADER, ttl: float = 30) -> bool:
    return run(engine, co.try_lease, name, holder, ttl_seconds=ttl, now=at)


def race(db_url: str, contenders: int, attempt: Callable[[Engine, int], bool]) -> list[int]:
    """`contenders` threads, each on its own engine, call `attempt` at the same moment; who got True."""
    engines = [db.make_engine(db_url) for _ in range(contenders)]
    try:
        for engine in engines:  # connect before the race, so the threads start together
            with engine.connect():
                pass
        start = threading.Barrier(contenders)
        results: dict[int, bool | BaseException] = {}

        def contend(n: int) -> None:
            start.wait()
            try:
                results[n] = attempt(engines[n], n)
            except BaseException as exc:  # reported by the test thread
                results[n] = exc

        threads = [threading.Thread(target=contend, args=(n,)) for n in range(contenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert sorted(results) == list(range(contenders)), results
        assert all(isinstance(v, bool) for v in results.values()), results
        return [n for n, won in sorted(results.items()) if won]
    finally:
        for engine in engines:
            engine.dispose()


# ------------------------------------------------------------------------------------------------- leases


def test_a_lease_has_one_holder_who_renews_it_until_it_expires(engine: Engine) -> None:
    with db.session_factory(engine)() as session:
        assert co.lease_of(session, LEADER) is None
    assert lease(engine, "replica-a", T0) is True
    assert lease(engine, "replica-b", T0 + timedelta(seconds=10)) is False
    assert lease(engine, "replica-a", T0 + timedelta(seconds=20)) is True  # renewed until T0 + 50 s
    with db.session_factory(engine)() as session:
        assert co.lease_of(session, LEADER) == co.LeaseView(
            LEADER, "replica-a", T0, T0 + timedelta(seconds=20), T0 + timedelta(seconds=50)
        )

    assert lease(engine, "replica-b", T0 + timedelta(seconds=40)) is False  # would have expired without renewal
    assert lease(engine, "replica-b", T0 + timedelta(seconds=50)) is False  # held up to expires_at itself
    assert lease(engine, "replica-b", T0 + timedelta(seconds=51)) is True  # replica-a stopped renewing: taken over
    assert lease(engine, "replica-a", T0 + timedelta(seconds=52)) is False  # the old leader is not leader any more
    with db.session_factory(engine)() as session:
        taken = co.lease_of(session, LEADER)
    assert taken is not None
    assert (taken.holder, taken.acquired_at, taken.expires_at) == (
        "replica-b",
        T0 + timedelta(seconds=51),
        T0 + timedelta(seconds=81),
    )

    # Leases are independent of each other.
    assert lease(engine, "replica-a", T0 + timedelta(seconds=52), name="digest") is True

    with pytest.raises(ValueError, match="timezone-aware"):
        lease(engine, "replica-a", datetime(2026, 3, 2, 9, 0))


def test_a_released_lease_can_be_taken_at_once(engine: Engine) -> None:
    assert lease(engine, "replica-a", T0, ttl=300) is True
    assert run(engine, co.release_lease, LEADER, "replica-b") is False  # only the holder can give it up
    assert lease(engine, "replica-b", T0 + timedelta(seconds=1)) is False

    assert run(engine, co.release_lease, LEADER, "replica-a") is True  # shutdown
    assert run(engine, co.release_lease, LEADER, "replica-a") is False
    with db.session_factory(engine)() as session:
        assert co.lease_of(session, LEADER) is None
    assert lease(engine, "replica-b", T0 + timedelta(seconds=2)) is True  # long before the old ttl ran out
    with db.session_factory(engine)() as session:
        assert co.lease_of(session, LEADER).holder == "replica-b"  # type: ignore[union-attr]


def test_replicas_racing_for_a_lease_get_one_leader(db_url: str) -> None:
    # A fresh lease: every replica tries to insert it.
    winners = race(db_url, 8, lambda engine, n: lease(engine, f"replica-{n}", T0))
    assert len(winners) == 1
    check = db.make_engine(db_url)
    try:
        with db.session_factory(check)() as session:
            assert co.lease_of(session, LEADER).holder == f"replica-{winners[0]}"  # type: ignore[union-attr]

        # The leader died: its lease expired and every replica tries to take it over.
        later = T0 + timedelta(minutes=5)
        takeover = race(db_url, 8, lambda engine, n: lease(engine, f"successor-{n}", later))
        assert len(takeover) == 1
        with db.session_factory(check)() as session:
            assert co.lease_of(session, LEADER).holder == f"successor-{takeover[0]}"  # type: ignore[union-attr]
    finally:
        check.dispose()


# ------------------------------------------------------------------------------------------ inbound dedup


def test_an_inbound_delivery_is_accepted_once_until_its_record_expires(engine: Engine) -> None:
    def first(key: str, at: datetime, ttl: float = 3600) -> bool:
        return run(engine, co.first_delivery, key, source="slack", ttl_seconds=ttl, now=at)

    assert first("Ev0123", T0) is True
    assert first("Ev0123", T0 + timedelta(seconds=5)) is False  # Slack's retry of the same event
    assert first("Ev0123", T0 + timedelta(hours=1)) is False
    assert first("Ev0999", T0 + timedelta(seconds=5)) is True
    assert first("Ev0123", T0 + timedelta(hours=1, seconds=1)) is True  # forgotten after the ttl: new again
    assert first("Ev0123", T0 + timedelta(hours=1, seconds=2)) is False

    assert first("trigger-1", T0, ttl=60) is True
    assert first("trigger-2", T0 + timedelta(seconds=30), ttl=60) is True
    with db.session_factory(engine).begin() as session:
        assert co.purge_inbound(session, T0 + timedelta(seconds=61)) == 1  # trigger-1 only
        assert co.purge_inbound(session, T0 + timedelta(seconds=61)) == 0
        remaining = {e.key for e in session.query(InboundEvent)}
    assert remaining == {"Ev0123", "Ev0999", "trigger-2"}
    assert first("trigger-2", T0 + timedelta(seconds=62)) is False


def test_replicas_receiving_the_same_event_handle_it_once(db_url: str) -> None:
    winners = race(
        db_url,
        6,
        lambda engine, n: run(engine, co.first_delivery, "Ev-retried", source="slack", ttl_seconds=600, now=T0),
    )
    assert len(winners) == 1


# --------------------------------------------------------------------------------------- sync requests


def test_sync_requests_are_kept_once_per_entity_in_arrival_order(engine: Engine) -> None:
    orders = "warehouse.shop.public.orders"
    revenue = "warehouse.shop.public.daily_revenue"
    assert run(engine, co.request_sync, "table", orders, now=T0) is True
    assert run(engine, co.request_sync, "table", revenue, now=T0 + timedelta(seconds=1)) is True
    assert run(engine, co.request_sync, "table", orders, now=T0 + timedelta(seconds=2)) is False  # already asked
    assert run(engine, co.request_sync, "dashboard", "looker.sales_overview", now=T0 + timedelta(seconds=3)) is True
    assert run(engine, co.request_sync, "pipeline", orders, now=T0 + timedelta(seconds=4)) is True  # another type

    with db.session_factory(engine)() as session:
        pending = co.pending_sync_requests(session)
        assert co.pending_sync_requests(session, limit=2) == pending[:2]
    assert [(kind, fqn) for _, kind, fqn in pending] == [
        ("table", orders),
        ("table", revenue),
        ("dashboard", "looker.sales_overview"),
        ("pipeline", orders),
    ]

    with db.session_factory(engine).begin() as session:
        assert co.done_sync_requests(session, [pending[0][0], pending[2][0]]) == 2
        assert co.done_sync_requests(session, []) == 0
        assert co.done_sync_requests(session, [pending[0][0]]) == 0
    # A later change of a synced entity is asked for again and queues behind the older requests.
    assert run(engine, co.request_sync, "table", orders, now=T0 + timedelta(minutes=1)) is True
    with db.session_factory(engine)() as session:
        assert [(kind, fqn) for _, kind, fqn in co.pending_sync_requests(session)] == [
            ("table", revenue),
            ("pipeline", orders),
            ("table", orders),
        ]


# ------------------------------------------------------------------------------------- mention threads


def test_a_thread_remembers_the_dataset_it_talks_about(engine: Engine) -> None:
    with db.session_factory(engine)() as session:
        assert co.thread_subject(session, "C1", "1700000000.000100") is None
    run(engine, co.remember_thread, "C1", "1700000000.000100", "warehouse.shop.public.orders", now=T0)
    run(engine, co.remember_thread, "C2", "1700000000.000100", "looker.sales_overview", now=T0)
    run(engine, co.remember_thread, "C1", "1700000000.000200", "warehouse.shop.public.customers", now=T0)
    # The thread moved on to another dataset, a day later.
    later = T0 + timedelta(days=1)
    run(engine, co.remember_thread, "C1", "1700000000.000100", "warehouse.shop.public.daily_revenue", now=later)

    with db.session_factory(engine)() as session:
        assert co.thread_subject(session, "C1", "1700000000.000100") == "warehouse.shop.public.daily_revenue"
        assert co.thread_subject(session, "C2", "1700000000.000100") == "looker.sales_overview"
    with db.session_factory(engine).begin() as session:
        assert co.purge_threads(session, older_than=T0 + timedelta(hours=12)) == 2
    with db.session_factory(engine)() as session:
        assert co.thread_subject(session, "C1", "1700000000.000100") == "warehouse.shop.public.daily_revenue"
        assert co.thread_subject(session, "C2", "1700000000.000100") is None
        assert co.thread_subject(session, "C1", "1700000000.000200") is None


# ----------------------------------------------------------------------------------------- insert_ignore


def test_insert_ignore_reports_a_conflict_and_keeps_the_existing_row(engine: Engine) -> None:
    first = {"name": "digest", "holder": "replica-a", "acquired_at": T0, "renewed_at": T0, "expires_at": T0}
    with db.session_factory(engine).begin() as session:
        assert co.insert_ignore(session, Lease, first) is True
    with db.session_factory(engine).begin() as session:
        # A conflict with a committed row, on the primary key, then on a unique constraint: no error, False,
        # and the transaction goes on (PostgreSQL would refuse further statements after a failed INSERT).
        assert co.insert_ignore(session, Lease, {**first, "holder": "replica-b"}) is False
        request = {"entity_type": "table", "fqn": "warehouse.shop.public.orders", "requested_at": T0}
        assert co.insert_ignore(session, SyncRequest, request) is True
        assert co.insert_ignore(session, SyncRequest, {**request, "requested_at": T0 + timedelta(1)}) is False
        event = {"key": "Ev1", "source": "slack", "received_at": T0, "expires_at": T0}
        assert co.insert_ignore(session, InboundEvent, event) is True
        assert co.insert_ignore(session, InboundEvent, event) is False  # within the same transaction too
    with db.session_factory(engine)() as session:
        assert co.lease_of(session, "digest").holder == "replica-a"  # type: ignore[union-attr]
        assert [(r.requested_at, r.fqn) for r in session.query(SyncRequest)] == [(T0, "warehouse.shop.public.orders")]


def test_replica_id_names_this_process() -> None:
    assert co.replica_id("bot-1") == "bot-1"
    assert co.replica_id() == co.replica_id(None) == f"{socket.gethostname()}:{os.getpid()}"
