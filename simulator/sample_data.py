"""Load OpenMetadata's official sample data into a Catalog, rebuilt as the 1.13 loader does (doc §9.3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.records import COLUMN_KEYS

if TYPE_CHECKING:
    from simulator.catalog import Catalog

DAY_MS = 86_400_000
# CreateTableRequest fields the loader passes through, plus the extras kept for their `fields=`.
TABLE_EXTRAS = ("schemaDefinition", "sourceUrl", "tablePartition", "joins", "sampleData")
COLUMN_FIELDS = frozenset(COLUMN_KEYS) - {"fullyQualifiedName"}  # the loader rebuilds column FQNs
# Incident life cycles played after a failure streak ends (doc §5.3 `resolutions.sequence*`).
RESOLUTIONS = (
    ("Ack", "Assigned", "Resolved"),
    ("Ack", "Assigned", "Assigned", "Resolved"),
    ("Resolved",),
)
AVRO_TYPES = {
    "string": "STRING",
    "int": "INT",
    "long": "LONG",
    "float": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "bytes": "BYTES",
    "null": "NULL",
    "record": "RECORD",
    "array": "ARRAY",
    "map": "MAP",
    "enum": "ENUM",
    "fixed": "FIXED",
}


def _read(root: Path, rel: str) -> Any:
    return json.loads((root / rel).read_text("utf-8"))


def load_sample_data(catalog: Catalog, root: Path) -> None:
    """Fill `catalog` from the sample data directory `root`."""
    with catalog.lock:
        _people(catalog, root)
        _tables(catalog, root)
        _dashboards(catalog, root, "dashboards")
        _dashboards(catalog, root, "looker")
        _pipelines(catalog, root)
        _topics(catalog, root)
        _lineage(catalog, root)
        _tests(catalog, root)


def _service(catalog: Catalog, root: Path, rel: str, kind: str) -> str:
    svc = _read(root, rel)
    catalog.add_service(svc["serviceName"], kind, svc["serviceConnection"]["config"]["type"])
    return str(svc["serviceName"])


def _people(catalog: Catalog, root: Path) -> None:
    teams = _read(root, "teams/teams.json")["teams"]
    done: set[str] = set()
    pending = list(teams)
    while pending:  # parents before children
        progressed = False
        for team in list(pending):
            parents = team.get("parent") or []
            if all(p in done for p in parents):
                catalog.add_team(team["name"], team_type=team.get("teamType", "Group"), parents=parents)
                done.add(team["name"])
                pending.remove(team)
                progressed = True
        if not progressed:
            raise ValueError(f"team hierarchy has a cycle: {[t['name'] for t in pending]}")
    for user in _read(root, "users/users.json")["users"]:
        team_names = user.get("teams") or []
        if isinstance(team_names, str):
            team_names = [team_names]
        catalog.add_user(
            user["name"],
            display_name=user.get("displayName"),
            email=user.get("email"),
            teams=[t for t in team_names if t in done],
            is_admin=bool(user.get("isAdmin")),
        )


def _clean_column(col: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in col.items() if k in COLUMN_FIELDS}
    if out.get("children"):
        out["children"] = [_clean_column(c) for c in out["children"]]
    return out


def _tables(catalog: Catalog, root: Path) -> None:
    service = _service(catalog, root, "datasets/service.json", "databaseService")
    database = _read(root, "datasets/database.json")["name"]
    schema = _read(root, "datasets/database_schema.json")["name"]
    for table in _read(root, "datasets/tables.json")["tables"]:
        usage = table.get("usageSummary")
        extra = {k: table[k] for k in TABLE_EXTRAS if table.get(k) is not None}
        catalog.add_table(
            service,
            database,
            schema,
            table["name"],
            columns=[_clean_column(c) for c in table["columns"]],
            description=table.get("description"),
            display_name=table.get("displayName"),
            table_type=table.get("tableType", "Regular"),
            constraints=table.get("tableConstraints"),
            tags=table.get("tags") or [],
            usage=dict(usage) if usage else None,
            extra=extra,
        )


def _dashboards(catalog: Catalog, root: Path, folder: str) -> None:
    service = _service(catalog, root, f"{folder}/service.json", "dashboardService")
    models = _read(root, f"{folder}/dashboardDataModels.json")
    for model in models["datamodels"] if isinstance(models, dict) else models:
        catalog.add_data_model(
            service,
            model["name"],
            data_model_type=model["dataModelType"],
            columns=[_clean_column(c) for c in model["columns"]],
            sql=model.get("sql"),
            description=model.get("description"),
            display_name=model.get("displayName"),
            tags=model.get("tags") or [],
        )
    charts = _read(root, f"{folder}/charts.json")
    for chart in charts["charts"] if isinstance(charts, dict) else charts:
        # The loader names a chart by its `name`; the stale `fullyQualifiedName` in the file is ignored.
        catalog.add_chart(
            service,
            chart["name"],
            chart_type=chart.get("chartType", "Other"),
            description=chart.get("description"),
            display_name=chart.get("displayName"),
            source_url=chart.get("chartUrl"),
        )
    dashboards = _read(root, f"{folder}/dashboards.json")
    for dash in dashboards["dashboards"] if isinstance(dashboards, dict) else dashboards:
        catalog.add_dashboard(
            service,
            dash["name"],
            charts=dash.get("charts") or [],
            data_models=dash.get("dataModels") or [],
            description=dash.get("description"),
            display_name=dash.get("displayName"),
            source_url=dash.get("dashboardUrl"),
        )


def _pipelines(catalog: Catalog, root: Path) -> None:
    service = _service(catalog, root, "pipelines/service.json", "pipelineService")
    for pipe in _read(root, "pipelines/pipelines.json")["pipelines"]:
        tasks = [
            {
                "name": t["name"],
                "displayName": t.get("displayName"),
                "description": t.get("description"),
                "sourceUrl": t.get("taskUrl"),
                "downstreamTasks": t.get("downstreamTasks") or [],
                "taskType": t.get("taskType"),
            }
            for t in pipe.get("tasks") or []
        ]
        catalog.add_pipeline(
            service,
            pipe["name"],
            tasks=tasks,
            description=pipe.get("description"),
            display_name=pipe.get("displayName"),
            source_url=pipe.get("pipelineUrl"),
        )
    for entry in _read(root, "pipelines/pipelineStatus.json"):
        for run in entry["pipelineStatus"]:
            catalog.set_pipeline_status(
                entry["pipeline"],
                run["executionStatus"],
                task_status=run.get("taskStatus") or [],
                timestamp=run["timestamp"],
                event=False,
            )


def _avro_fields(schema: Any) -> list[dict[str, Any]]:
    """OM-style schemaFields for an Avro schema: the record itself, its fields as children."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return []
    return [_avro_field(schema["name"], schema)]


def _avro_field(name: str, avro: Any) -> dict[str, Any]:
    kind = avro.get("type") if isinstance(avro, dict) else avro
    if isinstance(kind, list):
        data_type = "UNION"
    elif isinstance(kind, dict):
        return _avro_field(name, kind)
    else:
        data_type = AVRO_TYPES.get(str(kind), "UNKNOWN")
    field: dict[str, Any] = {"name": name, "dataType": data_type}
    if isinstance(avro, dict) and avro.get("doc"):
        field["description"] = avro["doc"]
    if data_type == "RECORD" and isinstance(avro, dict):
        field["children"] = [_avro_field(f["name"], f) for f in avro.get("fields") or []]
    return field


def _topics(catalog: Catalog, root: Path) -> None:
    service = _service(catalog, root, "topics/service.json", "messagingService")
    for topic in _read(root, "topics/topics.json")["topics"]:
        text = topic.get("schemaText")
        fields: list[dict[str, Any]] = []
        if text and topic.get("schemaType") == "Avro":
            try:
                fields = _avro_fields(json.loads(text))
            except ValueError:
                fields = []
        extra = {
            k: topic.get(k) for k in ("retentionSize", "replicationFactor", "maximumMessageSize", "cleanupPolicies")
        }
        catalog.add_topic(
            service,
            topic["name"],
            partitions=topic.get("partitions", 1),
            schema_type=topic.get("schemaType"),
            schema_text=text,
            fields=fields,
            description=topic.get("description"),
            extra=extra,
        )


def _lineage(catalog: Catalog, root: Path) -> None:
    for edge in _read(root, "lineage/lineage.json"):
        meta = edge.get("edge_meta") or {}
        catalog.add_edge(
            edge["from"]["fqn"],
            edge["to"]["fqn"],
            from_type=edge["from"]["type"],
            to_type=edge["to"]["type"],
            pipeline=meta.get("fqn") or None,
            sql_query=edge.get("sql_query"),
        )


def _tests(catalog: Catalog, root: Path) -> None:
    results = {r["name"]: r["results"] for r in _read(root, "tests/testCaseResults.json")["testCaseResults"]}
    now = catalog.tick()
    for suite in _read(root, "tests/testSuites.json")["tests"]:
        for i, case in enumerate(suite["testCases"]):
            link = case["entityLink"][5:-1].split("::")
            column = link[3] if len(link) >= 4 else None
            rec = catalog.add_test_case(
                link[1],
                case["name"],
                definition=case["testDefinitionName"],
                column=column,
                parameters=case.get("parameterValues"),
                description=case.get("description"),
                logical_suites=[suite["testSuiteName"]],
            )
            key = f"{column}.{case['name']}" if column else case["name"]
            _play_results(catalog, rec.fqn, results.get(key, []), now, RESOLUTIONS[i % len(RESOLUTIONS)])


def _play_results(
    catalog: Catalog, case_fqn: str, results: list[dict[str, Any]], now: int, resolution: tuple[str, ...]
) -> None:
    """Results get `now - i days` (the file is newest first); a failure streak closed by a success is resolved."""
    for i in range(len(results) - 1, -1, -1):
        res = results[i]
        ts = now - i * DAY_MS
        status = res["testCaseStatus"]
        if status == "Success" and case_fqn in catalog.open_incidents:
            for step, kind in enumerate(resolution, start=1):
                catalog.add_incident_status(
                    case_fqn,
                    kind,
                    assignee="aaron_johnson0" if kind == "Assigned" else None,
                    reason="MissingData" if kind == "Resolved" else None,
                    comment="Backfilled the missing partition" if kind == "Resolved" else None,
                    severity="Severity2" if step == 1 else None,
                    timestamp=ts - (len(resolution) - step + 1) * 3_600_000,
                )
        catalog.add_test_result(
            case_fqn,
            status,
            result=res.get("result"),
            values=res.get("testResultValues") or [],
            timestamp=ts,
            event=False,
        )
