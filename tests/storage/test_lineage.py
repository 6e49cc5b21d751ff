"""Lineage graph: who breaks downstream when a column changes, and where a broken table's data comes from."""

from __future__ import annotations

import random

from storage.domain.dna import Edge
from storage.domain.lineage import BlastRadius, ColumnImpact, LineageGraph

DB = "warehouse.analytics.public"
RAW = f"{DB}.raw_orders"
STG = f"{DB}.stg_orders"
FCT = f"{DB}.fct_orders"
MODEL = "superset.model.orders_model"
DASH = "superset.sales"
OTHER_DASH = "superset.ops"
CHART = "superset.revenue_chart"
PIPE = "airflow.load_orders"


def cols(src: str, src_col: str, dst: str, dst_col: str) -> tuple[tuple[tuple[str, ...], str], ...]:
    return (((f"{src}.{src_col}",), f"{dst}.{dst_col}"),)


def shop_graph(**extra_contains) -> LineageGraph:
    """raw_orders.status → stg_orders.status → fct_orders.order_state → model.state → sales dashboard."""
    edges = [
        Edge(RAW, "table", STG, "table", PIPE, cols(RAW, "status", STG, "status") + cols(RAW, "id", STG, "id")),
        Edge(STG, "table", FCT, "table", None, cols(STG, "status", FCT, "order_state") + cols(STG, "id", FCT, "id")),
        Edge(FCT, "table", MODEL, "dashboardDataModel", None, cols(FCT, "order_state", MODEL, "state")),
        Edge(MODEL, "dashboardDataModel", DASH, "dashboard"),  # dashboards rarely carry column mappings
        Edge(STG, "table", f"{DB}.stg_audit", "table", None, cols(STG, "id", f"{DB}.stg_audit", "id")),
    ]
    contains = {DASH: [CHART, "superset.orders_by_day"], OTHER_DASH: [CHART], **extra_contains}
    return LineageGraph.build(edges, {}, contains)


def test_a_column_change_reaches_the_dashboard_through_three_hops_and_a_data_model():
    radius = shop_graph().blast_radius(RAW, "status")

    assert isinstance(radius, BlastRadius) and (radius.root, radius.column) == (RAW, "status")
    assert [(i.fqn, i.distance, i.certainty) for i in radius.entities] == [
        (STG, 1, "column"),
        (FCT, 2, "column"),
        (MODEL, 3, "column"),
        (DASH, 4, "table"),
    ]
    # stg_audit only takes stg.id, so a change of status does not reach it
    assert f"{DB}.stg_audit" not in {i.fqn for i in radius.entities}
    assert radius.entities[-1].path == (RAW, STG, FCT, MODEL, DASH)
    assert radius.columns == [
        ColumnImpact(STG, "status", 1, (f"{RAW}.status", f"{STG}.status")),
        ColumnImpact(FCT, "order_state", 2, (f"{RAW}.status", f"{STG}.status", f"{FCT}.order_state")),
        ColumnImpact(MODEL, "state", 3, (f"{RAW}.status", f"{STG}.status", f"{FCT}.order_state", f"{MODEL}.state")),
    ]
    assert radius.dashboards == [DASH]
    assert radius.charts == ["superset.orders_by_day", CHART]
    assert radius.pipelines == [PIPE]


def test_a_table_level_blast_radius_takes_every_edge():
    radius = shop_graph().blast_radius(RAW)
    assert {i.fqn for i in radius.entities} == {STG, FCT, MODEL, DASH, f"{DB}.stg_audit"}
    assert {i.certainty for i in radius.entities} == {"table"}
    assert radius.columns == []


def test_an_edge_without_column_mappings_carries_the_dependency_at_table_level():
    edges = [
        Edge(RAW, "table", STG, "table", None, cols(RAW, "status", STG, "status")),
        Edge(STG, "table", FCT, "table"),  # no column lineage recorded here
        Edge(FCT, "table", MODEL, "dashboardDataModel", None, cols(FCT, "amount", MODEL, "revenue")),
    ]
    radius = LineageGraph.build(edges, {}).blast_radius(RAW, "status")
    assert [(i.fqn, i.certainty) for i in radius.entities] == [(STG, "column"), (FCT, "table"), (MODEL, "table")]
    assert [(c.entity_fqn, c.column) for c in radius.columns] == [(STG, "status")]


def test_a_column_no_mapping_names_still_follows_unmapped_edges():
    edges = [
        Edge(RAW, "table", STG, "table", None, cols(RAW, "id", STG, "id")),
        Edge(RAW, "table", FCT, "table"),
    ]
    radius = LineageGraph.build(edges, {}).blast_radius(RAW, "comment")
    assert [(i.fqn, i.certainty) for i in radius.entities] == [(FCT, "table")]


def test_cycles_do_not_loop_forever():
    a, b, c = f"{DB}.a", f"{DB}.b", f"{DB}.c"
    edges = [
        Edge(a, "table", b, "table", None, cols(a, "x", b, "x")),
        Edge(b, "table", c, "table", None, cols(b, "x", c, "x")),
        Edge(c, "table", a, "table", None, cols(c, "x", a, "y")),
        Edge(a, "table", a, "table"),  # a self-loop too
    ]
    graph = LineageGraph.build(edges, {})
    radius = graph.blast_radius(a, "x")
    assert [(i.fqn, i.distance) for i in radius.entities] == [(b, 1), (c, 2)]
    # the cycle feeds another column of the root itself
    assert [(col.entity_fqn, col.column, col.distance) for col in radius.columns] == [
        (b, "x", 1),
        (c, "x", 2),
        (a, "y", 3),
    ]
    assert [i.fqn for i in graph.upstream(a)] == [c, b]
    assert graph.upstream_paths(a) == [(b, c, a)]


def test_max_depth_limits_the_walk():
    radius = shop_graph().blast_radius(RAW, "status", max_depth=2)
    assert [i.fqn for i in radius.entities] == [STG, FCT]
    assert radius.dashboards == []


def test_upstream_finds_sources_and_paths_shortest_first():
    side = f"{DB}.customers"
    edges = [
        Edge(RAW, "table", STG, "table", None, cols(RAW, "status", STG, "status")),
        Edge(STG, "table", FCT, "table", None, cols(STG, "status", FCT, "order_state")),
        Edge(side, "table", FCT, "table", None, cols(side, "tier", FCT, "customer_tier")),
        Edge(FCT, "table", MODEL, "dashboardDataModel"),
    ]
    graph = LineageGraph.build(edges, {})

    up = graph.upstream(MODEL)
    assert [(i.fqn, i.distance) for i in up] == [(FCT, 1), (side, 2), (STG, 2), (RAW, 3)]
    assert up[-1].path == (RAW, STG, FCT, MODEL)
    assert graph.upstream_paths(MODEL) == [(side, FCT, MODEL), (RAW, STG, FCT, MODEL)]
    # at column level only the path that feeds the column counts
    assert graph.upstream_paths(FCT, "order_state") == [(RAW, STG, FCT)]
    assert [i.fqn for i in graph.upstream(FCT, "order_state")] == [STG, RAW]
    assert graph.upstream_paths(MODEL, max_depth=1) == [(FCT, MODEL)]
    assert graph.upstream_paths(RAW) == []


def test_a_chart_reached_by_lineage_brings_its_dashboards():
    edges = [
        Edge(FCT, "table", CHART, "chart"),
        Edge(STG, "table", FCT, "table"),
    ]
    graph = LineageGraph.build(edges, {}, {DASH: [CHART, "superset.orders_by_day"], OTHER_DASH: [CHART]})
    radius = graph.blast_radius(STG)
    assert radius.charts == [CHART]
    assert radius.dashboards == [OTHER_DASH, DASH]


def test_entity_types_from_the_catalog_win_and_unknown_roots_are_empty():
    graph = LineageGraph.build([Edge(RAW, "table", "sup.x", "table")], {"sup.x": "dashboard"})
    assert graph.type_of("sup.x") == "dashboard"
    assert graph.blast_radius(RAW).dashboards == ["sup.x"]
    assert graph.blast_radius("nope.nothing") == BlastRadius("nope.nothing", None)
    assert graph.upstream("nope.nothing") == [] and graph.upstream_paths("nope.nothing") == []
    assert RAW in graph and len(graph) == 2 and graph.edge_count == 1


def test_quoted_and_nested_column_names_and_stored_json_mappings():
    dotted = f'{DB}."dim.product"'
    edges = [
        Edge(dotted, "table", FCT, "table", None, [{"from": [f'{dotted}."sku.code"'], "to": f"{FCT}.address.zip"}]),
        Edge(FCT, "table", MODEL, "dashboardDataModel", None, cols(FCT, "address.zip", MODEL, "zip")),
    ]
    graph = LineageGraph.build(edges, {})
    assert graph.downstream_columns(dotted, "sku.code") == {(FCT, "address.zip"), (MODEL, "zip")}
    assert [i.fqn for i in graph.upstream(MODEL, "zip")] == [FCT, dotted]


def test_a_warehouse_sized_graph_answers_sanely():
    rng = random.Random(7)
    layers, width, ncols = 10, 1000, 20
    names = [[f"wh.db.l{layer}.t{i}" for i in range(width)] for layer in range(layers)]
    edges = []
    for layer in range(layers - 1):
        for i, src in enumerate(names[layer]):
            for _ in range(3):
                dst = names[layer + 1][rng.randrange(width)]
                mapping = tuple(((f"{src}.c{k}",), f"{dst}.c{k}") for k in range(ncols))
                edges.append(Edge(src, "table", dst, "table", f"airflow.p{i % 7}", mapping if i % 10 else ()))
    graph = LineageGraph.build(edges, {})
    assert 9_000 < len(graph) <= layers * width and graph.edge_count == len(edges)

    root = names[0][1]
    radius = graph.blast_radius(root, "c3")
    table_level = graph.blast_radius(root)
    assert {i.fqn for i in radius.entities} <= {i.fqn for i in table_level.entities}
    assert all(c.column == "c3" for c in radius.columns)
    assert [i.distance for i in radius.entities] == sorted(i.distance for i in radius.entities)
    assert all(i.path[0] == root and len(i.path) == i.distance + 1 for i in radius.entities)
    leaf = radius.entities[-1].fqn
    assert any(i.fqn == root for i in graph.upstream(leaf))
    assert len(graph.upstream_paths(leaf, limit=10)) <= 10
