"""Whole-graph lineage from search (1.7+): one read per tick finds edits the slice misses; search down falls back
to the slice; a partial answer removes nothing it does not cover; 1.5 never asks; the simulator's answer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from simulator import search_lineage
from simulator.search_lineage import SEARCH_DOWN_FAULT, SEARCH_DOWN_MESSAGE
from storage.openmetadata.client import OpenMetadataClient
from storage.persistence import store
from storage.sync import lineage as sync_lineage
from storage.sync.run import SyncOptions, lineage_search, sweep_size
from tests.storage.test_sync import read
from tests.storage.test_sync_lineage_drift import RAW_ORDERS, STG_ORDERS, live_edge, removed_edges, sync

SEARCH = {"lineage_search_cost": 0}  # read the whole graph whatever the catalog's size
SWEEP_ONLY = {"lineage_search_cost": -1}
ONE_A_TICK = {"lineage_sweep_min": 0, "lineage_sweep_seconds": 10**9}  # the slice: one entity per tick
SEARCH_VERSIONS = ["1.8.12", "1.13.6"]
PLATFORM = "/api/v1/lineage/getPlatformLineage"


def live(db_url: str) -> set[tuple[str, str]]:
    return {(e.from_fqn, e.to_fqn) for e in read(db_url, store.live_edges)}


def fault_hits(om) -> int:
    return sum(f.get("hits", 0) for f in om.admin("GET", "/admin/faults")["faults"])


@pytest.mark.parametrize("om_version", SEARCH_VERSIONS)
def test_a_removed_edge_is_found_by_one_search_read_where_the_slice_misses_it(db_url, om_demo, om_version):
    """Given a synced warehouse and a one-entity slice, when an edge is deleted (no event on 1.x), then the sweep
    alone does not see it, and one tick with the whole-graph read does; the next tick is quiet."""
    assert sync(db_url, om_demo).ok
    t0 = datetime.now(UTC)
    om_demo.admin("DELETE", "/admin/lineage", {"from": RAW_ORDERS, "to": STG_ORDERS})

    swept = sync(db_url, om_demo, **SWEEP_ONLY, **ONE_A_TICK)
    assert swept.ok and swept.lineage_sweep["source"] == "sweep" and swept.lineage_sweep["read"] == 1
    assert live_edge(db_url, RAW_ORDERS, STG_ORDERS)  # the slice of one has not reached it

    result = sync(db_url, om_demo, **SEARCH, **ONE_A_TICK)
    assert result.ok and result.mode == "incremental", result.error
    found = result.lineage_sweep
    assert found["source"] == "search" and found["truncated"] is False
    assert found["changed"] == 1 and found["read"] <= 2  # the changed entity (and the slice's one, if uncovered)
    assert found["covered"] == found["documents"] > 1
    assert not live_edge(db_url, RAW_ORDERS, STG_ORDERS)
    assert RAW_ORDERS in removed_edges(db_url, STG_ORDERS, t0)

    quiet = sync(db_url, om_demo, **SEARCH, **ONE_A_TICK)
    assert quiet.ok and quiet.lineage_sweep["changed"] == 0
    assert quiet.changes_by_kind.get("lineage_edge_removed", 0) == 0


@pytest.mark.parametrize("om_version", SEARCH_VERSIONS)
def test_a_changed_column_mapping_is_found_by_the_search_read(db_url, om_demo, om_version):
    """Column lineage is compared too: an edge re-written with one mapping fewer shows as a removed mapping."""
    assert sync(db_url, om_demo).ok
    om_demo.admin(
        "POST",
        "/admin/lineage",
        {"from": RAW_ORDERS, "to": STG_ORDERS, "columns": {"order_id": "order_id"}, "pipeline": "airflow.shop_staging"},
    )
    result = sync(db_url, om_demo, **SEARCH, **ONE_A_TICK)
    assert result.ok, result.error
    assert result.lineage_sweep["source"] == "search" and result.lineage_sweep["changed"] == 1
    assert result.changes_by_kind.get("column_mapping_removed", 0) >= 1
    assert result.changes_by_kind.get("lineage_edge_removed", 0) == 0


@pytest.mark.parametrize("om_version", SEARCH_VERSIONS)
def test_with_search_down_the_run_sweeps_its_slice_and_still_succeeds(db_url, om_demo, om_version):
    """Given Elasticsearch unreachable (the server answers 500), the run falls back to the slice in the same tick:
    the demo warehouse is smaller than the minimum slice, so the removed edge is still found."""
    assert sync(db_url, om_demo).ok
    om_demo.admin("DELETE", "/admin/lineage", {"from": RAW_ORDERS, "to": STG_ORDERS})
    om_demo.admin("POST", "/admin/faults", SEARCH_DOWN_FAULT)

    result = sync(db_url, om_demo, **SEARCH)
    assert result.ok, result.error
    assert result.lineage_sweep["source"] == "sweep (search unavailable)"
    assert "Connection refused" in result.lineage_sweep["error"]
    assert result.lineage_sweep["read"] >= 1 and result.lineage_sweep["cursor"]
    assert fault_hits(om_demo) >= 1
    assert not live_edge(db_url, RAW_ORDERS, STG_ORDERS)


@pytest.mark.parametrize("om_version", SEARCH_VERSIONS)
def test_a_partial_search_answer_removes_no_edge_it_does_not_cover(db_url, om_demo, om_version, monkeypatch):
    """Given an answer cut off after five documents (as a real one is after 10,000), no stored edge is removed
    on its account; an edge whose downstream end it leaves out is found by the slice, which keeps rotating."""
    monkeypatch.setattr(search_lineage, "MAX_HITS", 5)
    monkeypatch.setattr(sync_lineage, "SEARCH_HITS_CAP", 5)
    assert sync(db_url, om_demo).ok
    before = live(db_url)

    result = sync(db_url, om_demo, **SEARCH, **ONE_A_TICK)
    assert result.ok, result.error
    cut = result.lineage_sweep
    assert cut["source"] == "search" and cut["truncated"] is True and cut["documents"] == 5
    assert cut["covered"] <= 5 and cut["changed"] == 0
    assert result.changes_by_kind.get("lineage_edge_removed", 0) == 0
    assert live(db_url) == before

    om_demo.admin("DELETE", "/admin/lineage", {"from": RAW_ORDERS, "to": STG_ORDERS})
    found = sync(db_url, om_demo, **SEARCH)  # the default slice covers the whole demo warehouse
    assert found.ok and found.lineage_sweep["source"] == "search"
    assert found.changes_by_kind.get("lineage_edge_removed", 0) >= 1
    assert live(db_url) == before - {(RAW_ORDERS, STG_ORDERS)}


@pytest.mark.parametrize("om_version", ["1.5.15"])
def test_on_1_5_the_search_route_is_never_called(db_url, om_demo, om_version):
    """1.5 has no search-backed lineage read: the sync sweeps and never asks for one (the route is a 404)."""
    om_demo.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/lineage/get", "status": 500})
    assert sync(db_url, om_demo).ok
    om_demo.admin("DELETE", "/admin/lineage", {"from": RAW_ORDERS, "to": STG_ORDERS})
    result = sync(db_url, om_demo, **SEARCH)
    assert result.ok and result.lineage_sweep["source"] == "sweep"
    assert not live_edge(db_url, RAW_ORDERS, STG_ORDERS)
    assert fault_hits(om_demo) == 0
    om_demo.admin("DELETE", "/admin/faults")
    assert om_demo.http.get(PLATFORM, params={"view": "all"}).status_code == 404


@pytest.mark.parametrize("om_version", SEARCH_VERSIONS)
def test_by_default_a_small_catalog_is_swept_not_searched(db_url, om_demo, om_version):
    """By default the whole graph is read only where the bench showed it cheaper than the slice (`SyncOptions`):
    the demo warehouse fits the minimum slice, so every tick reads all of it from the database."""
    assert sync(db_url, om_demo).ok
    result = sync(db_url, om_demo)
    assert result.ok and result.lineage_sweep["source"] == "sweep"


# --- the simulator's answer --------------------------------------------------------------------------------


@pytest.mark.parametrize("om_version", SEARCH_VERSIONS)
def test_platform_lineage_has_the_search_result_shape(om_demo, om_version):
    body = om_demo.get(PLATFORM, view="all")
    assert set(body) == {"nodes", "upstreamEdges", "downstreamEdges"} and body["downstreamEdges"] == {}
    node = body["nodes"][STG_ORDERS]
    assert node["nodeDepth"] == 0 and node["entity"]["entityType"] == "table"
    assert node["entity"]["fullyQualifiedName"] == STG_ORDERS and node["entity"]["columns"]
    (own,) = [e for e in node["entity"]["upstreamLineage"] if e["fromEntity"]["fullyQualifiedName"] == RAW_ORDERS]
    assert "toEntity" not in own  # the document itself is the downstream end
    edge = body["upstreamEdges"][own["docId"]]
    assert own["docId"].startswith(f"{RAW_ORDERS}--->pipeline:") and own["docId"].endswith(f"--->{STG_ORDERS}")
    assert set(edge["fromEntity"]) == {"id", "type", "fullyQualifiedName", "fqnHash"}
    assert edge["toEntity"]["fullyQualifiedName"] == STG_ORDERS
    assert edge["pipelineEntityType"] == "pipeline" and edge["pipeline"]["fullyQualifiedName"] == "airflow.shop_staging"
    assert all({"fromColumns", "toColumn"} <= set(c) for c in edge["columns"])
    assert edge["docUniqueId"] == f"{edge['fromEntity']['id']}--->{edge['toEntity']['id']}"


@pytest.mark.parametrize("om_version", SEARCH_VERSIONS)
def test_the_whole_graph_resolves_as_the_per_entity_reads_do(om_demo, om_version):
    async def both() -> tuple[dict[str, Any], dict[str, Any]]:
        async with OpenMetadataClient(om_demo.url, om_demo.token) as om:
            documents = await om.platform_lineage()
            per_entity = {}
            for fqn in documents:
                etype = om_demo.catalog.resolve(fqn).etype
                per_entity[fqn] = [e for e in await om.lineage(etype, fqn) if e.to_fqn == fqn]
            return documents, per_entity

    documents, per_entity = asyncio.run(both())
    assert len(documents) > 10 and documents == per_entity
    assert any(e.columns and e.pipeline_fqn for edges in documents.values() for e in edges)


@pytest.mark.parametrize("om_version", ["1.13.6"])
def test_the_simulator_refuses_a_bad_view_and_serves_service_lineage_and_get_lineage(om_demo, om_version):
    bad = om_demo.http.get(PLATFORM, params={"view": "table"})
    assert bad.status_code == 400 and bad.json() == {"errors": [search_lineage.VIEW_ERROR]}
    services = om_demo.get(PLATFORM, view="service")
    assert "warehouse" in services["nodes"]
    assert all(e["source"] == "ChildAssets" and e["assetEdges"] >= 1 for e in services["upstreamEdges"].values())
    around = om_demo.get("/api/v1/lineage/getLineage", fqn=STG_ORDERS, type="table", upstreamDepth=1, downstreamDepth=1)
    assert around["nodes"][STG_ORDERS]["nodeDepth"] == 0 and around["nodes"][RAW_ORDERS]["nodeDepth"] == -1
    assert any(k.startswith(RAW_ORDERS + "--->") for k in around["upstreamEdges"])
    assert all(k.startswith(STG_ORDERS + "--->") for k in around["downstreamEdges"])
    om_demo.admin("POST", "/admin/faults", SEARCH_DOWN_FAULT)
    down = om_demo.http.get(PLATFORM, params={"view": "all"})
    assert down.status_code == 500 and down.json() == {"code": 500, "message": SEARCH_DOWN_MESSAGE}


def test_the_client_leaves_out_documents_whose_edges_it_cannot_resolve():
    """Older search shapes (`fqn`, `doc_id`) resolve; a document with an edge naming no upstream end is unproven."""
    ref = {"id": "1", "type": "table", "fqn": "s.d.x.a"}
    body = {
        "nodes": {
            "s.d.x.b": {"entity": {"id": "2", "entityType": "table", "fullyQualifiedName": "s.d.x.b"}},
            "s.d.x.c": {"entity": {"id": "3", "entityType": "table", "fullyQualifiedName": "s.d.x.c"}},
            "s.d.x.d": {"entity": {"id": "4", "entityType": "table", "fullyQualifiedName": "s.d.x.d"}},
        },
        "upstreamEdges": {
            "a->b": {"fromEntity": ref, "toEntity": {"id": "2", "type": "table", "fqn": "s.d.x.b"}, "doc_id": "a->b"},
            "?->c": {
                "fromEntity": {"id": "9"},
                "toEntity": {"id": "3", "type": "table", "fullyQualifiedName": "s.d.x.c"},
            },
        },
    }

    async def go() -> tuple[dict[str, Any], list[Any]]:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
        async with OpenMetadataClient("http://om", "t", transport=transport) as om:
            return await om.platform_lineage(), om.malformed

    documents, malformed = asyncio.run(go())
    assert set(documents) == {"s.d.x.b", "s.d.x.d"} and documents["s.d.x.d"] == []
    (edge,) = documents["s.d.x.b"]
    assert (edge.from_fqn, edge.from_type, edge.to_fqn, edge.pipeline_fqn) == ("s.d.x.a", "table", "s.d.x.b", None)
    assert [m.fqn_or_id for m in malformed] == ["s.d.x.c"]


def test_the_whole_graph_read_replaces_the_slice_only_where_it_is_cheaper():
    """With the defaults (a slice of max(200, N/4), one document at 0.6 of a per-entity read), only catalogs of
    201-333 entities are searched; beyond 10,000 what one answer cannot hold would still need the slice."""
    defaults = SyncOptions()

    def searched(catalog: int, **options: Any) -> bool:
        chosen = SyncOptions(**options) if options else defaults
        return lineage_search(None, catalog, sweep_size(catalog, chosen), chosen) is not None  # type: ignore[arg-type]

    assert [n for n in (25, 200, 201, 333, 334, 1210, 12100) if searched(n)] == [201, 333]
    assert searched(12100, lineage_search_cost=0) and not searched(250, lineage_search_cost=-1)
    # a tick that must cover the catalog twice as fast (window of two ticks) still reads less by slice at 10k
    assert not searched(10_000, lineage_sweep_seconds=1800, lineage_search_cost=0.6)
