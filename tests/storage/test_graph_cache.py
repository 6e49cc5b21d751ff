"""The warm lineage graph: one build per committed change, the same answers as a fresh build, the past uncached."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from storage.domain.lineage import LineageGraph
from storage.errors import ColumnNotFound
from storage.openmetadata.fqn import url_segment
from storage.persistence import graph, store
from storage.persistence.db import make_engine, session_factory
from tests.fakes.omserver import DEFAULT_VERSION
from tests.storage.test_sync import sync

STG_ORDERS = "warehouse.shop.staging.stg_orders"
ORDERS = "warehouse.shop.analytics.orders"
CUSTOMERS = "warehouse.shop.analytics.customers"
RAW_ORDERS = "warehouse.shop.raw.orders"


@pytest.fixture
def om_version() -> str:
    """The cache does not depend on the OpenMetadata release: one line is enough here."""
    return DEFAULT_VERSION


@pytest.fixture
def demo_store(db_url, om_demo):
    """The demo warehouse synced once; yields (engine, a session factory)."""
    assert sync(db_url, om_demo).ok
    engine = make_engine(db_url)
    yield engine, session_factory(engine)
    engine.dispose()


def drop_edge(om, source: str, target: str) -> None:
    """Remove a lineage edge in OpenMetadata, as a user's edit does."""
    om.request("DELETE", f"/api/v1/lineage/table/name/{url_segment(source)}/table/name/{url_segment(target)}")


def downstream(radius) -> set[str]:
    return {i.fqn for i in radius.entities}


def questions(session) -> list[tuple[str, str | None]]:
    """Every entity of the store, table level, and every table column."""
    out: list[tuple[str, str | None]] = []
    for fqn in sorted(store.entity_types(session)):
        out.append((fqn, None))
        out += [(fqn, column) for column in store.columns_of(session, fqn)]
    return out


def test_cold_warm_and_fresh_builds_give_the_same_blast_radius(demo_store):
    _, factory = demo_store
    cache = graph.GraphCache()
    with factory() as session:
        warm = cache.graph(session)
        fresh = graph.graph_at(session)
        asked = questions(session)
        assert len(asked) > 50
        for fqn, column in asked:
            cold = graph.blast_radius(session, fqn, column)  # reads only what is downstream of fqn
            assert graph.blast_radius(session, fqn, column, graph=warm) == cold == fresh.blast_radius(fqn, column)
        whole = graph.blast_radius(session, STG_ORDERS, graph=warm)
    assert {ORDERS, CUSTOMERS, "looker.sales_overview"} <= downstream(whole)
    assert cache.builds == 1


def test_an_unknown_column_is_refused_the_same_way_cold_and_warm(demo_store):
    _, factory = demo_store
    with factory() as session:
        warm = graph.graph_at(session)
        errors = []
        for g in (None, warm):
            with pytest.raises(ColumnNotFound) as caught:
                graph.blast_radius(session, STG_ORDERS, "stauts", graph=g)
            errors.append((str(caught.value), caught.value.suggestions))
    assert errors[0] == errors[1] and "status" in errors[0][1]


def test_questions_without_a_sync_between_them_build_the_graph_once(demo_store, db_url, om_demo):
    _, factory = demo_store
    cache = graph.GraphCache()
    for _ in range(20):
        with factory() as session:
            cache.graph(session)
    assert cache.builds == 1
    assert sync(db_url, om_demo).ok  # a quiet run: nothing the graph is built from moved
    with factory() as session:
        assert ORDERS in downstream(cache.graph(session).blast_radius(STG_ORDERS))
    assert cache.builds == 1


def test_a_committed_lineage_change_is_seen_by_the_next_question(demo_store, db_url, om_demo):
    _, factory = demo_store
    cache = graph.GraphCache()
    with factory() as session:
        assert CUSTOMERS in downstream(cache.graph(session).blast_radius(STG_ORDERS))
    drop_edge(om_demo, STG_ORDERS, CUSTOMERS)
    assert sync(db_url, om_demo).ok
    with factory() as session:
        after = cache.graph(session).blast_radius(STG_ORDERS)
        assert CUSTOMERS not in downstream(after)
        assert after == graph.graph_at(session).blast_radius(STG_ORDERS)
        cache.graph(session)
    assert cache.builds == 2  # one rebuild for the change, none for the question after it


def test_a_renamed_column_is_seen_without_a_restart(demo_store, db_url, om_demo):
    _, factory = demo_store
    cache = graph.GraphCache()
    with factory() as session:
        cache.graph(session)
    om_demo.admin("POST", f"/admin/tables/{url_segment(STG_ORDERS)}/columns/status/rename", {"newName": "state"})
    assert sync(db_url, om_demo).ok
    with factory() as session:
        warm = cache.graph(session)
        renamed = graph.blast_radius(session, STG_ORDERS, "state", graph=warm)
        assert renamed == graph.blast_radius(session, STG_ORDERS, "state")
    assert cache.builds == 2


def test_concurrent_questions_build_the_graph_once(demo_store, monkeypatch):
    _, factory = demo_store
    n = 8
    checked: list[int] = []
    release = threading.Event()
    real_version = graph.graph_version

    def counted_version(session):
        checked.append(1)
        return real_version(session)

    def slow_build(session) -> LineageGraph:
        release.wait(timeout=30)  # held until every thread has asked: all of them want a graph at once
        return graph.graph_at(session)

    monkeypatch.setattr(graph, "graph_version", counted_version)
    cache = graph.GraphCache(loader=slow_build)
    answers: list[set[str]] = []

    def ask() -> None:
        with factory() as session:
            answers.append(downstream(cache.graph(session).blast_radius(STG_ORDERS)))

    threads = [threading.Thread(target=ask) for _ in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(checked) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join(timeout=60)
    assert cache.builds == 1
    assert len(answers) == n and all(a == answers[0] and ORDERS in a for a in answers)


def test_a_question_about_the_past_bypasses_the_warm_graph(demo_store, db_url, om_demo):
    _, factory = demo_store
    before = datetime.now(UTC)
    drop_edge(om_demo, STG_ORDERS, CUSTOMERS)
    assert sync(db_url, om_demo).ok
    cache = graph.GraphCache()
    with factory() as session:
        warm = cache.graph(session)
        past = graph.blast_radius(session, STG_ORDERS, at=before, graph=warm)
        now = graph.blast_radius(session, STG_ORDERS, graph=warm)
        assert past == graph.graph_at(session, before).blast_radius(STG_ORDERS)
    assert CUSTOMERS in downstream(past) and CUSTOMERS not in downstream(now)
    assert cache.builds == 1


def test_the_version_moves_with_rows_written_outside_a_run(demo_store):
    _, factory = demo_store
    with factory() as session:
        first = graph.graph_version(session)
        assert first.run_id is not None and first.max_edge_id
        assert first.run_finished_at is not None and first.run_finished_at.tzinfo is not None
    from storage.persistence.models import LineageEdge

    with factory.begin() as session:
        run = store.last_successful_run(session)
        session.add(
            LineageEdge(
                from_fqn=RAW_ORDERS,
                from_type="table",
                to_fqn=CUSTOMERS,
                to_type="table",
                columns=[],
                first_seen=datetime.now(UTC),
                last_seen=datetime.now(UTC),
                first_run_id=run.id,
            )
        )
    cache = graph.GraphCache()
    with factory() as session:
        assert graph.graph_version(session) != first
        assert CUSTOMERS in downstream(cache.graph(session).blast_radius(RAW_ORDERS))


def test_warm_marks_the_cache_of_one_store_per_database_url(db_url, demo_store):
    engine, _ = demo_store
    other = make_engine(db_url)
    try:
        assert graph.cache_for(other) is graph.cache_for(engine)
        cache = graph.warm(engine)
        assert cache.keep_warm and cache.holds and cache.builds == 1
        graph.warm(other)
        assert cache.builds == 1
    finally:
        graph.cache_for(engine).clear()
        other.dispose()
