"""The pipeline's words and outside context: a loopback LLM and real MCP servers, validated and degradable."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import delete

from agents.config import AgentConfig, LLMConfig
from agents.llm import LLMClient
from agents.mcp import MCPToolbox
from agents.pipeline import PipelineResult, process_run
from storage.persistence import incidents
from storage.persistence.db import make_engine, session_factory
from storage.persistence.models import Incident
from tests.agents.test_pipeline import STG_ORDERS, detail, rename, sync_and_process
from tests.fakes.mcp_servers import stdio_spec

CONFIG = AgentConfig(mcp_call_timeout_seconds=2.0)


def good_words(**over: Any) -> dict[str, Any]:
    words = {
        "brief": "The Sales overview and Customer health dashboards show no order statuses since the rename.",
        "technical": f"{STG_ORDERS}.status was renamed to order_state; "
        "warehouse.shop.analytics.orders.status and looker.model.orders.order_status lost their source.",
        "cited_assets": [STG_ORDERS, "looker.sales_overview"],
        "cited_columns": [f"{STG_ORDERS}.status"],
        "cited_urls": [],
    }
    return words | over


def process_with(db_url: str, om, *, llm: LLMClient | None = None, specs=()) -> PipelineResult:
    """Sync the rename (rules only), then run the pipeline again on that run with words and tools."""
    sync_and_process(db_url, om)
    rename(om, "status", "order_state")
    sync, _ = sync_and_process(db_url, om)
    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        assert any(i.kind == "breaking_schema_change" for i in incidents.open_incidents(session))
    # the rules-only pass opened it; forget it and run the same sync run again, this time with words and tools
    with session_factory(engine).begin() as session:
        session.execute(delete(Incident))

    async def go() -> PipelineResult:
        if not specs:
            return await process_run(engine, sync.run_id, CONFIG, llm=llm)
        async with MCPToolbox(list(specs), allowed_tools=CONFIG.mcp_allowed_tools, call_timeout=2.0) as toolbox:
            return await process_run(engine, sync.run_id, CONFIG, llm=llm, toolbox=toolbox)

    try:
        return asyncio.run(go())
    finally:
        engine.dispose()


def llm_for(fake_llm, timeout: float = 5.0) -> LLMClient:
    return LLMClient(LLMConfig(base_url=fake_llm.url, api_key="sk-test-secret", model="m", timeout_seconds=timeout))


def test_validated_llm_words_are_stored(db_url, om_demo, fake_llm):
    fake_llm.script([fake_llm.json_completion(good_words())])
    result = process_with(db_url, om_demo, llm=llm_for(fake_llm))
    [incident_id] = result.opened
    assert result.explained_by_llm == [incident_id]
    text = detail(db_url, incident_id).incident.details["explanation"]
    assert text["source"] == "llm" and "Sales overview" in text["brief"]
    assert "sk-test-secret" not in str(fake_llm.requests)  # the key travels in the header only


def test_an_llm_that_names_a_table_that_does_not_exist_falls_back(db_url, om_demo, fake_llm):
    made_up = good_words(technical="The break started in warehouse.shop.staging.stg_refunds.status.")
    fake_llm.script([fake_llm.json_completion(made_up)])
    result = process_with(db_url, om_demo, llm=llm_for(fake_llm))
    [incident_id] = result.opened
    text = detail(db_url, incident_id).incident.details["explanation"]
    assert text["source"] == "template" and "stg_refunds" in (text["fallback_reason"] or "")
    assert any("stg_refunds" in note for note in result.degraded)


def test_an_llm_that_keeps_failing_leaves_the_incident_and_its_template(db_url, om_demo, fake_llm):
    fake_llm.script([{"status": 500}] * 4)
    result = process_with(db_url, om_demo, llm=llm_for(fake_llm))
    [incident_id] = result.opened
    text = detail(db_url, incident_id).incident.details["explanation"]
    assert text["source"] == "template" and "500" in (text["fallback_reason"] or "")
    assert detail(db_url, incident_id).incident.status == "open"


def test_outside_context_from_mcp_is_cited_and_fenced(db_url, om_demo, fake_llm):
    fake_llm.script([fake_llm.json_completion(good_words())])
    result = process_with(db_url, om_demo, llm=llm_for(fake_llm), specs=[stdio_spec("tavily", "inject")])
    [incident_id] = result.opened
    story = detail(db_url, incident_id)
    web = story.incident.details.get("web") or []
    assert web and all(w["url"].startswith("http") for w in web)
    assert any(e.kind == "web" for e in story.evidence)
    prompt = str(fake_llm.requests[-1])
    assert "untrusted" in prompt.lower()  # web text reached the model only as fenced data
    assert story.incident.status == "open" and story.incident.kind == "breaking_schema_change"


def test_a_hanging_mcp_server_degrades_the_answer_not_the_pipeline(db_url, om_demo):
    result = process_with(db_url, om_demo, specs=[stdio_spec("tavily", "hang")])
    [incident_id] = result.opened
    assert any("outside context unavailable" in note for note in result.degraded)
    assert detail(db_url, incident_id).incident.details["explanation"]["source"] == "template"
