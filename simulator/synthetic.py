"""Synthetic catalogs for benchmarks: a layered raw → staging → marts DAG with column lineage."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from simulator.catalog import Catalog
from simulator.records import usage_summary
from storage.openmetadata import fqn as fqnlib

SERVICE, DATABASE = "synth", "dw"
TYPES = ("BIGINT", "VARCHAR", "TIMESTAMP", "DECIMAL", "BOOLEAN", "DATE", "INT", "DOUBLE")
TEAMS = ("data-platform", "analytics", "finance", "growth")


def _columns(count: int, described: bool) -> list[dict[str, Any]]:
    cols: list[dict[str, Any]] = [{"name": "id", "dataType": "BIGINT", "constraint": "PRIMARY_KEY"}]
    for j in range(1, count):
        data_type = TYPES[j % len(TYPES)]
        col: dict[str, Any] = {"name": f"c{j:02d}", "dataType": data_type}
        if data_type == "VARCHAR":
            col["dataLength"] = 64
        if described and j % 4 == 1:
            col["description"] = f"Attribute {j}"
        cols.append(col)
    return cols[:count]


def synthetic_catalog(
    n_tables: int,
    *,
    columns: int = 20,
    upstream: int = 3,
    dashboards: int | None = None,
    seed: int = 0,
    clock: Callable[[], int] | None = None,
) -> Catalog:
    """`n_tables` tables (40% raw, 35% staging, 25% marts), each fed by ≈`upstream` tables of the layer below.

    Every edge maps each downstream column from one upstream column; marts feed data models and
    dashboards (`dashboards` defaults to n/20, two charts each); loaders are grouped into pipelines;
    one table in five has a test (one in ten of those failing, which opens an incident).
    """
    rng = random.Random(seed)
    cat = Catalog(clock=clock)
    n_dash = n_tables // 20 if dashboards is None else dashboards
    with cat.lock:
        cat.add_service(SERVICE, "databaseService", "Snowflake")
        cat.add_service("bi", "dashboardService", "Looker")
        cat.add_service("orchestrator", "pipelineService", "Airflow")
        for team in TEAMS:
            cat.add_team(team, display_name=team.replace("-", " ").title())
        users = [f"user{i:02d}" for i in range(20)]
        for i, user in enumerate(users):
            cat.add_user(user, display_name=f"User {i}", email=f"{user}@synth.example", teams=[TEAMS[i % len(TEAMS)]])
        n_raw = max(1, n_tables * 40 // 100)
        n_stg = max(0, n_tables * 35 // 100)
        layers = [("raw", n_raw), ("staging", n_stg), ("marts", n_tables - n_raw - n_stg)]
        n_pipes = max(1, n_tables // 100)
        for p in range(n_pipes):
            cat.add_pipeline(
                "orchestrator",
                f"load_{p:04d}",
                tasks=[{"name": "extract", "downstreamTasks": ["load"]}, {"name": "load"}],
                schedule_interval="0 * * * *",
                owners=[users[p % len(users)]],
            )
        usage_date = "2025-01-01"
        previous: list[str] = []
        for layer, count in layers:
            current: list[str] = []
            for i in range(count):
                name = f"{layer[:4]}_{i:05d}"
                tier = {"raw": "Tier.Tier3", "staging": "Tier.Tier2", "marts": "Tier.Tier1"}[layer]
                rec = cat.add_table(
                    SERVICE,
                    DATABASE,
                    layer,
                    name,
                    columns=_columns(columns, described=layer != "raw"),
                    description=f"{layer} table {i}",
                    owners=[users[i % len(users)]] if i % 7 else [TEAMS[i % len(TEAMS)]],
                    tags=[tier],
                    usage=usage_summary(i % 50, i % 300, i % 1200, float(i % 100), usage_date),
                )
                current.append(rec.fqn)
                if previous:
                    sources = rng.sample(previous, min(upstream, len(previous)))
                    for k, src in enumerate(sources):
                        mapping = {
                            fqnlib.column_fqn(rec.fqn, c["name"]): [fqnlib.column_fqn(src, c["name"])]
                            for j, c in enumerate(_columns(columns, False))
                            if j % len(sources) == k
                        }
                        pipe = f"orchestrator.load_{(i + k) % n_pipes:04d}"
                        cat.add_edge(
                            src,
                            rec.fqn,
                            from_type="table",
                            to_type="table",
                            columns=mapping,
                            pipeline=pipe,
                            check_columns=False,
                        )
                if i % 5 == 0 and layer != "raw":
                    _test(cat, rec.fqn, failing=i % 50 == 0)
            previous = current
        _dashboards(cat, previous, n_dash, columns, users)
    return cat


def _test(cat: Catalog, table_fqn: str, *, failing: bool) -> None:
    case = cat.add_test_case(table_fqn, "id_unique", definition="columnValuesToBeUnique", column="id")
    cat.add_test_result(case.fqn, "Success", result="0 duplicates", timestamp=cat.tick() - 86_400_000, event=False)
    if failing:
        cat.add_test_result(case.fqn, "Failed", result="12 duplicates", event=False)


def _dashboards(cat: Catalog, marts: list[str], count: int, columns: int, users: list[str]) -> None:
    if not marts:
        return
    for d in range(count):
        mart = marts[d % len(marts)]
        model_cols = _columns(min(columns, 6), False)
        model = cat.add_data_model("bi", f"model_{d:04d}", data_model_type="LookMlExplore", columns=model_cols)
        mapping = {c["name"]: [c["name"]] for c in model_cols}
        cat.add_edge(
            mart, model.fqn, from_type="table", to_type="dashboardDataModel", columns=mapping, check_columns=False
        )
        charts = []
        for k in range(2):
            chart = cat.add_chart("bi", f"chart_{d:04d}_{k}", chart_type="Line", display_name=f"Chart {d}.{k}")
            charts.append(chart.fqn)
        dash = cat.add_dashboard(
            "bi",
            f"dash_{d:04d}",
            charts=charts,
            data_models=[model.fqn],
            display_name=f"Dashboard {d}",
            owners=[users[d % len(users)]],
            tags=["Tier.Tier1"] if d % 3 == 0 else [],
        )
        cat.add_edge(model.fqn, dash.fqn, from_type="dashboardDataModel", to_type="dashboard", check_columns=False)
