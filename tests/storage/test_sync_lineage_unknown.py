"""A lineage answer that is not a clean 200 says nothing about an entity's edges: they stay as they are.

Given a good sync of the demo warehouse, when OpenMetadata answers one entity's lineage with a 404 (renamed or
deleted mid-sync, a flaky proxy), a 5xx that outlasts the retries, or a 200 that is not a usable lineage answer,
then the run records no `lineage_edge_removed`, the entity's lineage gene is what it was, the run says how many
entities' lineage was unknown (one WARNING line), and the next good sync finds nothing to add back. A clean 200
without an edge still removes it; an entity that is really gone is deleted.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime

import httpx
import pytest

from simulator.catalog import Catalog
from storage.errors import OMUnavailable
from storage.openmetadata.client import OpenMetadataClient
from storage.openmetadata.fqn import url_segment
from storage.persistence import store
from storage.persistence.db import make_engine
from storage.sync.lineage_read import CLEAN, UNKNOWN, LineageReader
from storage.sync.run import SyncOptions, SyncResult, run_sync
from tests.storage.test_sync import read

STG_ORDERS = "warehouse.shop.staging.stg_orders"
RAW_ORDERS = "warehouse.shop.raw.orders"
ORDERS = "warehouse.shop.analytics.orders"
EDGE_KINDS = ("lineage_edge_removed", "lineage_edge_added")


@pytest.fixture
def om_version() -> str:
    """Per-entity lineage reads are the same on every release: one is enough (the incremental test takes two)."""
    return "1.13.6"


def sync(db_url: str, om, mode: str = "auto", targets: list[tuple[str, str]] | None = None) -> SyncResult:
    engine = make_engine(db_url)

    async def go() -> SyncResult:
        async with OpenMetadataClient(om.url, om.token, page_size=50, max_retries=1, backoff=0.01) as client:
            return await run_sync(engine, client, SyncOptions(mode=mode, targets=targets))

    try:
        return asyncio.run(go())
    finally:
        engine.dispose()


def good(db_url: str, om, mode: str = "auto", targets: list[tuple[str, str]] | None = None) -> SyncResult:
    result = sync(db_url, om, mode, targets)
    assert result.ok, result.error
    return result


def lineage_gene(db_url: str, fqn: str) -> dict:
    return read(db_url, store.dna_at, fqn).genes["lineage"]


def edge_changes(db_url: str, since: datetime) -> list[tuple[str, str, str | None]]:
    """Every lineage edge change recorded since `since`, on any entity: (entity, kind, other end)."""
    out = []
    for fqn in read(db_url, store.entity_types):
        out += [(fqn, c.kind, c.subject) for c in read(db_url, store.timeline, fqn, since) if c.kind in EDGE_KINDS]
    return sorted(out)


def live(db_url: str) -> set[tuple[str, str]]:
    return {(e.from_fqn, e.to_fqn) for e in read(db_url, store.live_edges)}


def unknown_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "lineage unknown" in r.getMessage()
    ]


def lineage_fault(om, fqn: str, **spec) -> None:
    om.admin("POST", "/admin/faults", {"lineage_of": fqn, **spec})


def assert_kept(db_url, om, result, before_gene, before_edges, since, caplog) -> None:
    """The run succeeded, removed nothing, kept the gene, said so once; the next good sync adds nothing back."""
    assert result.ok, result.error
    assert result.lineage_unknown == 1
    assert result.changes_by_kind.get("lineage_edge_removed", 0) == 0 and result.edges_removed == 0
    assert edge_changes(db_url, since) == []
    assert lineage_gene(db_url, STG_ORDERS) == before_gene
    assert live(db_url) == before_edges
    assert [line.split(" (")[0] for line in unknown_lines(caplog)] == ["lineage unknown for 1 entities this run"]
    om.admin("DELETE", "/admin/faults")
    healed = good(db_url, om, "full")
    assert healed.changes_by_kind.get("lineage_edge_added", 0) == 0 and healed.edges_added == 0
    assert edge_changes(db_url, since) == [] and healed.lineage_unknown == 0


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 404},
        {"status": 500, "times": 1000},  # outlasts the retries
        {"status": 400, "message": "Invalid entity type table"},
        {"body": "<html><body>502 Bad Gateway</body></html>"},
    ],
    ids=["404", "500-after-retries", "400", "html-200"],
)
def test_a_full_sync_keeps_the_edges_of_an_entity_whose_lineage_is_not_a_clean_200(db_url, om_demo, fault, caplog):
    good(db_url, om_demo)
    before, edges = lineage_gene(db_url, STG_ORDERS), live(db_url)
    assert before["upstream"] and before["downstream"]
    t0 = datetime.now(UTC)
    om_demo.admin("PUT", f"/admin/entities/table/{url_segment(ORDERS)}/description", {"description": "Orders."})
    lineage_fault(om_demo, STG_ORDERS, **fault)
    caplog.set_level(logging.WARNING)

    result = sync(db_url, om_demo, "full")
    # the rest of the catalog was read as usual
    assert read(db_url, store.dna_at, ORDERS).genes["ownership"]["description"] == "Orders."
    assert_kept(db_url, om_demo, result, before, edges, t0, caplog)


def wrong_shapes(om) -> list[dict]:
    """Lineage answers for STG_ORDERS that are 200s but not usable: every edge unresolvable, or edges not a list."""
    answer = om.get(f"/api/v1/lineage/table/name/{url_segment(STG_ORDERS)}")
    no_nodes = {k: v for k, v in answer.items() if k != "nodes"}
    not_lists = answer | {"upstreamEdges": {"oops": True}, "downstreamEdges": "none"}
    return [no_nodes, not_lists]


@pytest.mark.parametrize("shape", [0, 1], ids=["edges-unresolvable", "edges-not-lists"])
def test_a_wrong_shaped_200_on_lineage_removes_nothing(db_url, om_demo, shape, caplog):
    good(db_url, om_demo)
    before, edges = lineage_gene(db_url, STG_ORDERS), live(db_url)
    t0 = datetime.now(UTC)
    lineage_fault(om_demo, STG_ORDERS, body=wrong_shapes(om_demo)[shape])
    caplog.set_level(logging.WARNING)

    result = sync(db_url, om_demo, "full")
    assert result.skipped_malformed >= 1  # what was wrong is counted, as for any malformed answer
    assert_kept(db_url, om_demo, result, before, edges, t0, caplog)


@pytest.mark.parametrize("om_version", ["1.13.6", "2.0.7"])  # 1.x sweeps lineage, 2.0 reads its audit log
def test_an_incremental_sync_keeps_the_edges_of_a_changed_entity_whose_lineage_404s(db_url, om_demo, caplog):
    good(db_url, om_demo)
    before, edges = lineage_gene(db_url, STG_ORDERS), live(db_url)
    t0 = datetime.now(UTC)
    om_demo.admin("PUT", f"/admin/entities/table/{url_segment(STG_ORDERS)}/description", {"description": "New."})
    lineage_fault(om_demo, STG_ORDERS, status=404)
    caplog.set_level(logging.WARNING)

    result = sync(db_url, om_demo)
    assert result.mode == "incremental"
    view = read(db_url, store.dna_at, STG_ORDERS)
    assert view.genes["ownership"]["description"] == "New."  # the entity's own change is still seen
    assert_kept(db_url, om_demo, result, before, edges, t0, caplog)


def test_an_incremental_sweep_read_that_fails_after_retries_is_unknown_not_fatal(db_url, om_demo, caplog):
    good(db_url, om_demo)
    before, edges = lineage_gene(db_url, STG_ORDERS), live(db_url)
    t0 = datetime.now(UTC)
    lineage_fault(om_demo, STG_ORDERS, status=503, times=1000)
    caplog.set_level(logging.WARNING)

    result = sync(db_url, om_demo)
    assert result.mode == "incremental" and result.lineage_sweep and result.lineage_sweep["read"] > 1
    assert_kept(db_url, om_demo, result, before, edges, t0, caplog)


def test_a_targeted_sync_keeps_the_edges_when_the_lineage_404s(db_url, om_demo, caplog):
    good(db_url, om_demo)
    before, edges = lineage_gene(db_url, STG_ORDERS), live(db_url)
    t0 = datetime.now(UTC)
    lineage_fault(om_demo, STG_ORDERS, status=404)
    caplog.set_level(logging.WARNING)

    result = sync(db_url, om_demo, targets=[("table", STG_ORDERS), ("table", ORDERS)])
    assert result.mode == "targeted"
    assert_kept(db_url, om_demo, result, before, edges, t0, caplog)


def test_a_genuine_removal_is_still_recorded_while_another_entity_is_unknown(db_url, om_demo, caplog):
    good(db_url, om_demo)
    t0 = datetime.now(UTC)
    om_demo.admin("DELETE", "/admin/lineage", {"from": STG_ORDERS, "to": ORDERS})
    lineage_fault(om_demo, RAW_ORDERS, status=404)

    result = sync(db_url, om_demo, "full")
    assert result.ok and result.lineage_unknown == 1
    assert result.edges_removed == 1 and (STG_ORDERS, ORDERS) not in live(db_url)
    assert edge_changes(db_url, t0) == [
        (ORDERS, "lineage_edge_removed", STG_ORDERS),
        (STG_ORDERS, "lineage_edge_removed", ORDERS),
    ]
    assert (RAW_ORDERS, STG_ORDERS) in live(db_url)


def test_a_removal_shown_by_the_other_ends_clean_answer_counts_though_this_end_is_unknown(db_url, om_demo):
    good(db_url, om_demo)
    t0 = datetime.now(UTC)
    om_demo.admin("DELETE", "/admin/lineage", {"from": STG_ORDERS, "to": ORDERS})
    lineage_fault(om_demo, STG_ORDERS, status=404)

    result = sync(db_url, om_demo, "full")
    assert result.ok and result.lineage_unknown == 1
    assert (STG_ORDERS, ORDERS) not in live(db_url) and (RAW_ORDERS, STG_ORDERS) in live(db_url)
    assert ORDERS not in {e["fqn"] for e in lineage_gene(db_url, STG_ORDERS)["downstream"]}
    assert (ORDERS, "lineage_edge_removed", STG_ORDERS) in edge_changes(db_url, t0)


def test_an_entity_whose_lineage_and_entity_both_404_is_deleted(db_url, om_demo):
    good(db_url, om_demo)
    lineage_fault(om_demo, STG_ORDERS, status=404)
    path = f"^/api/v1/tables/name/{re.escape(STG_ORDERS)}$"
    om_demo.admin("POST", "/admin/faults", {"path_regex": path, "status": 404})

    result = sync(db_url, om_demo, "full")
    assert result.ok, result.error
    assert result.entities_deleted == 1 and read(db_url, store.dna_at, STG_ORDERS).deleted
    assert result.lineage_unknown == 0


def test_every_lineage_read_failing_is_an_outage_and_fails_the_run(db_url, om_demo):
    good(db_url, om_demo)
    before = read(db_url, store.dna_at, STG_ORDERS).fingerprint
    om_demo.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/lineage/", "status": 500, "times": 1000})
    failed = sync(db_url, om_demo, "full")
    assert failed.status == "failed" and "500" in (failed.error or "")
    assert read(db_url, store.dna_at, STG_ORDERS).fingerprint == before


def test_the_simulator_answers_an_injected_lineage_404_as_openmetadata_does(om_demo):
    lineage_fault(om_demo, STG_ORDERS, status=404)
    answer = om_demo.http.get(f"/api/v1/lineage/table/name/{url_segment(STG_ORDERS)}")
    assert answer.status_code == 404
    assert answer.json() == {"code": 404, "message": f"table instance for {STG_ORDERS} not found"}
    assert om_demo.http.get(f"/api/v1/tables/name/{url_segment(STG_ORDERS)}").status_code == 200
    assert om_demo.http.get(f"/api/v1/lineage/table/name/{url_segment(ORDERS)}").status_code == 200


async def _no_wait(_: float) -> None:
    return None


def test_a_lineage_read_that_times_out_is_unknown_and_a_run_of_them_is_an_outage():
    """Timeouts (retried, then unavailable) are unknown for that entity; `LINEAGE_OUTAGE` in a row fail the run."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/fine"):
            entity = {"id": "1", "type": "table", "fullyQualifiedName": "fine", "name": "fine"}
            return httpx.Response(200, json={"entity": entity, "nodes": [], "upstreamEdges": [], "downstreamEdges": []})
        raise httpx.ReadTimeout("timed out", request=request)

    async def go() -> None:
        transport = httpx.MockTransport(answer)
        async with OpenMetadataClient("http://om.test", "tok", transport=transport, sleep=_no_wait) as om:
            reader = LineageReader(om, outage=3)
            slow = await reader.read("table", "slow", confirm_gone=True)
            assert (slow.status, slow.reason) == (UNKNOWN, "unavailable") and "ReadTimeout" in (slow.error or "")
            assert (await reader.read("table", "fine", confirm_gone=True)).status == CLEAN
            reader.check_outage()  # the server answered one: not an outage
            await reader.read("table", "slow", confirm_gone=False)
            await reader.read("table", "slow", confirm_gone=False)
            with pytest.raises(OMUnavailable):
                await reader.read("table", "slow", confirm_gone=False)
            alone = LineageReader(om)
            assert (await alone.read("table", "slow", confirm_gone=False)).status == UNKNOWN
            with pytest.raises(OMUnavailable):
                alone.check_outage()  # nothing answered at all

    asyncio.run(go())


@pytest.mark.parametrize("om_version", ["2.0.7"])  # 2.0 reads lineage edits from events: no sweep catches up
def test_an_edit_hidden_behind_an_unknown_lineage_answer_is_found_by_the_next_incremental_run(db_url, om_factory):
    now = [int(datetime.now(UTC).timestamp() * 1000)]
    om = om_factory(Catalog.demo(clock=lambda: now[0]))
    good(db_url, om)
    t0 = datetime.now(UTC)
    now[0] += 10_000
    om.admin("DELETE", "/admin/lineage", {"from": STG_ORDERS, "to": ORDERS})
    lineage_fault(om, [STG_ORDERS, ORDERS], status=404)  # both ends: nothing shows the removal this run
    now[0] += 10_000  # a later event moves the cursor well past the lineage event: it is not read again
    om.admin("PUT", f"/admin/entities/table/{url_segment(RAW_ORDERS)}/description", {"description": "Raw."})

    hidden = sync(db_url, om)
    assert hidden.ok and hidden.mode == "incremental" and hidden.lineage_unknown == 2
    assert edge_changes(db_url, t0) == [] and hidden.lineage_retry == {STG_ORDERS: "table", ORDERS: "table"}

    om.admin("DELETE", "/admin/faults")
    found = sync(db_url, om)
    assert found.ok and found.mode == "incremental" and found.lineage_unknown == 0 and found.lineage_retry == {}
    assert (STG_ORDERS, ORDERS) not in live(db_url)
    assert edge_changes(db_url, t0) == [
        (ORDERS, "lineage_edge_removed", STG_ORDERS),
        (STG_ORDERS, "lineage_edge_removed", ORDERS),
    ]
