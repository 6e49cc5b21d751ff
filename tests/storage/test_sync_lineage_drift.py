"""Lineage edits without change events (1.x): the rolling sweep; 2.0's lineage events; cascade deletes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from simulator.synthetic import synthetic_catalog
from storage.openmetadata.client import OpenMetadataClient
from storage.openmetadata.fqn import url_segment
from storage.openmetadata.models import ChangeEvent
from storage.persistence import store
from storage.persistence.db import make_engine
from storage.sync.events import plan_events
from storage.sync.run import SyncOptions, SyncResult, run_sync, sweep_size, sweep_slice
from tests.storage.test_sync import read

RAW_ORDERS = "warehouse.shop.raw.orders"
ONE_X = ["1.5.15", "1.8.12", "1.13.6"]  # the releases that record no lineage events
STG_ORDERS = "warehouse.shop.staging.stg_orders"


def sync(db_url: str, om, mode: str = "auto", **options) -> SyncResult:
    engine = make_engine(db_url)

    async def go() -> SyncResult:
        async with OpenMetadataClient(om.url, om.token, page_size=50, max_retries=1, backoff=0.01) as client:
            return await run_sync(engine, client, SyncOptions(mode=mode, **options))

    try:
        return asyncio.run(go())
    finally:
        engine.dispose()


def live_edge(db_url: str, source: str, target: str) -> bool:
    return any(e.from_fqn == source and e.to_fqn == target for e in read(db_url, store.live_edges))


def removed_edges(db_url: str, fqn: str, since: datetime) -> set[str | None]:
    return {c.subject for c in read(db_url, store.timeline, fqn, since) if c.kind == "lineage_edge_removed"}


@pytest.mark.parametrize("om_version", ONE_X)
def test_on_1x_a_removed_edge_is_found_by_the_next_incremental_sync(db_url, om_demo, om_version):
    """1.x records no change event for lineage: a small catalog is swept whole on every tick."""
    assert sync(db_url, om_demo).ok
    assert live_edge(db_url, RAW_ORDERS, STG_ORDERS)
    t0 = datetime.now(UTC)
    om_demo.admin("DELETE", "/admin/lineage", {"from": RAW_ORDERS, "to": STG_ORDERS})
    assert om_demo.get("/api/v1/events", entityUpdated="*", timestamp=int(t0.timestamp() * 1000) - 1000)["data"] == []

    result = sync(db_url, om_demo)
    assert result.ok and result.mode == "incremental", result.error
    assert result.lineage_sweep is not None and result.lineage_sweep["source"] == "sweep"
    assert result.lineage_sweep["read"] == result.lineage_sweep["read"] >= 1
    assert result.changes_by_kind.get("lineage_edge_removed", 0) >= 1
    assert not live_edge(db_url, RAW_ORDERS, STG_ORDERS)
    assert RAW_ORDERS in removed_edges(db_url, STG_ORDERS, t0)


@pytest.mark.parametrize("om_version", ONE_X)
def test_a_big_catalog_is_swept_a_slice_per_tick_and_covered_within_the_window(db_url, om_factory, om_version):
    """Each tick reads ceil(N × interval / window) entities after the last one read; all are covered in time."""
    om = om_factory(synthetic_catalog(40))
    assert sync(db_url, om).ok
    edges = read(db_url, store.live_edges)
    victim = max(edges, key=lambda e: (e.to_fqn, e.from_fqn))  # its ends sort late: found on a late tick
    om.admin("DELETE", "/admin/lineage", {"from": victim.from_fqn, "to": victim.to_fqn})
    catalog = len(read(db_url, store.entity_types))
    options = {"lineage_sweep_seconds": 500, "sync_interval_seconds": 100, "lineage_sweep_min": 0}
    per_tick = sweep_size(catalog, SyncOptions(**options))
    assert per_tick == -(-catalog // 5)

    ticks, read_total, cursors = 0, 0, []
    while live_edge(db_url, victim.from_fqn, victim.to_fqn):
        ticks += 1
        assert ticks <= 5, "the whole catalog is covered within the sweep window (5 ticks)"
        result = sync(db_url, om, **options)
        assert result.ok and result.mode == "incremental", result.error
        read_total += result.lineage_sweep["read"]
        cursors.append(result.lineage_sweep["cursor"])
    assert ticks >= 2  # a slice at a time, not the whole catalog every tick
    assert len(set(cursors)) == len(cursors)  # each tick goes on from where the last one stopped
    assert read_total <= ticks * per_tick
    assert result.changes_by_kind.get("lineage_edge_removed", 0) >= 1


def test_the_sweep_slice_wraps_round_and_a_404_keeps_the_edges(db_url, om_demo):
    known = {f"s.t{i}": "table" for i in range(5)}
    assert [f for _, f in sweep_slice(known, "s.t3", 3)] == ["s.t4", "s.t0", "s.t1"]
    assert sweep_slice(known, None, 0) == []
    assert sweep_size(10_000, SyncOptions()) == 2500  # 10k entities, a tick every 15 min, all within the hour

    assert sync(db_url, om_demo).ok
    om_demo.admin(
        "POST", "/admin/faults", {"path_regex": "/api/v1/lineage/table/name/warehouse.shop.raw.orders", "status": 404}
    )
    result = sync(db_url, om_demo)
    assert result.ok, result.error
    assert live_edge(db_url, RAW_ORDERS, STG_ORDERS)  # a lineage read that 404s proves nothing: edges kept
    assert result.changes_by_kind.get("lineage_edge_removed", 0) == 0


@pytest.mark.parametrize("om_version", ["2.0.7"])
def test_on_2_0_lineage_edits_are_read_from_the_audit_log_not_swept(db_url, om_demo, om_version):
    assert sync(db_url, om_demo).ok
    t0 = datetime.now(UTC)
    om_demo.admin("DELETE", "/admin/lineage", {"from": RAW_ORDERS, "to": STG_ORDERS})

    result = sync(db_url, om_demo, lineage_sweep_min=0, lineage_sweep_seconds=10**9)  # no sweep would find it
    assert result.ok and result.mode == "incremental", result.error
    assert result.lineage_sweep is not None and result.lineage_sweep["source"] == "audit log"
    assert result.lineage_sweep["events"] >= 1
    assert not live_edge(db_url, RAW_ORDERS, STG_ORDERS)
    assert RAW_ORDERS in removed_edges(db_url, STG_ORDERS, t0)


def test_lineage_events_name_both_ends_and_unknown_events_are_ignored():
    edge = {
        "fromEntity": {"id": "1", "type": "table", "fullyQualifiedName": "a.b.c.x"},
        "toEntity": {"id": "2", "type": "dashboard", "fullyQualifiedName": "svc.d"},
    }
    events = [
        ChangeEvent(
            id="1",
            eventType="entityLineageDeleted",
            entityType="lineage",
            entityId="e",
            timestamp=1,
            entity=json.dumps(edge),
        ),
        ChangeEvent(
            id="2",
            eventType="entityLineageAdded",
            entityType="lineage",
            entityId="e",
            timestamp=2,
            entityFullyQualifiedName="a.b.c.y--upstream-->a.b.c.z",
        ),
        ChangeEvent(id="3", eventType="taskCreated", entityType="task", entityId="t", timestamp=3),
        ChangeEvent(
            id="4",
            eventType="entityDeleted",
            entityType="databaseSchema",
            entityId="s",
            timestamp=4,
            entityFullyQualifiedName="a.b.c",
        ),
    ]
    known = {"a.b.c.x": "table", "a.b.c.y": "table", "a.b.c.z": "table", "a.b.cc.w": "table"}
    plan = plan_events(events, known)
    assert plan.lineage == {"a.b.c.x": "table", "svc.d": "dashboard", "a.b.c.y": "table", "a.b.c.z": "table"}
    assert plan.gone == {"a.b.c.x", "a.b.c.y", "a.b.c.z"}  # the schema's tables, not a.b.cc's
    assert plan.changed == {} and plan.lineage_events == 2


def test_a_cascade_delete_of_a_schema_removes_every_table_under_it(db_url, om_demo):
    """A recursive delete sends one event, for the container: every table under it is gone in one sync."""
    assert sync(db_url, om_demo).ok
    staging = sorted(f for f in read(db_url, store.entity_types) if f.startswith("warehouse.shop.staging."))
    assert len(staging) >= 2
    om_demo.admin(
        "DELETE", f"/admin/entities/databaseSchema/{url_segment('warehouse.shop.staging')}", {"recursive": True}
    )
    feed = om_demo.get("/api/v1/events", entityDeleted="databaseSchema,table", timestamp=0)["data"]
    assert [e["entityType"] for e in feed] == ["databaseSchema"]

    result = sync(db_url, om_demo)
    assert result.ok and result.mode == "incremental", result.error
    assert result.entities_deleted >= len(staging)
    assert set(read(db_url, store.entity_types)).isdisjoint(staging)
