"""Fixer stories: each proposal is simulated on copies and says which breaks it resolves and which remain."""

from __future__ import annotations

from agents import breaks as bk
from agents.fixer import NOTE, propose, quote_ident, sql_type, table_sql_name
from agents.model import Break
from tests.agents import (
    HEALTH,
    MODEL,
    ORDERS,
    REVENUE,
    SALES,
    SHOP_MARTS,
    STG_ORDERS,
    Catalog,
    change,
    demo_edges,
    demo_graph,
    rename_change,
    renamed_stg_columns,
)


def schema_fixes(change_row, catalog, graph=None):
    graph = graph or demo_graph()
    column = (change_row.details or {}).get("old_name") or change_row.subject
    columns = catalog(change_row.entity_fqn)["schema"]["columns"]
    expected = None if change_row.kind != "column_type_changed" else bk.type_signature(change_row.old_value)
    breaks = bk.schema_breaks(
        graph, change_row.entity_fqn, column, columns, expected, renamed_to=(change_row.details or {}).get("new_name")
    )
    fixes = propose(
        kind="breaking_schema_change",
        root_fqn=change_row.entity_fqn,
        root_column=column,
        change=change_row,
        graph=graph,
        genes_of=catalog,
        breaks=breaks,
    )
    return fixes, breaks


def test_the_alias_view_resolves_all_three_column_breaks_and_both_dashboards():
    fixes, breaks = schema_fixes(rename_change(), Catalog().set(STG_ORDERS, columns=renamed_stg_columns()))

    alias = fixes[0]
    assert alias.kind == "alias_view" and alias.simulated
    assert alias.sql == (
        "CREATE OR REPLACE VIEW staging.stg_orders_compat AS SELECT *, order_state AS status FROM staging.stg_orders;"
    )
    resolved = {(b.entity_fqn, b.column) for b in alias.resolves}
    assert {(ORDERS, "status"), (REVENUE, "order_status"), (MODEL, "order_status")} <= resolved
    assert {(SALES, None), (HEALTH, None)} <= resolved
    assert alias.remains == () and len(alias.resolves) == len(breaks)
    assert alias.steps[-1] == NOTE


def test_re_pointing_downstream_models_to_the_new_name_is_the_alternative():
    fixes, breaks = schema_fixes(rename_change(), Catalog().set(STG_ORDERS, columns=renamed_stg_columns()))

    repoint = fixes[1]
    assert repoint.kind == "repoint_downstream" and repoint.title == "Re-point downstream models to order_state"
    assert repoint.sql is None and repoint.remains == () and len(repoint.resolves) == len(breaks)
    assert f"In {ORDERS}, read stg_orders.order_state instead of stg_orders.status." in repoint.steps


def test_the_cast_view_restores_the_old_type():
    cols = [
        ("amount_usd", "VARCHAR", 20) if n == "amount_usd" else (n, t, ln)
        for n, t, ln in [(c["name"], c["type"], c["length"]) for c in Catalog()(STG_ORDERS)["schema"]["columns"]]
    ]
    catalog = Catalog().set(STG_ORDERS, columns=cols)
    old = {"type": "DECIMAL", "type_display": "decimal(18,2)", "length": None, "precision": 18, "scale": 2}
    new = {"type": "VARCHAR", "type_display": "varchar(20)", "length": 20, "precision": None, "scale": None}
    retype = change(7, "column_type_changed", STG_ORDERS, "amount_usd", old, new)

    [cast], breaks = schema_fixes(retype, catalog)

    assert {b.reason for b in breaks} == {"type_mismatch"} and breaks
    assert cast.kind == "cast_view" and cast.remains == () and len(cast.resolves) == len(breaks)
    assert cast.sql == (
        "CREATE OR REPLACE VIEW staging.stg_orders_compat AS SELECT order_id, customer_id, status, "
        "CAST(amount_usd AS decimal(18,2)) AS amount_usd, ordered_at FROM staging.stg_orders;"
    )


def test_a_dropped_column_is_restored_with_its_old_type():
    cols = [(c["name"], c["type"], c["length"]) for c in Catalog()(STG_ORDERS)["schema"]["columns"]]
    catalog = Catalog().set(STG_ORDERS, columns=[c for c in cols if c[0] != "status"])
    summary = {
        "type": "VARCHAR",
        "type_display": "varchar(32)",
        "length": 32,
        "precision": None,
        "scale": None,
        "position": 3,
    }
    drop = change(8, "column_removed", STG_ORDERS, "status", summary, None)

    restore, repoint, *_ = schema_fixes(drop, catalog)[0]

    assert restore.kind == "restore_column"
    assert restore.sql == "ALTER TABLE staging.stg_orders ADD COLUMN status varchar(32);"
    assert restore.remains == () and len(restore.resolves) == 9
    assert repoint.kind == "repoint_downstream" and repoint.remains == ()


def test_sql_quotes_odd_names_and_refuses_odd_types():
    assert quote_ident("order_state") == "order_state"
    assert quote_ident("order state") == '"order state"'
    assert quote_ident("user") == '"user"'
    assert quote_ident('a"; DROP TABLE x; --') == '"a""; DROP TABLE x; --"'
    assert table_sql_name('warehouse.shop."sales.eu"."daily orders"') == '"sales.eu"."daily orders"'
    assert sql_type({"type_display": "varchar(32)"}) == "varchar(32)"
    assert sql_type({"type_display": "varchar(32)); DROP TABLE x; --"}) is None
    assert sql_type({"type": "DECIMAL", "precision": 18, "scale": 2}) == "DECIMAL(18,2)"


def test_a_rename_with_odd_names_gets_quoted_sql():
    entity = 'warehouse.shop."sales.eu".orders'
    graph = demo_graph([*demo_edges(), bk_edge(entity, "order status", ORDERS, "status")])
    catalog = Catalog().set(entity, columns=[("order state", "VARCHAR", 32)])
    rename = change(
        9,
        "column_renamed",
        entity,
        "order status",
        "order status",
        "order state",
        details={"old_name": "order status", "new_name": "order state"},
        confidence=0.9,
    )
    [alias, _], _ = schema_fixes(rename, catalog, graph)
    assert alias.sql == (
        'CREATE OR REPLACE VIEW "sales.eu".orders_compat AS SELECT *, "order state" AS "order status" '
        'FROM "sales.eu".orders;'
    )


def bk_edge(src, src_col, dst, dst_col):
    from storage.domain.dna import Edge

    return Edge(
        src,
        "table",
        dst,
        "table",
        None,
        [{"from": [f'{src}."{src_col}"' if "." in src_col else f"{src}.{src_col}"], "to": f"{dst}.{dst_col}"}],
    )


def test_restoring_a_lost_edge_resolves_everything_it_fed():
    graph = demo_graph([e for e in demo_edges() if not (e.from_fqn == STG_ORDERS and e.to_fqn == ORDERS)])
    summary = {"type": "table", "pipeline": SHOP_MARTS, "columns": demo_edges()[2].columns}
    lost = change(301, "lineage_edge_removed", ORDERS, STG_ORDERS, summary, None, details={"direction": "upstream"})
    breaks = bk.edge_breaks(graph, STG_ORDERS, ORDERS, bk.has_edge(graph, STG_ORDERS, ORDERS))

    [fix] = propose(
        kind="lineage_edge_lost",
        root_fqn=ORDERS,
        root_column=None,
        change=lost,
        graph=graph,
        genes_of=Catalog(),
        breaks=breaks,
    )

    assert fix.kind == "restore_edge" and fix.simulated and fix.remains == ()
    assert len(fix.resolves) == len(breaks) and any(b.entity_fqn == SALES for b in fix.resolves)
    assert fix.steps[0].startswith(f"Re-run {SHOP_MARTS}")


def test_assigning_the_previous_owner_resolves_the_ownership_incident():
    catalog = Catalog().set(ORDERS, owners=[])
    removed = change(401, "owner_removed", ORDERS, "ana", {"name": "ana", "type": "user", "display_name": None})
    breaks = bk.ownership_breaks(catalog(ORDERS))

    [fix] = propose(
        kind="ownership_lost",
        root_fqn=ORDERS,
        root_column=None,
        change=removed,
        graph=demo_graph(),
        genes_of=catalog,
        breaks=breaks,
    )

    assert fix.kind == "assign_owner" and fix.title == "Assign an owner to orders: ana (the previous owner)"
    assert fix.resolves == (Break(ORDERS, None, "table", 0, "no_owner", ()),) and fix.remains == ()


def test_a_failed_pipeline_is_re_run_after_fixing_its_cause():
    failed = change(
        501, "pipeline_run_failed", SHOP_MARTS, SHOP_MARTS, "Successful", "Failed", details={"failed_tasks": ["orders"]}
    )
    breaks = bk.pipeline_breaks(demo_graph(), SHOP_MARTS, "Failed", [ORDERS])
    [fix] = propose(
        kind="pipeline_failed",
        root_fqn=SHOP_MARTS,
        root_column=None,
        change=failed,
        graph=demo_graph(),
        genes_of=Catalog(),
        breaks=breaks,
    )
    assert fix.kind == "rerun_pipeline" and fix.remains == () and len(fix.resolves) == len(breaks)
    assert "orders" in fix.steps[0]


def test_a_failing_test_with_an_unknown_cause_gets_an_investigation_not_a_simulation():
    failing = change(
        201,
        "test_newly_failing",
        ORDERS,
        f"{ORDERS}.status.accepted",
        "Success",
        "Failed",
        details={"column": "status"},
    )
    breaks = bk.test_breaks(demo_graph(), ORDERS, "status", failing.subject, "Failed")
    [fix] = propose(
        kind="test_failing",
        root_fqn=ORDERS,
        root_column="status",
        change=failing,
        graph=demo_graph(),
        genes_of=Catalog(),
        breaks=breaks,
    )
    assert fix.kind == "investigate" and not fix.simulated and fix.sql is None
    assert fix.resolves == () and fix.remains == ()


def test_a_failing_test_whose_cause_is_a_rename_gets_the_rename_fixes():
    catalog = Catalog().set(STG_ORDERS, columns=renamed_stg_columns())
    fixes = propose(
        kind="test_failing",
        root_fqn=ORDERS,
        root_column="status",
        change=rename_change(),
        graph=demo_graph(),
        genes_of=catalog,
        breaks=(),
    )
    assert [f.kind for f in fixes] == ["alias_view", "repoint_downstream"]
    assert fixes[0].remains == () and len(fixes[0].resolves) == 9


def test_a_graph_copy_has_the_same_blast_radius():
    graph = demo_graph()
    copy = bk.rebuild_graph(graph, bk.graph_edges(graph))
    assert copy.blast_radius(STG_ORDERS, "status") == graph.blast_radius(STG_ORDERS, "status")
    assert copy.edge_count == graph.edge_count
