"""Targeted re-syncs (what an OpenMetadata webhook triggers): just the named entities, the cursor left alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from agents.config import AgentConfig
from agents.pipeline import process_run
from storage.openmetadata.client import OpenMetadataClient
from storage.openmetadata.fqn import url_segment
from storage.openmetadata.models import ChangeEvent
from storage.persistence import incidents, store
from storage.persistence.db import make_engine
from storage.sync.events import event_target
from storage.sync.run import SyncOptions, SyncResult, run_sync
from tests.storage.test_sync import read

STG_ORDERS = "warehouse.shop.staging.stg_orders"
STG_CUSTOMERS = "warehouse.shop.staging.stg_customers"
RAW_PAYMENTS = "warehouse.shop.raw.payments"
ORDERS = "warehouse.shop.analytics.orders"
ORDERS_TEST = f"{ORDERS}.status.status_in_accepted_set"


def sync(db_url: str, om, targets: list[tuple[str, str]] | None = None, mode: str = "auto") -> SyncResult:
    """One sync run against the simulator: targeted when `targets` are given."""
    engine = make_engine(db_url)

    async def go() -> SyncResult:
        async with OpenMetadataClient(om.url, om.token, page_size=50, max_retries=1, backoff=0.01) as client:
            return await run_sync(engine, client, SyncOptions(mode=mode, targets=targets))

    try:
        return asyncio.run(go())
    finally:
        engine.dispose()


def changes(db_url: str, fqn: str, since: datetime) -> set[tuple[str, str | None]]:
    return {(c.kind, c.subject) for c in read(db_url, store.timeline, fqn, since)}


def last_good(db_url: str) -> store.RunView:
    return read(db_url, store.last_successful_run)


def test_a_renamed_column_is_picked_up_alone_and_becomes_an_incident(db_url, om_demo):
    first = sync(db_url, om_demo)
    assert first.ok and first.mode == "full"
    cursor = last_good(db_url).events_cursor
    t0 = datetime.now(UTC)
    om_demo.admin("POST", f"/admin/tables/{url_segment(STG_ORDERS)}/columns/status/rename", {"newName": "order_state"})
    om_demo.admin("POST", f"/admin/tables/{url_segment(STG_CUSTOMERS)}/columns", {"name": "tier", "dataType": "INT"})
    customers = read(db_url, store.dna_at, STG_CUSTOMERS).fingerprint

    result = sync(db_url, om_demo, targets=[("table", STG_ORDERS)])
    assert result.status == "succeeded", result.error
    assert result.mode == "targeted" and result.change_source == "targets"
    assert result.entities_seen == 1 and result.events_seen == 0
    assert ("column_renamed", "status") in changes(db_url, STG_ORDERS, t0)
    assert changes(db_url, STG_CUSTOMERS, t0) == set()  # changed too, but nobody asked for it
    assert read(db_url, store.dna_at, STG_CUSTOMERS).fingerprint == customers
    runs = read(db_url, store.last_runs, 2)
    assert runs[0].mode == "targeted" and runs[0].events_cursor == cursor == runs[1].events_cursor

    engine = make_engine(db_url)
    try:
        outcome = asyncio.run(process_run(engine, result.run_id, AgentConfig()))
    finally:
        engine.dispose()
    [incident_id] = outcome.opened
    incident = read(db_url, incidents.get_incident, incident_id).incident
    assert incident.kind == "breaking_schema_change"
    assert (incident.root_fqn, incident.root_column) == (STG_ORDERS, "status")

    # Polling stays the backstop: the next run is incremental from the same cursor, finds the other table's
    # change, and does not report the rename a second time.
    later = sync(db_url, om_demo)
    assert later.ok and later.mode == "incremental" and later.events_seen >= 2
    assert changes(db_url, STG_CUSTOMERS, t0) == {("column_added", "tier")}
    renames = [c for c in read(db_url, store.timeline, STG_ORDERS, t0) if c.kind == "column_renamed"]
    assert len(renames) == 1


def test_a_failing_test_event_maps_to_its_table_and_refreshes_its_quality(db_url, om_demo):
    assert sync(db_url, om_demo).ok
    t0 = datetime.now(UTC)
    since = om_demo.catalog.tick()
    om_demo.admin("POST", f"/admin/tests/{url_segment(ORDERS_TEST)}/result", {"status": "Failed", "result": "3 rows"})
    feed = om_demo.get("/api/v1/events", entityUpdated="testCase", timestamp=since)["data"]
    targets = {event_target(ChangeEvent.model_validate(ev)) for ev in feed}
    assert targets == {("table", ORDERS)}

    result = sync(db_url, om_demo, targets=sorted(targets))
    assert result.ok, result.error
    assert ("test_newly_failing", ORDERS_TEST) in changes(db_url, ORDERS, t0)
    quality = read(db_url, store.dna_at, ORDERS).genes["quality"]["tests"]
    assert next(t for t in quality if t["fqn"] == ORDERS_TEST)["status"] == "Failed"


def test_an_entity_answering_404_is_marked_deleted(db_url, om_demo):
    assert sync(db_url, om_demo).ok
    om_demo.admin("DELETE", f"/admin/entities/table/{url_segment(RAW_PAYMENTS)}")
    never_known = ("table", "warehouse.shop.raw.not_a_table")

    result = sync(db_url, om_demo, targets=[("table", RAW_PAYMENTS), never_known])
    assert result.ok, result.error
    assert result.entities_deleted == 1
    assert read(db_url, store.dna_at, RAW_PAYMENTS).deleted
    assert read(db_url, store.dna_at, never_known[1]) is None
    # nothing was listed, so nothing else can look gone (pipelines included, though their runs were read)
    for fqn in (STG_ORDERS, "airflow.shop_staging", "airflow.shop_ingest"):
        assert not read(db_url, store.dna_at, fqn).deleted, fqn


def test_a_failed_targeted_run_leaves_the_data_and_the_cursor_intact(db_url, om_demo):
    assert sync(db_url, om_demo).ok
    good = last_good(db_url)
    before = read(db_url, store.dna_at, STG_ORDERS)
    om_demo.admin("DELETE", f"/admin/tables/{url_segment(STG_ORDERS)}/columns/status")
    om_demo.admin("POST", "/admin/faults", {"path_regex": "/api/v1/lineage/", "status": 500, "times": 1000})

    failed = sync(db_url, om_demo, targets=[("table", STG_ORDERS)])
    assert failed.status == "failed" and failed.error and failed.mode == "targeted"
    assert read(db_url, store.dna_at, STG_ORDERS).fingerprint == before.fingerprint
    assert last_good(db_url).id == good.id

    om_demo.admin("DELETE", "/admin/faults")
    again = sync(db_url, om_demo, targets=[("table", STG_ORDERS)])
    assert again.ok and again.changes_by_kind.get("column_removed") == 1
    assert last_good(db_url).events_cursor == good.events_cursor


def test_with_no_good_run_yet_a_targeted_request_runs_a_full_sync(db_url, om_demo):
    result = sync(db_url, om_demo, targets=[("table", STG_ORDERS)])
    assert result.ok and result.mode == "full" and result.first_sync
    assert result.entities_seen > 10


def test_re_reading_every_unchanged_entity_by_target_writes_nothing(db_url, om_demo):
    assert sync(db_url, om_demo).ok
    with om_demo.catalog.lock:
        every = sorted((r.etype, r.fqn) for rows in om_demo.catalog.by_type.values() for r in rows if not r.deleted)
    kept = [t for t in every if t[0] in ("table", "dashboard", "chart", "dashboardDataModel", "pipeline", "topic")]
    assert len(kept) > 15
    result = sync(db_url, om_demo, targets=kept)
    assert result.ok, result.error
    assert result.entities_seen == len(kept)
    # same genes as the full run built: same tests, incidents, lineage and pipeline runs
    assert result.snapshots_written == 0 and result.changes_by_kind == {}
