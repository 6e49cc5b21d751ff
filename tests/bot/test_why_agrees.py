"""`why` and the incident tell one story: the same cause, confidence, column path and trust score, then the healing.

The demo's flow on the simulator: a breaking rename of stg_orders.status, a sync (incident opened), questions from
the command line and in Slack, then the revert and a sync (incident auto-resolved), and the questions again.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.blocks.dna import render_why
from bot.blocks.text import blocks_to_text
from bot.core import services
from bot.core.settings import get_settings
from storage.openmetadata.fqn import url_segment
from tests.bot.test_cli import STG_ORDERS, rename_status

ORDERS = "warehouse.shop.analytics.orders"
NO_KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TAVILY_API_KEY", "BRIGHTDATA_API_TOKEN", "DNABOT_MCP_CONFIG")


@pytest.fixture
def broken(dnabot, om_demo, monkeypatch):
    """The demo store after the breaking rename: (run, incident id, `dnabot incident N --json`)."""
    for var in NO_KEYS:
        monkeypatch.delenv(var, raising=False)
    assert dnabot("sync").exit_code == 0
    rename_status(om_demo)
    [incident_id] = json.loads(dnabot("sync", "--json").stdout)["incidents"]["opened"]
    detail = json.loads(dnabot("incident", str(incident_id), "--json").stdout)
    return dnabot, incident_id, detail


def revert(run, om_demo) -> dict:
    om_demo.admin("POST", f"/admin/tables/{url_segment(STG_ORDERS)}/columns/order_state/rename", {"newName": "status"})
    return json.loads(run("sync", "--json").stdout)


def test_why_on_a_broken_downstream_table_gives_the_incidents_cause_confidence_and_column_path(broken):
    run, incident_id, detail = broken
    top = detail["incident"]["details"]["hypotheses"][0]
    assert (top["cause_fqn"], top["confidence"]) == (STG_ORDERS, 0.95)

    answer = json.loads(run("why", "analytics.orders", "why did it break?", "--json").stdout)

    assert answer["fqn"] == ORDERS and answer["source"] == "rules"
    cause = answer["cause"]
    assert (cause["incident_id"], cause["role"], cause["change_id"]) == (incident_id, "impacted", top["change_id"])
    assert (cause["confidence"], cause["summary"]) == (top["confidence"], top["summary"])
    # the column path the incident's lineage records for orders: stg_orders.status feeds orders.status
    [brk] = [b for b in detail["incident"]["details"]["breaks"] if b["entity_fqn"] == ORDERS]
    assert (
        cause["column_path"]
        == [*brk["via"], f"{ORDERS}.{brk['column']}"]
        == [
            f"{STG_ORDERS}.status",
            f"{ORDERS}.status",
        ]
    )
    text = answer["answer"]
    assert "*Most likely cause (95%)*" in text and "table-level" not in text
    assert f"Column path: `{STG_ORDERS}.status` → `{ORDERS}.status`." in text
    assert "Proposed fix: Compatibility view: expose order_state as status again" in text
    # the trust score now: the same number in the incident view and in the answer, lowered by the open SEV1
    trust = detail["trust"][ORDERS]
    assert trust["open_incidents"] == [incident_id] and trust["score"] == trust["stored"] - 30
    assert answer["trust"]["score"] == trust["score"]
    assert f"Trust score now: {trust['score']} ({trust['stored']} in the last snapshot, −30 for 1 open incident)." in (
        text
    )
    story = " ".join(run("incident", str(incident_id)).stdout.split())
    assert "trust now" in story and f"│ {ORDERS} │ {trust['score']} │ {trust['stored']} │ #{incident_id} │" in story


def test_why_on_the_root_gives_the_incidents_cause_and_the_same_trust(broken):
    run, _incident_id, detail = broken
    top = detail["incident"]["details"]["hypotheses"][0]
    answer = json.loads(run("why", "why did stg_orders break?", "--json").stdout)
    assert answer["fqn"] == STG_ORDERS
    assert (answer["cause"]["role"], answer["cause"]["confidence"], answer["cause"]["path"]) == (
        "root",
        top["confidence"],
        top["path"],
    )
    assert answer["trust"]["score"] == detail["trust"][STG_ORDERS]["score"] < detail["trust"][STG_ORDERS]["stored"]


def test_the_slack_why_answer_says_the_same(broken):
    _run, incident_id, detail = broken
    get_settings.cache_clear()
    answer = asyncio.run(services.why(get_settings(), "analytics.orders", None))
    text = blocks_to_text(render_why(answer))
    assert "Most likely cause (95%)" in text and f"incident #{incident_id}" in text
    assert f"{STG_ORDERS}.status" in text and f"{ORDERS}.status" in text and "table-level" not in text
    assert f"Trust score now: {detail['trust'][ORDERS]['score']}" in text


def test_with_an_llm_the_words_differ_but_the_facts_are_the_same(broken, fake_llm, monkeypatch):
    run, incident_id, _detail = broken
    rules = json.loads(run("why", "analytics.orders", "--json").stdout)
    words = f"`{STG_ORDERS}` renamed `status` (change #{rules['cause']['change_id']}), see incident #{incident_id}."
    fake_llm.script([fake_llm.completion(words)])
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-why-agrees")

    llm = json.loads(run("why", "analytics.orders", "--json").stdout)

    assert (llm["source"], llm["answer"]) == ("llm", words)
    for key in ("cause", "incident", "resolution", "trust"):
        assert llm[key] == rules[key], key


def test_after_the_revert_why_says_what_broke_when_and_what_healed_it(broken, om_demo):
    run, incident_id, _detail = broken
    healed = revert(run, om_demo)
    assert healed["incidents"]["resolved"] == [incident_id]
    [revert_change] = json.loads(run("timeline", "stg_orders", "--since", "1h", "--json").stdout)["changes"][-1:]
    assert revert_change["kind"] == "column_renamed"

    for name in ("analytics.orders", "stg_orders"):
        answer = json.loads(run("why", name, "--json").stdout)
        text = answer["answer"]
        assert answer["cause"] is None, name  # the revert is not a new cause
        assert "Most likely cause" not in text
        res = answer["resolution"]
        assert (res["incident_id"], res["by"], res["automatic"]) == (incident_id, "dnabot", True)
        assert [c["id"] for c in res["changes"]] == [revert_change["id"]]
        assert f"*Resolved*: incident #{incident_id} SEV1" in text
        assert "*What broke (95%)*: stg_orders.status renamed to order_state" in text
        assert f"*What healed it*: change #{revert_change['id']} stg_orders.order_state renamed to status" in text
        assert "dnabot resolved it automatically: change reverted: status is back." in text
        assert f"healed incident #{incident_id}" in text
    # nothing is open any more: the shown trust is the snapshot's again, in both views
    after = json.loads(run("incident", str(incident_id), "--json").stdout)
    assert after["trust"][ORDERS]["score"] == after["trust"][ORDERS]["stored"] == answer_trust(run, "analytics.orders")


def answer_trust(run, name: str) -> int:
    return json.loads(run("why", name, "--json").stdout)["trust"]["score"]


def test_after_a_resolution_by_hand_why_names_who_resolved_it_and_why(broken):
    run, incident_id, _detail = broken
    done = run("resolve", str(incident_id), "--by", "ana", "--reason", "downstream models re-pointed")
    assert done.exit_code == 0

    answer = json.loads(run("why", "analytics.orders", "--json").stdout)

    assert answer["cause"] is None and answer["resolution"]["by"] == "ana"
    assert "*What healed it*: ana resolved it: downstream models re-pointed." in answer["answer"]
    assert "explained by incident" in answer["answer"]  # the rename is listed, as what the incident explained
