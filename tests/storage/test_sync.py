"""Sync stories over real HTTP: OpenMetadata's sample data through the simulator into SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from storage.openmetadata.client import OpenMetadataClient
from storage.openmetadata.fqn import url_segment
from storage.persistence import db, names, store
from storage.persistence.db import make_engine, session_factory
from storage.sync.run import SyncOptions, SyncResult, run_sync

SHOP = "sample_data.ecommerce_db.shopify"
DIM_ADDRESS = f"{SHOP}.dim_address"
DIM_PRODUCT = f'{SHOP}."dim.product"'
RAW_ORDER = f"{SHOP}.raw_order"


def sync(db_url: str, om, mode: str = "auto", **client_kw) -> SyncResult:
    """One sync run against the simulator, as `dnabot sync` does it."""
    engine = make_engine(db_url)

    async def go() -> SyncResult:
        kw = {"page_size": 7, "max_retries": 1, "backoff": 0.01, "backoff_max": 0.05} | client_kw
        async with OpenMetadataClient(om.url, om.token, **kw) as client:
            return await run_sync(engine, client, SyncOptions(mode=mode))

    try:
        return asyncio.run(go())
    finally:
        engine.dispose()


def read(db_url: str, fn, *args, **kwargs):
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return fn(session, *args, **kwargs)
    finally:
        engine.dispose()


def kinds(result: SyncResult) -> dict[str, int]:
    return result.changes_by_kind


def changes_of(db_url: str, fqn: str, since: datetime) -> list[store.ChangeView]:
    return read(db_url, store.timeline, fqn, since)


def test_full_sync_of_the_sample_data_then_an_unchanged_resync_writes_nothing(db_url, om_sample):
    first = sync(db_url, om_sample)
    assert first.status == "succeeded", first.error
    assert first.mode == "full"
    # 18 tables, Superset + Looker dashboards/charts/models, 8 pipelines, 10 topics
    assert first.entities_seen >= 18 + 12 + 12 + 8 + 10
    assert first.snapshots_written == first.entities_seen
    assert first.skipped_malformed == 0
    assert first.changes_by_kind.get("entity_added", 0) == 0  # nothing is "added" on the very first sync
    assert first.edges_added >= 7

    view = read(db_url, store.dna_at, DIM_PRODUCT)
    assert view is not None and view.entity_type == "table"
    assert [c["name"] for c in view.genes["schema"]["columns"]][:2] == ["product_id", "shop_id"]
    assert {e["fqn"] for e in view.genes["lineage"]["upstream"]} == {RAW_ORDER, f"{SHOP}.raw_customer"}
    assert 0 <= view.trust_score <= 100 and {f["name"] for f in view.trust_factors} >= {
        "ownership",
        "quality",
    }

    address = read(db_url, store.dna_at, DIM_ADDRESS)
    tests = address.genes["quality"]["tests"]
    assert len(tests) == 5 and any(t["column"] == "shop_id" for t in tests)

    again = sync(db_url, om_sample, mode="full")
    assert again.status == "succeeded"
    assert again.snapshots_written == 0
    assert again.changes_by_kind == {}
    incremental = sync(db_url, om_sample)
    assert incremental.mode == "incremental" and incremental.snapshots_written == 0


def test_fqns_with_quotes_slashes_and_non_ascii_names_round_trip(db_url, om_sample):
    assert sync(db_url, om_sample).ok
    for name in ('"dim.api/client"', "dim(shop)", "магазин", '"dim.product.variant"'):
        fqn = f"{SHOP}.{name}"
        view = read(db_url, store.dna_at, fqn)
        assert view is not None, fqn
        assert view.entity_fqn == fqn
    assert read(db_url, names.resolve_fqn, "магазин") == f"{SHOP}.магазин"
    assert read(db_url, names.resolve_fqn, "dim.api/client") == f'{SHOP}."dim.api/client"'


def test_schema_mutations_become_changes_through_the_events_feed(db_url, om_sample):
    assert sync(db_url, om_sample).ok
    t0 = datetime.now(UTC)
    table = url_segment(DIM_ADDRESS)
    om_sample.admin("DELETE", f"/admin/tables/{table}/columns/company")
    om_sample.admin("POST", f"/admin/tables/{table}/columns/city/rename", {"newName": "town"})
    om_sample.admin("POST", f"/admin/tables/{table}/columns/shop_id/retype", {"dataType": "VARCHAR", "dataLength": 32})
    om_sample.admin("POST", f"/admin/tables/{table}/columns/address_id/constraint", {"constraint": "NOT_NULL"})
    om_sample.admin("POST", f"/admin/tables/{table}/columns/first_name/description", {"description": None})

    result = sync(db_url, om_sample)
    assert result.status == "succeeded", result.error
    assert result.mode == "incremental" and result.events_seen >= 5
    got = {(c.kind, c.subject) for c in changes_of(db_url, DIM_ADDRESS, t0)}
    assert ("column_removed", "company") in got
    assert ("column_renamed", "town") in got or ("column_renamed", "city") in got
    assert ("column_type_changed", "shop_id") in got
    assert ("column_constraint_changed", "address_id") in got
    assert ("column_description_removed", "first_name") in got
    # a rename is not also reported as a drop plus an add
    assert ("column_removed", "city") not in got and ("column_added", "town") not in got
    rename = next(c for c in changes_of(db_url, DIM_ADDRESS, t0) if c.kind == "column_renamed")
    assert rename.confidence >= 0.9
    assert rename.details["old_name"] == "city" and rename.details["new_name"] == "town"


def test_drop_and_unrelated_add_are_not_a_rename(db_url, om_sample):
    assert sync(db_url, om_sample).ok
    t0 = datetime.now(UTC)
    table = url_segment(f"{SHOP}.dim_staff")
    om_sample.admin("DELETE", f"/admin/tables/{table}/columns/email")
    om_sample.admin("POST", f"/admin/tables/{table}/columns", {"name": "hired_on", "dataType": "DATE"})
    assert sync(db_url, om_sample).ok
    got = {(c.kind, c.subject) for c in changes_of(db_url, f"{SHOP}.dim_staff", t0)}
    assert ("column_removed", "email") in got and ("column_added", "hired_on") in got
    assert not any(kind == "column_renamed" for kind, _ in got)


def test_lineage_owner_quality_and_pipeline_changes(db_url, om_sample):
    assert sync(db_url, om_sample).ok
    t0 = datetime.now(UTC)
    om_sample.admin("DELETE", "/admin/lineage", {"from": RAW_ORDER, "to": DIM_PRODUCT})
    om_sample.admin("PUT", f"/admin/entities/table/{url_segment(DIM_ADDRESS)}/owners", {"owners": []})
    om_sample.admin(
        "POST",
        f"/admin/tests/{url_segment(DIM_ADDRESS + '.table_column_count_equals')}/result",
        {"status": "Failed", "result": "Found 8 columns vs. the expected 10"},
    )
    om_sample.admin(
        "POST",
        f"/admin/pipelines/{url_segment('sample_airflow.dim_product_etl')}/status",
        {"executionStatus": "Failed"},
    )
    result = sync(db_url, om_sample, mode="full")  # lineage changes are seen by full refreshes
    assert result.ok, result.error
    assert result.edges_removed == 1
    product = {(c.kind, c.subject) for c in changes_of(db_url, DIM_PRODUCT, t0)}
    assert ("lineage_edge_removed", RAW_ORDER) in product
    assert ("lineage_edge_removed", DIM_PRODUCT) in {(c.kind, c.subject) for c in changes_of(db_url, RAW_ORDER, t0)}
    address = {(c.kind, c.subject) for c in changes_of(db_url, DIM_ADDRESS, t0)}
    assert (
        any(kind == "owner_removed" for kind, _ in address)
        or not read(db_url, store.dna_at, DIM_ADDRESS).genes["ownership"]["owners"]
    )
    assert ("test_newly_failing", f"{DIM_ADDRESS}.table_column_count_equals") in address
    pipeline = {(c.kind, c.subject) for c in changes_of(db_url, "sample_airflow.dim_product_etl", t0)}
    assert ("pipeline_run_failed", "sample_airflow.dim_product_etl") in pipeline

    # the removed edge is still there in the past
    edges_before = read(db_url, store.live_edges, t0)
    edges_now = read(db_url, store.live_edges)
    assert any(e.from_fqn == RAW_ORDER and e.to_fqn == DIM_PRODUCT for e in edges_before)
    assert not any(e.from_fqn == RAW_ORDER and e.to_fqn == DIM_PRODUCT for e in edges_now)


def test_time_travel_shows_the_schema_as_it_was(db_url, om_sample):
    assert sync(db_url, om_sample).ok
    between = datetime.now(UTC)
    om_sample.admin("DELETE", f"/admin/tables/{url_segment(DIM_PRODUCT)}/columns/vendor")
    assert sync(db_url, om_sample).ok
    old = read(db_url, store.dna_at, DIM_PRODUCT, between)
    new = read(db_url, store.dna_at, DIM_PRODUCT)
    assert "vendor" in [c["name"] for c in old.genes["schema"]["columns"]]
    assert "vendor" not in [c["name"] for c in new.genes["schema"]["columns"]]
    assert old.taken_at < new.taken_at
    assert read(db_url, store.dna_at, DIM_PRODUCT, datetime(2000, 1, 1, tzinfo=UTC)) is None


def test_deleted_and_restored_entities(db_url, om_sample):
    assert sync(db_url, om_sample).ok
    t0 = datetime.now(UTC)
    om_sample.admin("DELETE", f"/admin/entities/table/{url_segment(f'{SHOP}.dim_location')}")
    result = sync(db_url, om_sample)
    assert result.ok and result.entities_deleted == 1
    assert read(db_url, store.dna_at, f"{SHOP}.dim_location").deleted
    om_sample.admin("POST", f"/admin/entities/table/{url_segment(f'{SHOP}.dim_location')}/restore")
    assert sync(db_url, om_sample).ok
    got = [c.kind for c in changes_of(db_url, f"{SHOP}.dim_location", t0)]
    assert got[0] == "entity_deleted" and "entity_restored" in got
    assert not read(db_url, store.dna_at, f"{SHOP}.dim_location").deleted


def test_a_sync_failing_half_way_leaves_the_last_good_data_intact(db_url, om_sample):
    assert sync(db_url, om_sample).ok
    before = read(db_url, store.dna_at, DIM_PRODUCT)
    om_sample.admin("DELETE", f"/admin/tables/{url_segment(DIM_PRODUCT)}/columns/vendor")
    om_sample.admin("POST", "/admin/faults", {"path_regex": "/api/v1/lineage/", "status": 500, "times": 1000})

    failed = sync(db_url, om_sample, mode="full")
    assert failed.status == "failed"
    assert "500" in failed.error or "unavailable" in failed.error.lower()
    after = read(db_url, store.dna_at, DIM_PRODUCT)
    assert after.fingerprint == before.fingerprint  # nothing of the half-read run landed
    runs = read(db_url, store.last_runs, 5)
    assert runs[0].status == "failed" and runs[0].error

    om_sample.admin("DELETE", "/admin/faults")
    recovered = sync(db_url, om_sample)
    assert recovered.ok
    assert "vendor" not in [c["name"] for c in read(db_url, store.dna_at, DIM_PRODUCT).genes["schema"]["columns"]]


def test_timeouts_fail_the_run_cleanly(db_url, om_sample):
    assert sync(db_url, om_sample).ok
    om_sample.admin("POST", "/admin/faults", {"path_regex": "/api/v1/tables", "delay_seconds": 2, "times": 1000})
    failed = sync(db_url, om_sample, mode="full", timeout=0.3)
    assert failed.status == "failed" and failed.error
    assert read(db_url, store.last_successful_run).id < failed.run_id


def test_a_malformed_entity_is_skipped_counted_and_not_deleted(db_url, om_sample):
    assert sync(db_url, om_sample).ok
    om_sample.admin("POST", "/admin/faults", {"malformed": f"{SHOP}.dim_staff"})
    result = sync(db_url, om_sample, mode="full")
    assert result.ok, result.error
    assert result.skipped_malformed >= 1
    assert result.entities_deleted == 0
    assert not read(db_url, store.dna_at, f"{SHOP}.dim_staff").deleted


def test_retries_with_retry_after_then_success(db_url, om_sample):
    om_sample.admin(
        "POST", "/admin/faults", {"path_regex": "/api/v1/tables", "status": 429, "retry_after": 0, "times": 2}
    )
    result = sync(db_url, om_sample, max_retries=3)
    assert result.ok, result.error
    assert result.retries >= 2


def test_column_level_blast_radius_on_the_sample_lineage(db_url, om_sample):
    from storage.persistence import graph

    # OpenMetadata's own write endpoint adds column lineage to a sample edge.
    catalog = om_sample.catalog
    raw_order, product = catalog.entity("table", RAW_ORDER), catalog.entity("table", DIM_PRODUCT)
    om_sample.request(
        "PUT",
        "/api/v1/lineage",
        {
            "edge": {
                "fromEntity": {"id": raw_order["id"], "type": "table"},
                "toEntity": {"id": product["id"], "type": "table"},
                "lineageDetails": {
                    "columnsLineage": [
                        {"fromColumns": [f"{RAW_ORDER}.orders"], "toColumn": f"{DIM_PRODUCT}.product_id"},
                        {"fromColumns": [f"{RAW_ORDER}.platform"], "toColumn": f"{DIM_PRODUCT}.vendor"},
                    ]
                },
            }
        },
    )
    assert sync(db_url, om_sample).ok
    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        radius = graph.blast_radius(session, RAW_ORDER, "orders")
        whole = graph.blast_radius(session, RAW_ORDER)
    engine.dispose()
    assert (DIM_PRODUCT, "product_id") in {(c.entity_fqn, c.column) for c in radius.columns}
    assert (DIM_PRODUCT, "vendor") not in {(c.entity_fqn, c.column) for c in radius.columns}
    by_fqn = {i.fqn: i for i in radius.entities}
    assert by_fqn[DIM_PRODUCT].certainty == "column"
    # the variant edge carries no column lineage: a table-level dependency
    assert by_fqn[f'{SHOP}."dim.product.variant"'].certainty == "table"
    assert {i.fqn for i in whole.entities} >= {DIM_PRODUCT, f'{SHOP}."dim.product.variant"'}


def test_two_syncs_never_run_at_once(db_url, om_sample):
    engine = make_engine(db_url)
    try:
        with db.sync_lock(engine):
            result = None
            with pytest.raises(db.SyncAlreadyRunning):
                result = sync(db_url, om_sample)
            assert result is None
    finally:
        engine.dispose()
    assert sync(db_url, om_sample).ok


def test_without_the_events_feed_changes_are_found_by_updated_at(db_url, om_sample):
    assert sync(db_url, om_sample).ok
    t0 = datetime.now(UTC)
    om_sample.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/events", "status": 403, "times": 1000})
    om_sample.admin("DELETE", f"/admin/tables/{url_segment(DIM_PRODUCT)}/columns/vendor")
    om_sample.admin("DELETE", f"/admin/entities/table/{url_segment(f'{SHOP}.dim_location')}")
    result = sync(db_url, om_sample)
    assert result.ok, result.error
    assert result.mode == "incremental" and result.change_source == "updatedAt"
    assert ("column_removed", "vendor") in {(c.kind, c.subject) for c in changes_of(db_url, DIM_PRODUCT, t0)}
    assert result.entities_deleted == 1
    assert result.snapshots_written == 2  # only what moved; nothing else re-read or rewritten
    again = sync(db_url, om_sample)
    assert again.ok and again.snapshots_written == 0
