"""The project's compact catalog format (demo_catalog.json) and its loader.

A compact catalog is one JSON object; every key is optional. Entities are named by FQN, people by name,
and ids, FQNs of columns, versions, refs and timestamps are filled in by the simulator.

```
{
  "services":  {"<name>": {"kind": "database|dashboard|pipeline|messaging", "serviceType": "Snowflake"}},
  "teams":     [{"name", "displayName"?, "email"?, "teamType"?}],
  "users":     [{"name", "displayName"?, "email"?, "teams"?: [team names]}],
  "tables":    [{"fqn": "service.database.schema.table", "description"?, "displayName"?, "tableType"?,
                 "owners"?: [user/team names], "tags"?: ["Tier.Tier1", "PII.Sensitive", ...],
                 "usage"?: {"daily", "weekly", "monthly", "percentile"?, "date"?},
                 "constraints"?: [OM tableConstraint], "columns": [COLUMN]}],
  "dataModels":[{"fqn": "service.model.name", "dataModelType", "sql"?, "columns": [COLUMN], ...}],
  "charts":    [{"fqn": "service.name", "chartType"?, "displayName"?, "description"?, "owners"?, "tags"?}],
  "dashboards":[{"fqn": "service.name", "displayName"?, "charts"?: [chart FQNs], "dataModels"?: [model FQNs],
                 "owners"?, "tags"?, "usage"?, "description"?}],
  "pipelines": [{"fqn": "service.name", "displayName"?, "schedule"?: "0 2 * * *", "owners"?, "tags"?,
                 "tasks": [{"name", "downstream"?: [task names], "taskType"?}],
                 "status"?: {"executionStatus": "Successful", "tasks"?: {"<task>": "Successful"}}}],
  "topics":    [{"fqn": "service.name", "partitions"?, "schemaType"?, "schemaText"?, "fields"?: [COLUMN], ...}],
  "lineage":   [{"from": FQN, "to": FQN, "fromType"?, "toType"?, "pipeline"?: FQN, "sql"?: str,
                 "columns"?: {"<to column>": "<from column>" | ["<from column>", ...]}}],
  "tests":     [{"entity": FQN, "column"?: name, "name", "definition": "columnValuesToBeInSet",
                 "parameters"?: {"allowedValues": [...]}, "description"?, "owners"?,
                 "results"?: ["Success" | {"status", "result"?, "values"?: {"name": "value"}}, ...],
                 "incident"?: [{"status": "Ack|Assigned|Resolved", "assignee"?, "severity"?, "reason"?}]}]
}
COLUMN = {"name", "dataType", "dataLength"?, "description"?, "constraint"?, "tags"?, "children"?: [COLUMN]}
```
`results` are newest first and get daily timestamps counting back from load time (a Failed one opens a
`New` incident); `incident` statuses are then applied in order. Entity types of lineage ends are found
by FQN unless `fromType`/`toType` say otherwise.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from simulator.records import SimError, usage_summary
from storage.openmetadata import fqn as fqnlib

if TYPE_CHECKING:
    from simulator.catalog import Catalog

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
SERVICE_KINDS = {
    "database": "databaseService",
    "dashboard": "dashboardService",
    "pipeline": "pipelineService",
    "messaging": "messagingService",
}


def load_compact(catalog: Catalog, data: Mapping[str, Any]) -> None:
    """Fill `catalog` from a compact-format mapping."""
    with catalog.lock:
        today = clock_date(catalog)
        for name, svc in (data.get("services") or {}).items():
            kind = SERVICE_KINDS.get(svc.get("kind", ""), svc.get("kind", ""))
            catalog.add_service(name, kind, svc["serviceType"])
        for team in data.get("teams") or []:
            catalog.add_team(
                team["name"],
                display_name=team.get("displayName"),
                team_type=team.get("teamType", "Group"),
                email=team.get("email"),
                parents=team.get("parents") or (),
            )
        for user in data.get("users") or []:
            catalog.add_user(
                user["name"],
                display_name=user.get("displayName"),
                email=user.get("email"),
                teams=user.get("teams") or (),
                is_admin=bool(user.get("isAdmin")),
            )
        for table in data.get("tables") or []:
            _table(catalog, table, today)
        for model in data.get("dataModels") or []:
            service, _model, name = _parts(model["fqn"], 3)
            catalog.add_data_model(
                service,
                name,
                data_model_type=model["dataModelType"],
                columns=model["columns"],
                sql=model.get("sql"),
                description=model.get("description"),
                display_name=model.get("displayName"),
                owners=model.get("owners") or (),
                tags=model.get("tags") or (),
            )
        for chart in data.get("charts") or []:
            service, name = _parts(chart["fqn"], 2)
            catalog.add_chart(
                service,
                name,
                chart_type=chart.get("chartType", "Other"),
                description=chart.get("description"),
                display_name=chart.get("displayName"),
                source_url=chart.get("sourceUrl"),
                owners=chart.get("owners") or (),
                tags=chart.get("tags") or (),
            )
        for dash in data.get("dashboards") or []:
            _dashboard(catalog, dash, today)
        for pipe in data.get("pipelines") or []:
            _pipeline(catalog, pipe)
        for topic in data.get("topics") or []:
            _topic(catalog, topic)
        for edge in data.get("lineage") or []:
            add_edge_spec(catalog, edge)
        now = catalog.tick()
        for test in data.get("tests") or []:
            _test(catalog, test, now)


def clock_date(catalog: Catalog) -> str:
    """The catalog clock's UTC date (`usageSummary.date`)."""
    return dt.datetime.fromtimestamp(catalog.clock() / 1000, tz=dt.UTC).date().isoformat()


def add_edge_spec(catalog: Catalog, edge: Mapping[str, Any]) -> dict[str, Any]:
    """Add one compact lineage edge (`from`, `to`, `fromType`?, `toType`?, `columns`?, `pipeline`?, `sql`?)."""
    return catalog.add_edge(
        edge["from"],
        edge["to"],
        from_type=edge.get("fromType"),
        to_type=edge.get("toType"),
        columns=edge.get("columns"),
        pipeline=edge.get("pipeline"),
        sql_query=edge.get("sql") or edge.get("sqlQuery"),
        source=edge.get("source", "Manual"),
    )


def _parts(fqn: str, count: int) -> list[str]:
    parts = fqnlib.split(fqn)
    if len(parts) != count:
        raise SimError(400, f"expected an FQN of {count} parts: {fqn}")
    return parts


def _usage(spec: Mapping[str, Any] | None, today: str) -> dict[str, Any] | None:
    if not spec:
        return None
    return usage_summary(
        int(spec.get("daily", 0)),
        int(spec.get("weekly", 0)),
        int(spec.get("monthly", 0)),
        spec.get("percentile"),
        spec.get("date", today),
    )


def table_args(table: Mapping[str, Any], today: str) -> tuple[list[str], dict[str, Any]]:
    """The `add_table` arguments for a compact table spec: `[service, database, schema, name]`, kwargs."""
    parts = _parts(table["fqn"], 4)
    kwargs = {
        "columns": table["columns"],
        "description": table.get("description"),
        "display_name": table.get("displayName"),
        "table_type": table.get("tableType", "Regular"),
        "constraints": table.get("constraints"),
        "owners": table.get("owners") or (),
        "tags": table.get("tags") or (),
        "usage": _usage(table.get("usage"), today),
        "extra": {"sourceUrl": table.get("sourceUrl"), "schemaDefinition": table.get("schemaDefinition")},
    }
    return parts, kwargs


def _table(catalog: Catalog, table: Mapping[str, Any], today: str) -> None:
    parts, kwargs = table_args(table, today)
    catalog.add_table(*parts, **kwargs)


def _dashboard(catalog: Catalog, dash: Mapping[str, Any], today: str) -> None:
    service, name = _parts(dash["fqn"], 2)
    catalog.add_dashboard(
        service,
        name,
        charts=dash.get("charts") or (),
        data_models=dash.get("dataModels") or (),
        description=dash.get("description"),
        display_name=dash.get("displayName"),
        dashboard_type=dash.get("dashboardType", "Dashboard"),
        source_url=dash.get("sourceUrl"),
        project=dash.get("project"),
        owners=dash.get("owners") or (),
        tags=dash.get("tags") or (),
        usage=_usage(dash.get("usage"), today),
    )


def _pipeline(catalog: Catalog, pipe: Mapping[str, Any]) -> None:
    service, name = _parts(pipe["fqn"], 2)
    tasks = [
        {
            "name": t["name"],
            "displayName": t.get("displayName"),
            "description": t.get("description"),
            "downstreamTasks": t.get("downstream") or t.get("downstreamTasks") or [],
            "taskType": t.get("taskType"),
            "taskSQL": t.get("sql"),
        }
        for t in pipe.get("tasks") or []
    ]
    catalog.add_pipeline(
        service,
        name,
        tasks=tasks,
        description=pipe.get("description"),
        display_name=pipe.get("displayName"),
        source_url=pipe.get("sourceUrl"),
        schedule_interval=pipe.get("schedule"),
        owners=pipe.get("owners") or (),
        tags=pipe.get("tags") or (),
    )
    status = pipe.get("status")
    if status:
        ts = catalog.tick() - HOUR_MS
        catalog.set_pipeline_status(
            pipe["fqn"], status["executionStatus"], task_status=status.get("tasks") or {}, timestamp=ts, event=False
        )


def _topic(catalog: Catalog, topic: Mapping[str, Any]) -> None:
    service, name = _parts(topic["fqn"], 2)
    extra = {k: topic.get(k) for k in ("retentionSize", "replicationFactor", "maximumMessageSize", "cleanupPolicies")}
    catalog.add_topic(
        service,
        name,
        partitions=topic.get("partitions", 1),
        schema_type=topic.get("schemaType"),
        schema_text=topic.get("schemaText"),
        fields=topic.get("fields") or (),
        description=topic.get("description"),
        display_name=topic.get("displayName"),
        owners=topic.get("owners") or (),
        tags=topic.get("tags") or (),
        extra=extra,
    )


def _test(catalog: Catalog, test: Mapping[str, Any], now: int) -> None:
    rec = catalog.add_test_case(
        test["entity"],
        test["name"],
        definition=test["definition"],
        column=test.get("column"),
        parameters=test.get("parameters"),
        description=test.get("description"),
        owners=test.get("owners") or (),
        etype=test.get("entityType", "table"),
    )
    results = list(test.get("results") or [])
    for i in range(len(results) - 1, -1, -1):
        spec = results[i]
        spec = {"status": spec} if isinstance(spec, str) else spec
        values = spec.get("values") or {}
        catalog.add_test_result(
            rec.fqn,
            spec["status"],
            result=spec.get("result") or _default_result(spec["status"]),
            values=[{"name": k, "value": str(v)} for k, v in values.items()],
            timestamp=now - i * DAY_MS,
            event=False,
        )
    for status in test.get("incident") or []:
        catalog.add_incident_status(
            rec.fqn,
            status["status"],
            assignee=status.get("assignee"),
            severity=status.get("severity"),
            reason=status.get("reason"),
            comment=status.get("comment"),
        )


def _default_result(status: str) -> str:
    return {"Success": "All rows passed", "Failed": "Found rows failing the test", "Aborted": "Run aborted"}.get(
        status, status
    )
