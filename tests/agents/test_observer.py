"""Observer stories: a rename opens one incident, symptoms join it, a revert resolves it; severity rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from agents.config import AgentConfig
from agents.model import Break, IncidentDraft, incident_fingerprint
from agents.observer import ObserverResult, observe
from agents.severity import SEVERITY_TABLE, severity
from tests.agents import (
    HEALTH,
    MODEL,
    ORDERS,
    RAW_ORDERS,
    REVENUE,
    SALES,
    SHOP_MARTS,
    STG_ORDERS,
    T0,
    Catalog,
    change,
    demo_edges,
    demo_graph,
    edge,
    genes,
    later,
    rename_change,
    renamed_stg_columns,
)

CONFIG = AgentConfig()
TEST_FQN = f"{ORDERS}.status.status_accepted_values"


@dataclass(frozen=True)
class Incident:
    """An open incident as the store would hand it to the observer."""

    id: int
    fingerprint: str
    kind: str
    root_fqn: str
    root_column: str | None
    opened_at: datetime
    status: str = "open"
    details: dict[str, Any] = field(default_factory=dict)


def stored(draft: IncidentDraft, result: ObserverResult, id: int = 1) -> Incident:
    """The draft as the pipeline stores it: its dict plus the observer's facts."""
    details = {**draft.to_dict(), **result.details[draft.fingerprint]}
    return Incident(
        id, draft.fingerprint, draft.kind, draft.root_fqn, draft.root_column, draft.opened_at, details=details
    )


def renamed_catalog() -> Catalog:
    return Catalog().set(STG_ORDERS, columns=renamed_stg_columns())


def run(changes, catalog, *, incidents=(), graph=None, now=T0) -> ObserverResult:
    return observe(
        changes, open_incidents=incidents, graph=graph or demo_graph(), genes_of=catalog, now=now, config=CONFIG
    )


def failing_test_row(id: int, at: datetime, entity: str = ORDERS, col: str | None = "status") -> Any:
    test = f"{entity}.{col}.status_accepted_values" if col else f"{entity}.row_count"
    return change(
        id,
        "test_newly_failing",
        entity,
        test,
        "Success",
        "Failed",
        details={"column": col, "result": "3 unexpected values", "incident": None},
        at=at,
    )


# ------------------------------------------------------------------------------------------------ the rename story


def test_a_rename_opens_one_incident_with_three_broken_columns_and_two_dashboards():
    result = run([rename_change()], renamed_catalog())

    assert len(result.drafts) == 1 and result.attach == [] and result.resolve == []
    draft = result.drafts[0]
    assert draft.kind == "breaking_schema_change"
    assert draft.fingerprint == incident_fingerprint("schema", STG_ORDERS, "status")
    assert (draft.root_fqn, draft.root_column, draft.cause_change_ids) == (STG_ORDERS, "status", (101,))
    columns = {(b.entity_fqn, b.column, b.reason) for b in draft.breaks if b.column}
    assert columns == {
        (ORDERS, "status", "missing_column"),
        (REVENUE, "order_status", "missing_column"),
        (MODEL, "order_status", "missing_column"),
    }
    assert set(draft.dashboards) == {SALES, HEALTH}
    assert len(draft.charts) == 4
    # base SEV2, one level up for the dashboards (and more for Tier1 / asset count), clamped at SEV1
    assert draft.severity == "SEV1"
    assert "2 dashboards impacted" in draft.severity_reasons
    assert any(r.startswith("Tier.Tier1 asset impacted") for r in draft.severity_reasons)
    assert draft.owners[0] == "ben" and {"ana", "chloe"} <= set(draft.owners)
    assert "stg_orders.status renamed to order_state" in draft.title
    assert result.details[draft.fingerprint]["expected_type"] == "VARCHAR(32)"


def test_the_column_path_is_kept_on_each_break():
    draft = run([rename_change()], renamed_catalog()).drafts[0]
    model = next(b for b in draft.breaks if b.entity_fqn == MODEL)
    assert model.via == (f"{STG_ORDERS}.status", f"{ORDERS}.status")
    assert model.distance == 2


def test_a_rename_is_still_caught_when_openmetadata_rewrote_the_mappings_to_the_new_name():
    edges = [
        edge(STG_ORDERS, ORDERS, SHOP_MARTS, status="order_state")
        if e.to_fqn == ORDERS and e.from_fqn == STG_ORDERS
        else edge(STG_ORDERS, REVENUE, SHOP_MARTS, order_status="order_state")
        if e.to_fqn == REVENUE and e.from_fqn == STG_ORDERS
        else e
        for e in demo_edges()
    ]
    # the same run records the mappings moving onto the new name, on the downstream ends
    moved = [
        change(
            102 + i,
            "column_mapping_added",
            target,
            STG_ORDERS,
            details={"direction": "upstream", "to": f"{target}.{col}", "from": [f"{STG_ORDERS}.order_state"]},
        )
        for i, (target, col) in enumerate(((ORDERS, "status"), (REVENUE, "order_status")))
    ]
    draft = run([rename_change(), *moved], renamed_catalog(), graph=demo_graph(edges)).drafts[0]
    assert sum(1 for b in draft.breaks if b.column) == 3


def test_a_revert_of_a_rename_is_not_a_new_breaking_change():
    """order_state → status again, where `status` was always the mapped column: the dependants heal."""
    revert = change(
        150,
        "column_renamed",
        STG_ORDERS,
        "order_state",
        "order_state",
        "status",
        details={"old_name": "order_state", "new_name": "status", "position": 3, "old_position": 3},
        confidence=0.92,
    )
    assert run([revert], Catalog()).drafts == []


def test_a_failing_test_on_a_broken_column_in_the_next_run_attaches_to_the_incident():
    first = run([rename_change()], renamed_catalog())
    incident = stored(first.drafts[0], first)

    second = run([failing_test_row(201, later(1))], renamed_catalog(), incidents=[incident], now=later(1))

    assert second.drafts == [] and second.resolve == []
    assert second.attach == [(1, [201])]


def test_symptoms_of_the_same_run_join_the_new_draft():
    trust = change(202, "trust_dropped", ORDERS, ORDERS, 81, 60)
    result = run([rename_change(), failing_test_row(201, T0), trust], renamed_catalog())

    assert [d.kind for d in result.drafts] == ["breaking_schema_change"]
    assert result.draft_symptoms == [(result.drafts[0].fingerprint, [201, 202])]


def test_a_failing_test_after_the_group_window_opens_its_own_incident():
    first = run([rename_change()], renamed_catalog())
    incident = stored(first.drafts[0], first)

    late = run([failing_test_row(201, later(30))], renamed_catalog(), incidents=[incident], now=later(30))

    assert late.attach == []
    assert [d.kind for d in late.drafts] == ["test_failing"]
    assert late.drafts[0].fingerprint == incident_fingerprint("test", TEST_FQN)


def test_reverting_the_rename_resolves_the_incident():
    first = run([rename_change()], renamed_catalog())
    incident = stored(first.drafts[0], first)

    reverted = run([], Catalog(), incidents=[incident], now=later(2))

    assert reverted.resolve == [(1, "change reverted: status is back")]


def test_the_incident_resolves_when_nothing_reads_the_old_column_any_more():
    first = run([rename_change()], renamed_catalog())
    incident = stored(first.drafts[0], first)
    repointed = [
        edge(
            e.from_fqn,
            e.to_fqn,
            e.pipeline_fqn,
            **{
                m["to"].rsplit(".", 1)[1]: m["from"][0].rsplit(".", 1)[1]
                for m in e.columns
                if not m["from"][0].endswith(".status")
            },
        )
        if e.from_fqn == STG_ORDERS
        else e
        for e in demo_edges()
    ]

    later_run = run([], renamed_catalog(), incidents=[incident], graph=demo_graph(repointed), now=later(3))

    assert later_run.resolve == [(1, "no dependants left")]


def test_running_twice_on_the_same_changes_drafts_nothing_new():
    first = run([rename_change()], renamed_catalog())
    again = run([rename_change()], renamed_catalog(), incidents=[stored(first.drafts[0], first)])
    assert again.drafts == [] and again.attach == [] and again.resolve == []


def test_a_rename_nobody_reads_is_a_change_not_an_incident():
    catalog = Catalog().set(ORDERS, columns=[("order_id", "NUMBER", None), ("paid", "DECIMAL", None)])
    rename = change(
        5,
        "column_renamed",
        ORDERS,
        "paid_amount_usd",
        "paid_amount_usd",
        "paid",
        details={"old_name": "paid_amount_usd", "new_name": "paid"},
        confidence=0.8,
    )
    assert run([rename], catalog).drafts == []


def test_a_retype_breaks_readers_with_a_type_mismatch():
    cols = [("amount_usd", "VARCHAR", 20) if n == "amount_usd" else (n, t, ln) for n, t, ln in genes_cols(STG_ORDERS)]
    catalog = Catalog().set(STG_ORDERS, columns=cols)
    old = {"type": "DECIMAL", "type_display": "decimal", "length": None, "precision": None, "scale": None}
    new = {"type": "VARCHAR", "type_display": "varchar(20)", "length": 20, "precision": None, "scale": None}
    result = run([change(7, "column_type_changed", STG_ORDERS, "amount_usd", old, new)], catalog)
    draft = result.drafts[0]
    assert {(b.entity_fqn, b.column, b.reason) for b in draft.breaks if b.column} == {
        (ORDERS, "amount_usd", "type_mismatch"),
        (MODEL, "revenue_usd", "type_mismatch"),
    }


def genes_cols(fqn: str) -> list[tuple[str, str, int | None]]:
    return [(c["name"], c["type"], c["length"]) for c in genes(fqn)["schema"]["columns"]]


# ------------------------------------------------------------------------------------------------ edges


def edge_removed_rows(at: datetime = T0) -> list[Any]:
    summary = {"type": "table", "pipeline": SHOP_MARTS, "columns": demo_edges()[2].columns}
    return [
        change(
            301, "lineage_edge_removed", ORDERS, STG_ORDERS, summary, None, details={"direction": "upstream"}, at=at
        ),
        change(
            302, "lineage_edge_removed", STG_ORDERS, ORDERS, summary, None, details={"direction": "downstream"}, at=at
        ),
    ]


def without_stg_to_orders() -> list[Any]:
    return [e for e in demo_edges() if not (e.from_fqn == STG_ORDERS and e.to_fqn == ORDERS)]


def test_a_lost_edge_recorded_on_both_ends_drafts_one_incident():
    result = run(edge_removed_rows(), Catalog(), graph=demo_graph(without_stg_to_orders()))

    assert len(result.drafts) == 1
    draft = result.drafts[0]
    assert draft.kind == "lineage_edge_lost" and draft.cause_change_ids == (301,)
    assert draft.fingerprint == incident_fingerprint("edge", STG_ORDERS, ORDERS)
    assert draft.breaks[0] == Break(ORDERS, None, "table", 1, "lost_upstream", (STG_ORDERS,))
    assert {MODEL, SALES, HEALTH} <= {b.entity_fqn for b in draft.breaks}
    assert all(b.reason == "lost_upstream" for b in draft.breaks)


def test_the_edge_incident_resolves_when_the_edge_is_live_again():
    first = run(edge_removed_rows(), Catalog(), graph=demo_graph(without_stg_to_orders()))
    incident = stored(first.drafts[0], first)
    assert run([], Catalog(), incidents=[incident], graph=demo_graph(without_stg_to_orders())).resolve == []
    back = run([], Catalog(), incidents=[incident], now=later(1))
    assert back.resolve == [(1, f"lineage edge is live again: {STG_ORDERS} → {ORDERS}")]


# ------------------------------------------------------------------------------------------------ ownership


def owner_removed(entity: str, name: str, id: int = 401) -> Any:
    return change(id, "owner_removed", entity, name, {"name": name, "type": "user", "display_name": None}, None)


def test_losing_the_last_owner_of_a_used_table_opens_an_incident():
    catalog = Catalog().set(ORDERS, owners=[])
    result = run([owner_removed(ORDERS, "ana")], catalog)
    draft = result.drafts[0]
    assert draft.kind == "ownership_lost" and draft.title == "No owner left on orders (was ana)"
    assert draft.breaks == (Break(ORDERS, None, "table", 0, "no_owner", ()),)
    assert draft.severity == "SEV3"  # SEV4, one up: Tier1


def test_losing_the_owner_of_an_unused_untiered_table_is_not_an_incident():
    unused = {"daily": 0, "weekly": 0, "monthly": 0, "percentile": None}
    catalog = Catalog().set(RAW_ORDERS, owners=[], tier="", usage=unused)
    assert run([owner_removed(RAW_ORDERS, "data-platform")], catalog).drafts == []


def test_an_owner_removed_while_another_stays_is_not_an_incident():
    catalog = Catalog().set(ORDERS, owners=["ben"])
    assert run([owner_removed(ORDERS, "ana")], catalog).drafts == []


def test_the_ownership_incident_resolves_when_an_owner_is_back():
    first = run([owner_removed(ORDERS, "ana")], Catalog().set(ORDERS, owners=[]))
    incident = stored(first.drafts[0], first)
    assert run([], Catalog(), incidents=[incident]).resolve == [(1, "owned again by ana")]


# ------------------------------------------------------------------------------------ tests, pipelines, trust


def test_a_failing_test_with_nothing_open_drafts_and_resolves_when_it_passes_again():
    first = run([failing_test_row(201, T0)], Catalog())
    draft = first.drafts[0]
    assert draft.kind == "test_failing" and draft.severity == "SEV1"  # SEV3: dashboards, assets, Tier1
    assert draft.breaks[0] == Break(ORDERS, "status", "table", 0, "failing_test", (TEST_FQN,))
    passing = Catalog().set(ORDERS, tests=[{"fqn": TEST_FQN, "name": "status_accepted_values", "status": "Success"}])
    assert run([], passing, incidents=[stored(draft, first)]).resolve == [(1, "test recovered: status_accepted_values")]


def test_a_failed_pipeline_reported_on_it_and_on_its_tables_is_one_incident():
    rows = [
        change(
            501,
            "pipeline_run_failed",
            SHOP_MARTS,
            SHOP_MARTS,
            "Successful",
            "Failed",
            details={"failed_tasks": ["orders"]},
        ),
        change(
            502, "pipeline_run_failed", ORDERS, SHOP_MARTS, "Successful", "Failed", details={"failed_tasks": ["orders"]}
        ),
    ]
    result = run(rows, Catalog())
    assert [d.kind for d in result.drafts] == ["pipeline_failed"]
    draft = result.drafts[0]
    assert draft.cause_change_ids == (501,) and result.draft_symptoms == [(draft.fingerprint, [502])]
    assert draft.title == "Pipeline failed: airflow.shop_marts (failed tasks: orders)"
    ok = Catalog().set(SHOP_MARTS, runs=[{"fqn": SHOP_MARTS, "status": "Successful", "failed_tasks": []}])
    assert run([], ok, incidents=[stored(draft, result)]).resolve == [(1, "pipeline run succeeded: airflow.shop_marts")]


def test_a_trust_drop_resolves_when_the_score_is_back_within_half_the_threshold():
    result = run([change(601, "trust_dropped", RAW_ORDERS, RAW_ORDERS, 90, 60)], Catalog())
    draft = result.drafts[0]
    assert draft.kind == "trust_drop"
    incident = stored(draft, result)
    assert run([], Catalog(), incidents=[incident]).resolve == []  # demo genes score well below 90 - 7.5
    low = Incident(2, draft.fingerprint, "trust_drop", RAW_ORDERS, None, T0, details={"trust_before": 50})
    assert run([], Catalog(), incidents=[low]).resolve[0][1].startswith("trust back to ")


def test_resolved_incidents_are_neither_resolved_again_nor_attached_to():
    first = run([rename_change()], renamed_catalog())
    done = Incident(
        1,
        first.drafts[0].fingerprint,
        "breaking_schema_change",
        STG_ORDERS,
        "status",
        T0,
        status="resolved",
        details=stored(first.drafts[0], first).details,
    )
    result = run([failing_test_row(201, later(1))], Catalog(), incidents=[done], now=later(1))
    assert result.resolve == [] and result.attach == [] and [d.kind for d in result.drafts] == ["test_failing"]


# ------------------------------------------------------------------------------------------------ severity


def brk(entity: str, column: str | None = None, distance: int = 1, type_: str = "table") -> Break:
    return Break(entity, column, type_, distance, "missing_column")


PLAIN = {"entity": {"fqn": "w.s.t"}, "ownership": {"tier": None}, "usage": {"daily": 1, "weekly": 1, "monthly": 1}}


def test_the_severity_base_follows_the_table():
    assert SEVERITY_TABLE["base"]["breaking_schema_change"] == "SEV2"
    for kind, base in SEVERITY_TABLE["base"].items():
        assert severity(kind, breaks=[brk("a")], dashboards=[], root_genes=PLAIN, impacted_genes=[]) == (base, ())


def test_dashboards_raise_the_severity_one_level():
    assert severity(
        "test_failing", breaks=[brk("a")], dashboards=["d1", "d2"], root_genes=PLAIN, impacted_genes=[]
    ) == ("SEV2", ("2 dashboards impacted",))


def test_many_columns_or_assets_raise_the_severity_one_level():
    ten = [brk("a", f"c{i}") for i in range(10)]
    sev, reasons = severity("trust_drop", breaks=ten, dashboards=[], root_genes=PLAIN, impacted_genes=[])
    assert (sev, reasons) == ("SEV3", ("10 columns in 1 asset impacted",))
    five = [brk(f"a{i}") for i in range(5)]
    assert severity("trust_drop", breaks=five, dashboards=[], root_genes=PLAIN, impacted_genes=[])[0] == "SEV3"


def test_a_tier1_asset_or_a_heavily_used_root_raises_the_severity_one_level():
    tier1 = {"entity": {"fqn": "w.s.gold"}, "ownership": {"tier": "Tier.Tier1"}}
    assert severity(
        "test_failing", breaks=[brk("w.s.gold")], dashboards=[], root_genes=PLAIN, impacted_genes=[tier1]
    ) == ("SEV2", ("Tier.Tier1 asset impacted: w.s.gold",))
    hot = {**PLAIN, "usage": {"daily": 9, "weekly": 9, "monthly": 9, "percentile": 95.0}}
    assert severity("test_failing", breaks=[brk("a")], dashboards=[], root_genes=hot, impacted_genes=[]) == (
        "SEV2",
        ("heavily used root: 95th usage percentile",),
    )


def test_nothing_downstream_unused_and_untiered_lowers_the_severity_and_it_clamps():
    unused = {"entity": {"fqn": "w.s.t"}, "ownership": {"tier": None}, "usage": None}
    assert severity("breaking_schema_change", breaks=[], dashboards=[], root_genes=unused, impacted_genes=[]) == (
        "SEV3",
        ("nothing downstream, unused and untiered",),
    )
    assert severity("trust_drop", breaks=[], dashboards=[], root_genes=unused, impacted_genes=[])[0] == "SEV4"
    tier1 = {"entity": {"fqn": "x"}, "ownership": {"tier": "Tier.Tier1"}}
    many = [brk(f"a{i}") for i in range(5)]
    assert (
        severity("lineage_edge_lost", breaks=many, dashboards=["d"], root_genes=tier1, impacted_genes=[])[0] == "SEV1"
    )


def test_an_unknown_kind_is_an_error():
    with pytest.raises(ValueError):
        severity("nope", breaks=[], dashboards=[], root_genes=None, impacted_genes=[])


def test_auto_resolve_also_works_from_the_stored_cause_row_alone():
    old = {"type": "DECIMAL", "type_display": "decimal", "length": None, "precision": None, "scale": None}
    new = {"type": "VARCHAR", "type_display": "varchar(20)", "length": 20, "precision": None, "scale": None}
    retype = change(7, "column_type_changed", STG_ORDERS, "amount_usd", old, new)
    cols = [("amount_usd", "VARCHAR", 20) if n == "amount_usd" else (n, t, ln) for n, t, ln in genes_cols(STG_ORDERS)]
    first = run([retype], Catalog().set(STG_ORDERS, columns=cols))
    draft = first.drafts[0]
    cause = {"kind": retype.kind, "subject": retype.subject, "old_value": old, "new_value": new, "details": {}}
    incident = Incident(
        3, draft.fingerprint, draft.kind, STG_ORDERS, "amount_usd", T0, details={**draft.to_dict(), "cause": cause}
    )

    assert run([], Catalog().set(STG_ORDERS, columns=cols), incidents=[incident]).resolve == []
    assert run([], Catalog(), incidents=[incident]).resolve == [(3, "change reverted: amount_usd is back")]
