"""The incident pipeline driven by real simulator mutations: one rename, one incident, a symptom, a revert."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from agents.config import AgentConfig
from agents.pipeline import PipelineResult, process_run
from storage.openmetadata.client import OpenMetadataClient
from storage.openmetadata.fqn import url_segment
from storage.persistence import incidents
from storage.persistence.db import make_engine, session_factory
from storage.sync.run import SyncOptions, SyncResult, run_sync

STG_ORDERS = "warehouse.shop.staging.stg_orders"
ORDERS_TEST = "warehouse.shop.analytics.orders.status.status_in_accepted_set"
CONFIG = AgentConfig()


def sync_and_process(db_url: str, om) -> tuple[SyncResult, PipelineResult]:
    """A sync, then the pipeline on its run: what `dnabot sync` does with no LLM and no keys."""
    engine = make_engine(db_url)

    async def go() -> tuple[SyncResult, PipelineResult]:
        async with OpenMetadataClient(om.url, om.token, page_size=50) as client:
            result = await run_sync(engine, client, SyncOptions())
        assert result.ok, result.error
        return result, await process_run(engine, result.run_id, CONFIG)

    try:
        return asyncio.run(go())
    finally:
        engine.dispose()


def detail(db_url: str, incident_id: int) -> incidents.IncidentDetailView:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return incidents.get_incident(session, incident_id)
    finally:
        engine.dispose()


def all_incidents(db_url: str) -> list[incidents.IncidentView]:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return incidents.list_incidents(session)
    finally:
        engine.dispose()


def rename(om, old: str, new: str) -> None:
    om.admin("POST", f"/admin/tables/{url_segment(STG_ORDERS)}/columns/{old}/rename", {"newName": new})


def test_a_rename_upstream_is_one_incident_that_a_symptom_joins_and_a_revert_resolves(db_url, om_demo):
    _, first = sync_and_process(db_url, om_demo)
    # The first sync takes over what OpenMetadata already tracks: one failing test with an assigned incident.
    [known] = first.opened
    known_story = detail(db_url, known).incident
    assert known_story.kind == "test_failing" and known_story.root_fqn == "warehouse.shop.staging.stg_customers"
    assert known_story.details["om_incident"]["status"] == "Assigned"

    rename(om_demo, "status", "order_state")
    _, second = sync_and_process(db_url, om_demo)
    assert len(second.opened) == 1
    [incident_id] = second.opened
    story = detail(db_url, incident_id)
    inc = story.incident
    assert inc.kind == "breaking_schema_change" and inc.status == "open"
    assert (inc.root_fqn, inc.root_column) == (STG_ORDERS, "status")
    assert inc.severity == "SEV1"  # dashboards, several assets and a Tier1 mart are hit
    broken = {(b["entity_fqn"], b["column"]) for b in inc.details["breaks"] if b["column"]}
    assert broken == {
        ("warehouse.shop.analytics.orders", "status"),
        ("warehouse.shop.analytics.revenue_daily", "order_status"),
        ("looker.model.orders", "order_status"),
    }
    assert sorted(inc.details["dashboards"]) == ["looker.customer_health", "looker.sales_overview"]
    top = inc.details["hypotheses"][0]
    assert top["cause_fqn"] == STG_ORDERS and top["confidence"] >= 0.9
    alias = next(f for f in inc.details["fixes"] if f["kind"] == "alias_view")
    assert alias["simulated"] and alias["remains"] == [] and len(alias["resolves"]) == len(inc.details["breaks"])
    assert "order_state AS status" in alias["sql"]
    brief = inc.details["explanation"]["brief"]
    assert "Sales overview" in brief or "sales_overview" in brief
    assert [link.role for link in story.links] == ["cause"]

    # A second pass over the same run changes nothing: fingerprints keep incidents unique.
    engine = make_engine(db_url)
    again = asyncio.run(process_run(engine, story.incident.opened_run_id, CONFIG))
    engine.dispose()
    assert again.opened == [] and len(all_incidents(db_url)) == 2

    # The data-quality test on the mart starts failing: it joins the incident instead of opening one.
    om_demo.admin(
        "POST", f"/admin/tests/{url_segment(ORDERS_TEST)}/result", {"status": "Failed", "result": "status is NULL"}
    )
    _, third = sync_and_process(db_url, om_demo)
    assert third.opened == [] and third.attached == {incident_id: third.attached[incident_id]}
    assert len(all_incidents(db_url)) == 2
    assert [link.role for link in detail(db_url, incident_id).links] == ["cause", "symptom"]

    # The engineer reverts the rename: the incident resolves itself, with a note.
    rename(om_demo, "order_state", "status")
    _, fourth = sync_and_process(db_url, om_demo)
    assert fourth.resolved == [incident_id]
    assert fourth.opened == []  # the revert heals the dependants; it is not a new breaking rename
    story = detail(db_url, incident_id)
    assert story.incident.status == "resolved"
    resolved = [e for e in story.events if e.kind == "auto_resolved"]
    assert resolved and "reverted" in (resolved[0].reason or resolved[0].note or "")


def test_nothing_downstream_means_no_incident(db_url, om_demo):
    sync_and_process(db_url, om_demo)
    column = {"name": "note", "dataType": "VARCHAR", "dataLength": 200}
    om_demo.admin("POST", f"/admin/tables/{url_segment('warehouse.shop.raw.payments')}/columns", column)
    _, result = sync_and_process(db_url, om_demo)
    assert result.opened == []


def test_times_are_utc(db_url, om_demo):
    sync_and_process(db_url, om_demo)
    rename(om_demo, "status", "order_state")
    _, result = sync_and_process(db_url, om_demo)
    inc = detail(db_url, result.opened[0]).incident
    assert inc.opened_at.tzinfo is not None and inc.opened_at <= datetime.now(UTC)


def test_ack_and_assign_made_in_openmetadata_show_on_our_incident(db_url, om_demo):
    _, first = sync_and_process(db_url, om_demo)
    [known] = first.opened
    inc = detail(db_url, known).incident
    # OpenMetadata already had it Assigned: ours starts acknowledged and assigned, by "openmetadata"
    assert inc.status == "acknowledged" and inc.assignee
    assert any(e.actor == "openmetadata" and e.kind == "status_changed" for e in detail(db_url, known).events)

    # a test newly failing: New in OpenMetadata → open here; Ack there → acknowledged here on the next sync
    test = "warehouse.shop.analytics.orders.status.status_in_accepted_set"
    om_demo.admin("POST", f"/admin/tests/{url_segment(test)}/result", {"status": "Failed", "result": "bad statuses"})
    _, second = sync_and_process(db_url, om_demo)
    [fresh] = second.opened
    assert detail(db_url, fresh).incident.status == "open"
    om_demo.admin("POST", f"/admin/tests/{url_segment(test)}/incident", {"status": "Ack"})
    _, third = sync_and_process(db_url, om_demo)
    assert fresh in third.mirrored
    story = detail(db_url, fresh)
    assert story.incident.status == "acknowledged"
    assert story.incident.details["om_incident"]["status"] == "Ack"
