"""Observer stories, continued: OpenMetadata incident states of data-quality tests, and deleted upstream assets."""

from __future__ import annotations

from typing import Any

from agents.model import Break, incident_fingerprint
from tests.agents import (
    FINANCE,
    HEALTH,
    MODEL,
    MODEL_REVENUE,
    ORDERS,
    RAW_ORDERS,
    REVENUE,
    SALES,
    SHOP_MARTS,
    STG_ORDERS,
    STG_PAYMENTS,
    T0,
    TYPES,
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
from tests.agents.test_observer import TEST_FQN, Incident, failing_test_row, run, stored

TEST_FP = incident_fingerprint("test", TEST_FQN)


def om_test(status: str = "Failed", om: str | None = "New", assignee: str | None = None) -> dict[str, Any]:
    """The status_accepted_values test on orders.status as the quality gene holds it, with its OM incident."""
    incident = {"state_id": "inc-7", "status": om, "assignee": assignee, "severity": "Severity2"} if om else None
    return {
        "fqn": TEST_FQN,
        "name": "status_accepted_values",
        "column": "status",
        "definition": "columnValuesToBeInSet",
        "status": status,
        "result": "3 unexpected values",
        "incident": incident,
    }


def with_test(catalog: Catalog | None = None, **kwargs: Any) -> Catalog:
    return (catalog or Catalog()).set(ORDERS, tests=[om_test(**kwargs)])


def added_row(id: int = 701, at=T0) -> Any:
    summary = {"name": "status_accepted_values", "column": "status", "definition": None, "status": "Failed"}
    return change(id, "test_added", ORDERS, TEST_FQN, None, summary, at=at)


def column_added(id: int = 702, entity: str = ORDERS, at=T0) -> Any:
    summary = {"type": "DECIMAL", "type_display": "decimal", "length": None, "precision": None, "scale": None}
    return change(id, "column_added", entity, "discount_usd", None, {**summary, "position": 6}, at=at)


# ------------------------------------------------------------------------ OpenMetadata incident states


def test_a_newly_failing_test_keeps_its_openmetadata_incident_in_the_details():
    result = run([failing_test_row(201, T0)], with_test(om="Assigned", assignee="ana"))

    draft = result.drafts[0]
    assert draft.kind == "test_failing" and draft.fingerprint == TEST_FP
    facts = result.details[TEST_FP]
    assert facts["test_fqn"] == TEST_FQN
    assert facts["om_incident"] == {
        "state_id": "inc-7",
        "status": "Assigned",
        "assignee": "ana",
        "severity": "Severity2",
    }


def test_the_incident_on_the_change_row_is_used_when_the_genes_do_not_list_the_test():
    incident = {"state_id": "inc-9", "status": "New", "assignee": None, "severity": None}
    row = change(
        201,
        "test_newly_failing",
        ORDERS,
        TEST_FQN,
        "Success",
        "Failed",
        details={"column": "status", "result": "3 unexpected values", "incident": incident},
    )
    result = run([row], Catalog())
    assert result.details[TEST_FP]["om_incident"] == incident


def test_a_failing_test_without_an_openmetadata_incident_has_none():
    result = run([failing_test_row(201, T0)], Catalog())
    assert result.details[TEST_FP]["om_incident"] is None and result.details[TEST_FP]["test_fqn"] == TEST_FQN


def test_resolving_the_openmetadata_incident_resolves_ours_while_the_test_still_fails():
    first = run([failing_test_row(201, T0)], with_test(om="New"))
    incident = stored(first.drafts[0], first)

    assert run([], with_test(om="Ack", assignee="ana"), incidents=[incident], now=later(1)).resolve == []
    done = run([], with_test(om="Resolved", assignee="ana"), incidents=[incident], now=later(2))
    assert done.resolve == [(1, "resolved in OpenMetadata, assigned to ana")]
    assert done.drafts == []
    nobody = run([], with_test(om="Resolved"), incidents=[incident], now=later(2))
    assert nobody.resolve == [(1, "resolved in OpenMetadata")]


def test_a_recovered_test_still_says_recovered_whatever_openmetadata_says():
    first = run([failing_test_row(201, T0)], with_test(om="New"))
    incident = stored(first.drafts[0], first)
    back = run([], with_test(status="Success", om="Resolved", assignee="ana"), incidents=[incident])
    assert back.resolve == [(1, "test recovered: status_accepted_values")]


def test_the_first_sync_of_a_catalog_with_an_open_openmetadata_incident_opens_ours():
    result = run([added_row(701)], with_test(om="Ack", assignee="ana"))

    assert [d.kind for d in result.drafts] == ["test_failing"]
    draft = result.drafts[0]
    assert draft.fingerprint == TEST_FP and draft.cause_change_ids == (701,)
    assert (draft.root_fqn, draft.root_column) == (ORDERS, "status")
    assert draft.title == "Test failing: status_accepted_values on orders.status"
    assert draft.breaks[0] == Break(ORDERS, "status", "table", 0, "failing_test", (TEST_FQN,))
    assert draft.severity == "SEV1"  # SEV3 up for the dashboards, the assets and Tier1, as any failing test
    facts = result.details[TEST_FP]
    assert facts["om_incident"]["status"] == "Ack" and facts["om_incident"]["assignee"] == "ana"
    assert facts["test_fqn"] == TEST_FQN and facts["result"] == "3 unexpected values"


def test_any_change_on_the_entity_is_enough_to_look_at_its_open_openmetadata_incidents():
    result = run([column_added(702)], with_test(om="New"))

    assert [d.fingerprint for d in result.drafts] == [TEST_FP]
    assert result.drafts[0].cause_change_ids == ()  # the column is not the cause: no cause row
    assert result.draft_symptoms == [] and result.attach == []


def test_open_openmetadata_incidents_on_entities_without_changes_are_not_looked_at():
    assert run([column_added(702, entity=RAW_ORDERS)], with_test(om="New")).drafts == []
    assert run([], with_test(om="New")).drafts == []


def test_only_a_failing_test_with_an_unresolved_openmetadata_incident_opens_one():
    for catalog in (with_test(om="Resolved"), with_test(status="Success", om="New"), with_test(om=None)):
        assert run([added_row(701)], catalog).drafts == []
    for state in ("New", "Ack", "Assigned"):
        assert [d.fingerprint for d in run([added_row(701)], with_test(om=state)).drafts] == [TEST_FP]


def test_an_incident_opened_from_openmetadata_is_never_opened_twice():
    first = run([added_row(701)], with_test(om="New"))
    incident = stored(first.drafts[0], first)

    again = run([column_added(702, at=later(1))], with_test(om="Ack"), incidents=[incident], now=later(1))
    assert again.drafts == [] and again.attach == [] and again.resolve == []


def test_a_newly_failing_row_and_the_open_openmetadata_incident_make_one_draft():
    result = run([added_row(701), failing_test_row(702, T0)], with_test(om="New"))

    assert [d.fingerprint for d in result.drafts] == [TEST_FP]
    assert result.drafts[0].cause_change_ids == (702,)
    assert result.details[TEST_FP]["om_incident"]["status"] == "New"


def test_an_open_openmetadata_incident_inside_an_open_rename_attaches_to_it():
    first = run([rename_change()], Catalog().set(STG_ORDERS, columns=renamed_stg_columns()))
    rename = stored(first.drafts[0], first)
    catalog = with_test(Catalog().set(STG_ORDERS, columns=renamed_stg_columns()), om="New")

    joined = run([added_row(701, at=later(1))], catalog, incidents=[rename], now=later(1))
    assert joined.drafts == [] and joined.attach == [(1, [701])]
    # without a row about the test there is nothing to link, and still nothing to open
    quiet = run([column_added(702, at=later(1))], catalog, incidents=[rename], now=later(1))
    assert quiet.drafts == [] and quiet.attach == []


def test_an_open_openmetadata_incident_joins_a_rename_of_the_same_run():
    catalog = with_test(Catalog().set(STG_ORDERS, columns=renamed_stg_columns()), om="New")
    result = run([rename_change(), added_row(701)], catalog)

    assert [d.kind for d in result.drafts] == ["breaking_schema_change"]
    assert result.draft_symptoms == [(result.drafts[0].fingerprint, [701])]


def test_an_incident_opened_from_openmetadata_resolves_there_too():
    first = run([column_added(702)], with_test(om="New"))
    incident = stored(first.drafts[0], first)
    assert run([], with_test(om="Resolved", assignee="ben"), incidents=[incident]).resolve == [
        (1, "resolved in OpenMetadata, assigned to ben")
    ]


def test_drafts_without_a_row_of_their_own_are_ordered_by_the_rows_that_brought_them():
    trust = change(601, "trust_dropped", RAW_ORDERS, RAW_ORDERS, 90, 60)
    result = run([column_added(702), trust], with_test(om="New"))
    assert [d.kind for d in result.drafts] == ["trust_drop", "test_failing"]


# ------------------------------------------------------------------------ deleted upstream assets


def deleted(fqn: str, *downstream: str) -> dict[str, Any]:
    """The last genes of a deleted entity as a sync keeps them: deleted, with the lineage it had."""
    g = genes(fqn)
    g["entity"]["deleted"] = True
    g["lineage"]["downstream"] = [
        {"fqn": d, "type": TYPES.get(d, "table"), "pipeline": SHOP_MARTS, "columns": []} for d in downstream
    ]
    return g


def deleted_catalog(fqn: str = STG_PAYMENTS, *downstream: str) -> Catalog:
    catalog = Catalog()
    catalog.overrides[fqn] = deleted(fqn, *(downstream or (ORDERS, REVENUE)))
    return catalog


def without(fqn: str) -> Any:
    """The demo graph once a sync dropped the edges of a deleted entity."""
    return demo_graph([e for e in demo_edges() if fqn not in (e.from_fqn, e.to_fqn)])


def deletion(id: int = 801, fqn: str = STG_PAYMENTS, at=T0) -> Any:
    return change(id, "entity_deleted", fqn, fqn, False, True, at=at)


def test_deleting_an_upstream_table_is_a_breaking_change():
    result = run([deletion()], deleted_catalog())

    assert len(result.drafts) == 1
    draft = result.drafts[0]
    assert draft.kind == "breaking_schema_change"
    assert draft.fingerprint == incident_fingerprint("deleted", STG_PAYMENTS)
    assert (draft.root_fqn, draft.root_column, draft.cause_change_ids) == (STG_PAYMENTS, None, (801,))
    assert draft.title == "staging.stg_payments was deleted: 4 assets and 3 dashboards impacted"
    assert {ORDERS, REVENUE, MODEL, MODEL_REVENUE} <= {b.entity_fqn for b in draft.breaks}
    assert all(b.reason == "lost_upstream" and b.distance > 0 for b in draft.breaks)
    assert set(draft.dashboards) == {SALES, HEALTH, FINANCE} and len(draft.charts) == 6
    assert draft.severity == "SEV1" and "3 dashboards impacted" in draft.severity_reasons
    assert result.details[draft.fingerprint]["key"] == ["deleted", STG_PAYMENTS]


def test_the_deleted_assets_dependants_come_from_its_last_genes_once_the_sync_dropped_its_edges():
    with_edges = run([deletion()], deleted_catalog()).drafts[0]
    dropped = run([deletion()], deleted_catalog(), graph=without(STG_PAYMENTS)).drafts[0]

    assert dropped.breaks[0] == Break(ORDERS, None, "table", 1, "lost_upstream", (STG_PAYMENTS,))
    model = next(b for b in dropped.breaks if b.entity_fqn == MODEL)
    assert (model.distance, model.via) == (2, (STG_PAYMENTS, ORDERS))
    assert {(b.entity_fqn, b.distance) for b in dropped.breaks} == {
        (b.entity_fqn, b.distance) for b in with_edges.breaks
    }
    assert (dropped.title, dropped.severity) == (with_edges.title, with_edges.severity)


def test_deleting_something_nothing_depends_on_opens_nothing():
    catalog = Catalog()
    catalog.overrides[SALES] = deleted(SALES)
    assert run([deletion(fqn=SALES)], catalog, graph=without(SALES)).drafts == []
    assert run([deletion(fqn=HEALTH)], Catalog()).drafts == []  # a dashboard: nothing downstream in the graph


def test_dependants_deleted_too_are_not_impacted():
    catalog = deleted_catalog(RAW_ORDERS, STG_ORDERS)
    catalog.overrides[STG_ORDERS] = deleted(STG_ORDERS)
    graph = demo_graph(
        [
            e
            for e in demo_edges()
            if RAW_ORDERS not in (e.from_fqn, e.to_fqn) and STG_ORDERS not in (e.from_fqn, e.to_fqn)
        ]
    )
    assert run([deletion(fqn=RAW_ORDERS)], catalog, graph=graph).drafts == []


def test_a_small_deletion_gets_the_schema_change_base_severity():
    graph = demo_graph([edge(RAW_ORDERS, STG_ORDERS)])
    draft = run([deletion(fqn=RAW_ORDERS)], deleted_catalog(RAW_ORDERS, STG_ORDERS), graph=graph).drafts[0]
    assert draft.title == "raw.orders was deleted: 1 asset impacted"
    assert draft.breaks == (Break(STG_ORDERS, None, "table", 1, "lost_upstream", (RAW_ORDERS,)),)
    assert (draft.severity, draft.severity_reasons) == ("SEV2", ())


def test_lost_edges_of_the_deletion_join_its_draft():
    rows = [
        deletion(801),
        change(
            802,
            "lineage_edge_removed",
            ORDERS,
            STG_PAYMENTS,
            {"pipeline": SHOP_MARTS},
            None,
            details={"direction": "upstream"},
        ),
        change(
            803,
            "lineage_edge_removed",
            REVENUE,
            STG_PAYMENTS,
            {"pipeline": SHOP_MARTS},
            None,
            details={"direction": "upstream"},
        ),
    ]
    result = run(rows, deleted_catalog(), graph=without(STG_PAYMENTS))
    assert [d.kind for d in result.drafts] == ["breaking_schema_change"]
    assert result.draft_symptoms == [(result.drafts[0].fingerprint, [802, 803])]


def test_the_deletion_incident_resolves_when_the_asset_is_restored():
    first = run([deletion()], deleted_catalog())
    incident = stored(first.drafts[0], first)

    still = run([], deleted_catalog(), incidents=[incident], graph=without(STG_PAYMENTS), now=later(1))
    assert still.resolve == [] and still.drafts == []
    again = run([deletion()], deleted_catalog(), incidents=[incident], now=later(1))
    assert again.drafts == [] and again.resolve == []
    restored = change(901, "entity_restored", STG_PAYMENTS, STG_PAYMENTS, True, False, at=later(2))
    back = run([restored], Catalog(), incidents=[incident], now=later(2))
    assert back.resolve == [(1, "restored")] and back.drafts == []


def test_restore_is_judged_from_the_fingerprint_alone():
    fp = incident_fingerprint("deleted", STG_PAYMENTS)
    bare = Incident(4, fp, "breaking_schema_change", STG_PAYMENTS, None, T0)
    assert run([], deleted_catalog(), incidents=[bare]).resolve == []
    assert run([], Catalog(), incidents=[bare]).resolve == [(4, "restored")]
