"""Every remaining change kind, each produced by a real mutation through the simulator and seen by a sync."""

from __future__ import annotations

from datetime import UTC, datetime

from storage.openmetadata.fqn import url_segment
from tests.storage.test_sync import DIM_ADDRESS, DIM_PRODUCT, RAW_ORDER, SHOP, changes_of, sync

CUSTOMER = f"{SHOP}.raw_customer"
CASE = f"{DIM_ADDRESS}.table_column_count_equals"


def seen(db_url: str, fqn: str, since: datetime) -> set[tuple[str, str]]:
    return {(c.kind, c.subject) for c in changes_of(db_url, fqn, since)}


def test_ownership_tier_and_description_changes(db_url, om_sample):
    users = [u["name"] for u in om_sample.get("/api/v1/users", limit=3)["data"]]
    owners = f"/admin/entities/table/{url_segment(DIM_ADDRESS)}/owners"
    assert sync(db_url, om_sample).ok
    t0 = datetime.now(UTC)
    om_sample.admin("PUT", owners, {"owners": [users[0]]})
    om_sample.admin("PUT", f"/admin/entities/table/{url_segment(DIM_ADDRESS)}/tags", {"tags": ["Tier.Tier1"]})
    om_sample.admin("PUT", f"/admin/entities/table/{url_segment(DIM_ADDRESS)}/description", {"description": None})
    assert sync(db_url, om_sample).ok
    got = seen(db_url, DIM_ADDRESS, t0)
    assert ("owner_added", users[0]) in got
    assert any(kind == "tier_changed" for kind, _ in got)
    assert any(kind == "description_removed" for kind, _ in got)

    t1 = datetime.now(UTC)
    om_sample.admin("PUT", owners, {"owners": [users[1]]})
    assert sync(db_url, om_sample).ok
    assert any(kind == "owner_changed" for kind, _ in seen(db_url, DIM_ADDRESS, t1))

    t2 = datetime.now(UTC)
    om_sample.admin("PUT", owners, {"owners": []})
    assert sync(db_url, om_sample).ok
    assert ("owner_removed", users[1]) in seen(db_url, DIM_ADDRESS, t2)


def test_column_mappings_and_edges_added_and_removed(db_url, om_sample):
    assert sync(db_url, om_sample).ok
    t0 = datetime.now(UTC)
    om_sample.admin(
        "POST",
        "/admin/lineage",
        {"from": RAW_ORDER, "to": DIM_PRODUCT, "columns": {"product_id": "orders", "vendor": "platform"}},
    )
    om_sample.admin("POST", "/admin/lineage", {"from": CUSTOMER, "to": f"{SHOP}.dim_staff"})
    added = sync(db_url, om_sample, mode="full")
    assert added.ok and added.edges_added == 1 and added.edges_changed == 1
    product = changes_of(db_url, DIM_PRODUCT, t0)
    mapped = {c.details.get("to") for c in product if c.kind == "column_mapping_added"}
    assert mapped == {f"{DIM_PRODUCT}.product_id", f"{DIM_PRODUCT}.vendor"}
    assert ("lineage_edge_added", CUSTOMER) in seen(db_url, f"{SHOP}.dim_staff", t0)
    assert ("lineage_edge_added", f"{SHOP}.dim_staff") in seen(db_url, CUSTOMER, t0)

    t1 = datetime.now(UTC)
    om_sample.admin(
        "POST", "/admin/lineage", {"from": RAW_ORDER, "to": DIM_PRODUCT, "columns": {"product_id": "orders"}}
    )
    assert sync(db_url, om_sample, mode="full").ok
    removed = [c for c in changes_of(db_url, DIM_PRODUCT, t1) if c.kind == "column_mapping_removed"]
    assert [c.details.get("to") for c in removed] == [f"{DIM_PRODUCT}.vendor"]


def test_quality_and_pipeline_recover(db_url, om_sample):
    case = f"/admin/tests/{url_segment(CASE)}/result"
    pipeline = f"/admin/pipelines/{url_segment('sample_airflow.dim_product_etl')}/status"
    om_sample.admin("POST", case, {"status": "Failed", "result": "Found 8 columns vs. the expected 10"})
    om_sample.admin("POST", pipeline, {"executionStatus": "Failed"})
    assert sync(db_url, om_sample).ok
    t0 = datetime.now(UTC)
    om_sample.admin("POST", case, {"status": "Success", "result": "Found 10 columns"})
    om_sample.admin("POST", pipeline, {"executionStatus": "Successful"})
    result = sync(db_url, om_sample)  # incremental: the test result and the pipeline run are events
    assert result.ok and result.mode == "incremental"
    assert ("test_recovered", CASE) in seen(db_url, DIM_ADDRESS, t0)
    assert ("pipeline_run_recovered", "sample_airflow.dim_product_etl") in seen(
        db_url, "sample_airflow.dim_product_etl", t0
    )
    # the tables that pipeline loads see it too, without a full re-read
    assert ("pipeline_run_recovered", "sample_airflow.dim_product_etl") in seen(db_url, DIM_PRODUCT, t0)


def test_an_unchanged_column_lineage_keeps_its_snapshot(db_url, om_sample):
    assert sync(db_url, om_sample).ok
    again = sync(db_url, om_sample, mode="full")
    assert again.ok and again.snapshots_written == 0 and again.edges_changed == 0
