"""Entity builders: create services, users, teams, tables, dashboards, charts, data models, pipelines, topics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from simulator.records import Record, SimError, normalize_column, stable_id, tag_label
from simulator.store import CatalogStore
from storage.openmetadata import fqn as fqnlib

SERVICE_KINDS = {
    "table": "databaseService",
    "dashboard": "dashboardService",
    "chart": "dashboardService",
    "dashboardDataModel": "dashboardService",
    "pipeline": "pipelineService",
    "topic": "messagingService",
}


def _tags(tags: Iterable[str | dict[str, Any]]) -> list[dict[str, Any]]:
    return [tag_label(t) if isinstance(t, str) else dict(t) for t in tags]


class EntitiesMixin(CatalogStore):
    """Seed-time constructors; each returns the stored Record (version 0.1, no change event)."""

    def add_service(self, name: str, kind: str, service_type: str) -> dict[str, Any]:
        """Register a service (`kind` is databaseService, dashboardService, pipelineService, messagingService)."""
        ref = {
            "id": stable_id(kind, name),
            "type": kind,
            "name": name,
            "fullyQualifiedName": fqnlib.quote_name(name),
            "deleted": False,
        }
        self.services[name] = {"ref": ref, "kind": kind, "serviceType": service_type}
        return ref

    def _asset_doc(
        self, etype: str, service: str, name: str, fqn: str, *, display_name: str | None, description: str | None
    ) -> dict[str, Any]:
        """A new data asset's base JSON with its service ref (404 when the service is unknown)."""
        svc = self.services.get(service)
        if svc is None or svc["kind"] != SERVICE_KINDS[etype]:
            raise SimError(404, f"{SERVICE_KINDS[etype]} instance for {service} not found")
        doc = self._new_doc(etype, name, fqn, display_name=display_name, description=description)
        doc["service"] = dict(svc["ref"])
        doc["serviceType"] = svc["serviceType"]
        return doc

    def _new_doc(
        self, etype: str, name: str, fqn: str, *, display_name: str | None, description: str | None
    ) -> dict[str, Any]:
        eid = stable_id(etype, fqn)
        doc: dict[str, Any] = {"id": eid, "name": name}
        if display_name:
            doc["displayName"] = display_name
        doc["fullyQualifiedName"] = fqn
        if description is not None:
            doc["description"] = description
        doc.update(version=0.1, updatedAt=self.seed_time(), updatedBy="ingestion-bot", href=self.href(etype, eid))
        return doc

    def _finish(
        self,
        doc: dict[str, Any],
        owners: Iterable[str],
        tags: Iterable[str | dict[str, Any]],
        extra: dict[str, Any] | None,
    ) -> dict[str, Any]:
        doc["owners"] = self.owner_refs(owners)
        doc["tags"] = _tags(tags)
        doc["followers"] = []
        doc["domains"] = []
        for key, value in (extra or {}).items():
            if value is not None:
                doc[key] = value
        doc["deleted"] = False
        return doc

    # --- people -----------------------------------------------------------------------------------------
    def add_team(
        self,
        name: str,
        *,
        display_name: str | None = None,
        team_type: str = "Group",
        email: str | None = None,
        parents: Sequence[str] = (),
    ) -> Record:
        """A team (owner candidate)."""
        doc = self._new_doc("team", name, fqnlib.quote_name(name), display_name=display_name, description=None)
        doc["teamType"] = team_type
        if email:
            doc["email"] = email
        doc["parents"] = [self.get("team", p).ref() for p in parents]
        doc["users"] = []
        doc["deleted"] = False
        return self.insert("team", doc)

    def add_user(
        self,
        name: str,
        *,
        display_name: str | None = None,
        email: str | None = None,
        teams: Sequence[str] = (),
        is_admin: bool = False,
        is_bot: bool = False,
    ) -> Record:
        """A user (owner candidate); also listed under its teams' `users`."""
        doc = self._new_doc("user", name, fqnlib.quote_name(name), display_name=display_name, description=None)
        doc["email"] = email or f"{name}@example.com"
        doc["isAdmin"] = is_admin
        doc["isBot"] = is_bot
        team_recs = [self.get("team", t) for t in teams]
        doc["teams"] = [t.ref() for t in team_recs]
        doc["deleted"] = False
        rec = self.insert("user", doc)
        for team in team_recs:
            self.seed_patch(team, lambda d: d["users"].append(rec.ref()))
        return rec

    # --- data assets ------------------------------------------------------------------------------------
    def add_table(
        self,
        service: str,
        database: str,
        schema: str,
        name: str,
        *,
        columns: Sequence[dict[str, Any]],
        description: str | None = None,
        display_name: str | None = None,
        table_type: str = "Regular",
        constraints: list[dict[str, Any]] | None = None,
        owners: Iterable[str] = (),
        tags: Iterable[str | dict[str, Any]] = (),
        usage: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Record:
        """A table `service.database.schema.name` with its columns (FQNs and positions filled in)."""
        fqn = fqnlib.build(service, database, schema, name)
        db_fqn = fqnlib.build(service, database)
        schema_fqn = fqnlib.build(service, database, schema)
        doc = self._asset_doc("table", service, name, fqn, display_name=display_name, description=description)
        doc["tableType"] = table_type
        doc["columns"] = [normalize_column(c, fqn, i) for i, c in enumerate(columns, start=1)]
        if constraints:
            doc["tableConstraints"] = constraints
        doc["databaseSchema"] = {
            "id": stable_id("databaseSchema", schema_fqn),
            "type": "databaseSchema",
            "name": schema,
            "fullyQualifiedName": schema_fqn,
            "deleted": False,
        }
        doc["database"] = {
            "id": stable_id("database", db_fqn),
            "type": "database",
            "name": database,
            "fullyQualifiedName": db_fqn,
            "deleted": False,
        }
        if usage:
            doc["usageSummary"] = usage
        self._finish(doc, owners, tags, extra)
        rec = self.insert("table", doc, service=service)
        rec.database, rec.schema = db_fqn, schema_fqn
        return rec

    def add_data_model(
        self,
        service: str,
        name: str,
        *,
        data_model_type: str,
        columns: Sequence[dict[str, Any]],
        sql: str | None = None,
        description: str | None = None,
        display_name: str | None = None,
        owners: Iterable[str] = (),
        tags: Iterable[str | dict[str, Any]] = (),
        extra: dict[str, Any] | None = None,
    ) -> Record:
        """A dashboard data model `service.model.name`."""
        fqn = f"{fqnlib.quote_name(service)}.model.{fqnlib.quote_name(name)}"
        doc = self._asset_doc(
            "dashboardDataModel", service, name, fqn, display_name=display_name, description=description
        )
        doc["dataModelType"] = data_model_type
        if sql is not None:
            doc["sql"] = sql
        doc["columns"] = [normalize_column(c, fqn, i) for i, c in enumerate(columns, start=1)]
        self._finish(doc, owners, tags, extra)
        return self.insert("dashboardDataModel", doc, service=service)

    def add_chart(
        self,
        service: str,
        name: str,
        *,
        chart_type: str = "Other",
        description: str | None = None,
        display_name: str | None = None,
        source_url: str | None = None,
        owners: Iterable[str] = (),
        tags: Iterable[str | dict[str, Any]] = (),
    ) -> Record:
        """A chart `service.name` (its `dashboards` fill in as dashboards are added)."""
        fqn = fqnlib.build(service, name)
        doc = self._asset_doc("chart", service, name, fqn, display_name=display_name, description=description)
        doc["chartType"] = chart_type
        doc["dashboards"] = []
        self._finish(doc, owners, tags, {"sourceUrl": source_url})
        return self.insert("chart", doc, service=service)

    def add_dashboard(
        self,
        service: str,
        name: str,
        *,
        charts: Sequence[str] = (),
        data_models: Sequence[str] = (),
        description: str | None = None,
        display_name: str | None = None,
        dashboard_type: str = "Dashboard",
        source_url: str | None = None,
        project: str | None = None,
        owners: Iterable[str] = (),
        tags: Iterable[str | dict[str, Any]] = (),
        usage: dict[str, Any] | None = None,
    ) -> Record:
        """A dashboard `service.name` over existing charts and data models (given by FQN)."""
        fqn = fqnlib.build(service, name)
        chart_recs = [self.get("chart", c, include="all") for c in charts]
        model_recs = [self.get("dashboardDataModel", m, include="all") for m in data_models]
        doc = self._asset_doc("dashboard", service, name, fqn, display_name=display_name, description=description)
        doc["dashboardType"] = dashboard_type
        doc["charts"] = [c.ref() for c in chart_recs]
        doc["dataModels"] = [m.ref() for m in model_recs]
        if usage:
            doc["usageSummary"] = usage
        self._finish(doc, owners, tags, {"sourceUrl": source_url, "project": project})
        rec = self.insert("dashboard", doc, service=service)
        for chart in chart_recs:
            self.seed_patch(chart, lambda d: d["dashboards"].append(rec.ref()))
        return rec

    def add_pipeline(
        self,
        service: str,
        name: str,
        *,
        tasks: Sequence[dict[str, Any]] = (),
        description: str | None = None,
        display_name: str | None = None,
        source_url: str | None = None,
        schedule_interval: str | None = None,
        status: dict[str, Any] | None = None,
        owners: Iterable[str] = (),
        tags: Iterable[str | dict[str, Any]] = (),
    ) -> Record:
        """A pipeline `service.name` with its tasks (task FQNs filled in) and optional last run."""
        fqn = fqnlib.build(service, name)
        doc = self._asset_doc("pipeline", service, name, fqn, display_name=display_name, description=description)
        doc["tasks"] = [_task(t, fqn) for t in tasks]
        if status:
            doc["pipelineStatus"] = status
        self._finish(doc, owners, tags, {"sourceUrl": source_url, "scheduleInterval": schedule_interval})
        return self.insert("pipeline", doc, service=service)

    def add_topic(
        self,
        service: str,
        name: str,
        *,
        partitions: int = 1,
        schema_type: str | None = None,
        schema_text: str | None = None,
        fields: Sequence[dict[str, Any]] = (),
        description: str | None = None,
        display_name: str | None = None,
        owners: Iterable[str] = (),
        tags: Iterable[str | dict[str, Any]] = (),
        extra: dict[str, Any] | None = None,
    ) -> Record:
        """A topic `service.name` with its message schema (field FQNs filled in)."""
        fqn = fqnlib.build(service, name)
        doc = self._asset_doc("topic", service, name, fqn, display_name=display_name, description=description)
        doc["partitions"] = partitions
        if schema_type or schema_text or fields:
            message: dict[str, Any] = {}
            if schema_text is not None:
                message["schemaText"] = schema_text
            message["schemaType"] = schema_type or "None"
            message["schemaFields"] = [normalize_column(f, fqn, None) for f in fields]
            doc["messageSchema"] = message
        self._finish(doc, owners, tags, extra)
        return self.insert("topic", doc, service=service)


def _task(task: dict[str, Any], pipeline_fqn: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": task["name"]}
    for key in ("displayName",):
        if task.get(key):
            out[key] = task[key]
    out["fullyQualifiedName"] = fqnlib.column_fqn(pipeline_fqn, task["name"])
    for key in ("description", "sourceUrl"):
        if task.get(key) is not None:
            out[key] = task[key]
    out["downstreamTasks"] = list(task.get("downstreamTasks") or [])
    for key in ("taskType", "taskSQL"):
        if task.get(key):
            out[key] = task[key]
    return out
