"""The `dnabot` command line as a data engineer uses it: sync, dna, time travel, timeline, blast, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from storage.openmetadata.fqn import url_segment

STG_ORDERS = "warehouse.shop.staging.stg_orders"


def rename_status(om_demo) -> None:
    om_demo.admin("POST", f"/admin/tables/{url_segment(STG_ORDERS)}/columns/status/rename", {"newName": "order_state"})


def test_sync_json_then_questions_answered_from_the_store(dnabot, om_demo):
    first = dnabot("sync", "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["status"] == "succeeded" and summary["mode"] == "full"
    assert summary["entities_seen"] == summary["snapshots_written"] > 20
    assert {"duration_seconds", "changes_by_kind", "run_id"} <= summary.keys()
    before = datetime.now(UTC).isoformat()

    rename_status(om_demo)
    second = json.loads(dnabot("sync", "--json").stdout)
    assert second["mode"] == "incremental" and second["changes_by_kind"] == {"column_renamed": 1}

    dna = json.loads(dnabot("dna", "stg_orders", "--json").stdout)
    assert dna["entity_fqn"] == STG_ORDERS
    assert "order_state" in [c["name"] for c in dna["genes"]["schema"]["columns"]]
    assert 0 <= dna["trust_score"] <= 100 and dna["trust_factors"]

    then = json.loads(dnabot("dna", "stg_orders", "--at", before, "--json").stdout)
    assert "status" in [c["name"] for c in then["genes"]["schema"]["columns"]]

    timeline = json.loads(dnabot("timeline", "stg_orders", "--since", "1h", "--json").stdout)
    assert [c["kind"] for c in timeline["changes"]] == ["column_renamed"]
    assert timeline["changes"][0]["details"]["new_name"] == "order_state"

    blast = json.loads(dnabot("blast", "stg_orders", "--column", "status", "--json").stdout)
    assert {(c["entity_fqn"], c["column"]) for c in blast["columns"]} == {
        ("warehouse.shop.analytics.orders", "status"),
        ("warehouse.shop.analytics.revenue_daily", "order_status"),
        ("looker.model.orders", "order_status"),
    }
    assert sorted(blast["dashboards"]) == ["looker.customer_health", "looker.sales_overview"]

    runs = json.loads(dnabot("runs", "--json").stdout)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]


def test_human_output_reads_well(dnabot, om_demo):
    assert dnabot("sync").exit_code == 0
    rename_status(om_demo)
    out = dnabot("sync").stdout
    assert "What changed since the last sync" in out and "column_renamed" in out
    assert "lineage edits" in out  # 1.x records no lineage events: how they were looked for
    dna = dnabot("dna", "stg_orders").stdout
    assert "trust score" in dna and "ownership" in dna and STG_ORDERS in dna
    blast = dnabot("blast", "stg_orders", "-c", "status").stdout
    assert "looker.sales_overview" in blast and "columns that break" in blast
    assert "No changes on" in dnabot("timeline", "raw.orders", "--since", "1d").stdout


def test_bad_input_gets_a_specific_error_and_exit_code(dnabot):
    assert dnabot("sync", "--json").exit_code == 0
    unknown = dnabot("dna", "ordrs")
    assert unknown.exit_code == 2 and "did you mean" in unknown.stderr and "orders" in unknown.stderr
    bad_time = dnabot("dna", "stg_orders", "--at", "yesterday-ish")
    assert bad_time.exit_code == 2 and "ISO 8601" in bad_time.stderr
    bad_span = dnabot("timeline", "stg_orders", "--since", "7 fortnights")
    assert bad_span.exit_code == 2 and "span" in bad_span.stderr
    bad_column = dnabot("blast", "stg_orders", "--column", "stauts")
    assert bad_column.exit_code == 2 and "status" in bad_column.stderr
    both = dnabot("sync", "--full", "--incremental")
    assert both.exit_code == 2


def test_a_bad_token_fails_clearly_without_printing_it(dnabot, monkeypatch):
    monkeypatch.setenv("OPENMETADATA_TOKEN", "wrong-secret-token-123")
    result = dnabot("sync", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed" and "OPENMETADATA_TOKEN" in summary["error"]
    assert "wrong-secret-token-123" not in result.output


ORDERS_CANDIDATES = "looker.model.orders, warehouse.shop.analytics.orders, warehouse.shop.raw.orders"


def test_a_name_three_datasets_share_is_ambiguous_never_guessed(dnabot):
    assert dnabot("sync", "--json").exit_code == 0
    for args in (
        ("dna", "orders"),
        ("dna", "orders", "--json"),
        ("blast", "orders", "--json"),
        ("timeline", "orders"),
        ("why", "orders"),
        ("why", "orders", "why did it break?", "--json"),
        ("why", "why did orders break?"),
    ):
        result = dnabot(*args)
        assert result.exit_code == 2, (args, result.output)
        assert f"'orders' matches 3 datasets: {ORDERS_CANDIDATES}. Which one?" in result.stderr, args
        assert result.stdout == "" and "No dataset matches" not in result.stderr
    assert json.loads(dnabot("dna", "raw.orders", "--json").stdout)["entity_fqn"] == "warehouse.shop.raw.orders"
    assert json.loads(dnabot("blast", "model.orders", "--json").stdout)["root"] == "looker.model.orders"
    assert json.loads(dnabot("why", "why did analytics.orders break?", "--json").stdout)["fqn"] == (
        "warehouse.shop.analytics.orders"
    )


def test_reading_before_any_sync_or_without_a_server(dnabot, monkeypatch):
    missing = dnabot("dna", "stg_orders")
    assert missing.exit_code == 1 and "run `dnabot sync` first" in missing.stderr
    monkeypatch.delenv("OPENMETADATA_URL")
    no_url = dnabot("sync")
    assert no_url.exit_code == 2 and "OPENMETADATA_URL" in no_url.stderr  # a missing setting is bad input


def test_incidents_incident_and_why_after_a_breaking_rename_with_no_keys(dnabot, om_demo, monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TAVILY_API_KEY", "BRIGHTDATA_API_TOKEN", "DNABOT_MCP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    assert dnabot("sync").exit_code == 0
    known = json.loads(dnabot("incidents", "--json").stdout)
    assert [(i["kind"], i["root_fqn"]) for i in known] == [("test_failing", "warehouse.shop.staging.stg_customers")]
    rename_status(om_demo)
    summary = json.loads(dnabot("sync", "--json").stdout)
    assert len(summary["incidents"]["opened"]) == 1
    [incident_id] = summary["incidents"]["opened"]

    listed = json.loads(dnabot("incidents", "--json").stdout)
    assert (listed[0]["id"], listed[0]["severity"], listed[0]["status"]) == (incident_id, "SEV1", "open")
    assert len(listed) == 2  # most severe first
    table = dnabot("incidents").stdout
    assert "SEV1" in table and "renamed" in table

    story = dnabot("incident", str(incident_id)).stdout
    assert "for stakeholders" in story and "Sales overview" in story
    assert "order_state AS status" in " ".join(story.split()) and "resolves" in story  # the SQL wraps at 80
    detail = json.loads(dnabot("incident", str(incident_id), "--json").stdout)
    assert detail["incident"]["details"]["explanation"]["source"] == "template"

    answer = json.loads(dnabot("why", "analytics.orders", "why did it break?", "--json").stdout)
    assert answer["fqn"] == "warehouse.shop.analytics.orders"
    assert answer["source"] == "rules"
    assert STG_ORDERS in answer["answer"] and f"incident:{incident_id}" in answer["citations"]
    whole = json.loads(dnabot("why", "why did stg_orders break?", "--json").stdout)
    assert whole["fqn"] == STG_ORDERS

    missing = dnabot("incident", "999")
    assert missing.exit_code == 2 and "dnabot incidents" in missing.stderr  # no such incident: bad input
    assert dnabot("incidents", "closed").exit_code == 2
    unknown = dnabot("why", "nosuchtable")
    assert unknown.exit_code == 2 and "No dataset matches" in unknown.stderr


def test_acknowledge_snooze_resolve_and_reopen_from_the_command_line(dnabot, om_demo):
    assert dnabot("sync").exit_code == 0
    rename_status(om_demo)
    [incident_id] = json.loads(dnabot("sync", "--json").stdout)["incidents"]["opened"]
    iid = str(incident_id)
    acked = dnabot("ack", iid, "--by", "ana", "--reason", "looking at stg_orders")
    assert acked.exit_code == 0 and "acknowledged" in acked.stdout
    snoozed = json.loads(dnabot("snooze", iid, "2h", "--by", "ana", "--json").stdout)
    assert snoozed["status"] == "snoozed" and snoozed["snoozed_until"]
    assert dnabot("snooze", iid, "soon").exit_code == 2
    assert dnabot("resolve", iid, "--by", "ben", "-r", "compat view deployed").exit_code == 0
    again = dnabot("ack", iid)
    assert again.exit_code == 2 and "reopened" in again.stderr  # a resolved incident can only be reopened
    assert dnabot("reopen", iid, "--by", "ben").exit_code == 0
    history = json.loads(dnabot("incident", iid, "--json").stdout)["events"]
    moves = [(e["status_to"], e["actor"], e["reason"]) for e in history if e["kind"] == "status_changed"]
    assert moves == [
        ("acknowledged", "ana", "looking at stg_orders"),
        ("snoozed", "ana", None),
        ("resolved", "ben", "compat view deployed"),
        ("open", "ben", None),
    ]
