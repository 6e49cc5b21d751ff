"""Analyst stories: the rename is its own cause; a failing test is traced upstream, or honestly "unknown"."""

from __future__ import annotations

from datetime import timedelta

from agents.analyst import UNKNOWN_SUMMARY, analyse, web_queries
from agents.model import Hypothesis
from tests.agents import (
    KAFKA,
    MODEL,
    ORDERS,
    RAW_ORDERS,
    STG_ORDERS,
    STG_PAYMENTS,
    T0,
    change,
    demo_graph,
    genes,
    later,
    rename_change,
)

WEEK = timedelta(days=7)
TEST_FQN = f"{ORDERS}.status.status_accepted_values"


def failing(at=T0):
    return change(
        201,
        "test_newly_failing",
        ORDERS,
        TEST_FQN,
        "Success",
        "Failed",
        details={"column": "status", "result": "3 unexpected values"},
        at=at,
    )


def why_test_fails(upstream, *, symptom=None, column="status") -> list[Hypothesis]:
    symptom = symptom or failing()
    return analyse(
        kind="test_failing",
        root_fqn=ORDERS,
        root_column=column,
        cause_change_ids=(symptom.id,),
        changes_by_id={symptom.id: symptom},
        upstream_changes=[symptom, *upstream],
        graph=demo_graph(),
        now=symptom.detected_at,
        window=WEEK,
    )


def test_a_schema_incident_is_caused_by_its_own_change_with_its_evidence():
    rename = rename_change()
    [h] = analyse(
        kind="breaking_schema_change",
        root_fqn=STG_ORDERS,
        root_column="status",
        cause_change_ids=(101,),
        changes_by_id={101: rename},
        upstream_changes=[],
        graph=demo_graph(),
        now=T0,
        window=WEEK,
    )
    assert (h.cause_fqn, h.cause_column, h.change_kind, h.change_id) == (STG_ORDERS, "status", "column_renamed", 101)
    assert h.confidence >= 0.9
    assert h.summary == "stg_orders.status renamed to order_state (92% confidence)"
    refs = [e.ref for e in h.evidence]
    assert refs[0] == "change:101"
    assert f"{STG_ORDERS} -> {ORDERS}" in refs and f"{ORDERS} -> {MODEL}" in refs
    assert f"{STG_ORDERS}.status -> {ORDERS}.status -> {MODEL}.order_status" in refs
    assert h.path[0] == STG_ORDERS and h.path[-1].startswith("looker.")


def test_a_failing_test_with_no_upstream_change_is_unknown_not_guessed():
    [h] = why_test_fails([])
    assert (h.cause_fqn, h.confidence, h.summary) == ("unknown", 0.0, UNKNOWN_SUMMARY)
    assert h.change_id is None and h.path == ()


def test_changes_off_the_lineage_path_or_outside_the_window_explain_nothing():
    unrelated = change(90, "column_removed", "warehouse.shop.raw.customers", "email", {"type": "VARCHAR"})
    too_old = change(
        91,
        "column_renamed",
        STG_ORDERS,
        "status",
        "status",
        "order_state",
        details={"old_name": "status", "new_name": "order_state"},
        at=T0 - timedelta(days=8),
    )
    harmless = change(92, "description_removed", STG_ORDERS, STG_ORDERS, "Orders", None)
    [h] = why_test_fails([unrelated, too_old, harmless])
    assert h.cause_fqn == "unknown"


def test_a_closer_column_connected_change_ranks_above_a_farther_one():
    far = change(
        80,
        "column_type_changed",
        RAW_ORDERS,
        "status",
        {"type": "VARCHAR", "type_display": "varchar(32)"},
        {"type": "VARCHAR", "type_display": "varchar(8)"},
        at=later(-2),
    )
    near = rename_change(id=81, at=later(-2))
    side = change(82, "column_removed", STG_PAYMENTS, "amount_usd", {"type": "DECIMAL"}, at=later(-2))

    ranked = why_test_fails([far, near, side])

    assert [h.change_id for h in ranked] == [81, 80]  # stg_payments.amount_usd does not feed orders.status
    best, second = ranked
    assert best.confidence > second.confidence > 0
    assert best.path == (STG_ORDERS, ORDERS) and second.path == (RAW_ORDERS, STG_ORDERS, ORDERS)
    assert "1 hop upstream through a column-level lineage path" in best.summary
    assert f"{STG_ORDERS}.status -> {ORDERS}.status" in [e.ref for e in best.evidence]
    assert best.evidence[0].ref == "change:81"


def test_a_column_path_beats_a_table_level_one_at_the_same_distance():
    on_path = rename_change(id=81, at=later(-1))
    off_column = change(83, "column_removed", STG_ORDERS, "customer_id", {"type": "NUMBER"}, at=later(-1))

    ranked = why_test_fails([off_column, on_path])

    assert [h.change_id for h in ranked] == [81, 83]
    assert ranked[0].confidence > ranked[1].confidence
    assert "table-level lineage path" in ranked[1].summary  # customer_id does not feed orders.status


def test_a_question_about_the_whole_table_follows_the_column_lineage_when_there_is_one():
    """A question about the whole table names no column: the rename still reaches orders.status by column lineage."""
    on_path = rename_change(id=81, at=later(-1))
    off_column = change(83, "column_removed", STG_ORDERS, "customer_id", {"type": "NUMBER"}, at=later(-1))

    best, second = why_test_fails([off_column, on_path], column=None)

    assert (best.change_id, best.column_path) == (81, (f"{STG_ORDERS}.status", f"{ORDERS}.status"))
    assert "1 hop upstream through a column-level lineage path" in best.summary
    assert second.column_path == () and "table-level lineage path" in second.summary
    assert best.confidence > second.confidence


def test_a_change_just_before_the_symptom_beats_an_older_one_of_the_same_kind():
    recent = rename_change(id=84, at=later(-1))
    older = change(
        85,
        "column_renamed",
        STG_ORDERS,
        "status",
        "status",
        "state",
        details={"old_name": "status", "new_name": "state"},
        confidence=0.9,
        at=later(-100),
    )
    ranked = why_test_fails([older, recent])
    assert [h.change_id for h in ranked] == [84, 85]


def test_a_trust_drop_walks_upstream_at_table_level():
    failed = change(
        86,
        "pipeline_run_failed",
        STG_ORDERS,
        "airflow.shop_staging",
        "Successful",
        "Failed",
        details={"failed_tasks": ["stg_orders"]},
        at=later(-1),
    )
    drop = change(87, "trust_dropped", ORDERS, ORDERS, 80, 60)
    [h] = analyse(
        kind="trust_drop",
        root_fqn=ORDERS,
        root_column=None,
        cause_change_ids=(87,),
        changes_by_id={87: drop},
        upstream_changes=[failed, drop],
        graph=demo_graph(),
        now=T0,
        window=WEEK,
    )
    assert h.change_id == 86 and 0 < h.confidence < 0.9
    assert h.summary.startswith("pipeline airflow.shop_staging failed (tasks: stg_orders)")


def test_web_queries_name_only_the_vendor_never_internal_assets():
    queries = web_queries("pipeline_failed", "airflow.shop_marts", genes("airflow.shop_marts"))
    assert 1 <= len(queries) <= 2
    assert all("Airflow" in q and "shop" not in q for q in queries)
    assert web_queries("breaking_schema_change", STG_ORDERS, genes(STG_ORDERS))[0].startswith("Snowflake")
    assert web_queries("test_failing", KAFKA, {"entity": {}}) == []
    odd = {"entity": {"service_type": 'Snow"flake OR site:evil.example'}}
    assert all('"' not in q and ":" not in q for q in web_queries("trust_drop", KAFKA, odd))
