"""Stored entity records of the simulator: compact JSON storage, references, `fields` projection."""

from __future__ import annotations

import json
import uuid
from typing import Any

from storage import fqn as fqnlib

# REST collection (path after /api/v1/) → entity type, for the collections the simulator serves.
COLLECTIONS: dict[str, str] = {
    "tables": "table",
    "dashboards": "dashboard",
    "charts": "chart",
    "dashboard/datamodels": "dashboardDataModel",
    "pipelines": "pipeline",
    "topics": "topic",
    "dataQuality/testCases": "testCase",
    "users": "user",
    "teams": "team",
}
TYPE_COLLECTION: dict[str, str] = {v: k for k, v in COLLECTIONS.items()}

# `fields=` whitelists (OM 1.13 OpenAPI, doc §1.4); users/teams are a subset of theirs.
ALLOWED_FIELDS: dict[str, frozenset[str]] = {
    "table": frozenset(
        [
            "tableConstraints",
            "tablePartition",
            "usageSummary",
            "owners",
            "customMetrics",
            "columns",
            "sampleData",
            "tags",
            "followers",
            "joins",
            "schemaDefinition",
            "dataModel",
            "extension",
            "testSuite",
            "domains",
            "dataProducts",
            "lifeCycle",
            "sourceHash",
        ]
    ),
    "dashboard": frozenset(
        [
            "owners",
            "charts",
            "followers",
            "tags",
            "usageSummary",
            "extension",
            "dataModels",
            "domains",
            "dataProducts",
            "sourceHash",
        ]
    ),
    "chart": frozenset(
        ["owners", "followers", "tags", "domains", "dataProducts", "sourceHash", "dashboards", "extension"]
    ),
    "pipeline": frozenset(
        [
            "owners",
            "tasks",
            "pipelineStatus",
            "followers",
            "tags",
            "extension",
            "scheduleInterval",
            "domains",
            "sourceHash",
        ]
    ),
    "topic": frozenset(["owners", "followers", "tags", "extension", "domains", "dataProducts", "sourceHash"]),
    "dashboardDataModel": frozenset(["owners", "tags", "followers", "domains", "sourceHash", "extension"]),
    "testCase": frozenset(
        [
            "owners",
            "reviewers",
            "entityStatus",
            "testSuite",
            "testDefinition",
            "testSuites",
            "incidentId",
            "domains",
            "tags",
            "followers",
            "dataProducts",
        ]
    ),
    "user": frozenset(["teams", "roles", "personas", "defaultPersona", "profile", "owns", "follows", "domains"]),
    "team": frozenset(
        [
            "owners",
            "profile",
            "users",
            "owns",
            "defaultRoles",
            "parents",
            "children",
            "policies",
            "userCount",
            "childrenCount",
            "domains",
        ]
    ),
}
# Whitelisted fields that are returned even when not asked for (the schemas require them).
ALWAYS_FIELDS: dict[str, frozenset[str]] = {
    "table": frozenset({"columns"}),
    "testCase": frozenset({"testDefinition", "testSuite"}),
}
GATED_FIELDS: dict[str, frozenset[str]] = {
    t: allowed - ALWAYS_FIELDS.get(t, frozenset()) for t, allowed in ALLOWED_FIELDS.items()
}
# Entity types that carry columns (their column `tags` are a relationship field too).
COLUMN_TYPES = frozenset({"table", "dashboardDataModel"})

# Canonical key order of a column, as OM's POJO serialises it (so JSON-encoded change values match).
COLUMN_KEYS = (
    "name",
    "displayName",
    "dataType",
    "arrayDataType",
    "dataLength",
    "precision",
    "scale",
    "dataTypeDisplay",
    "description",
    "fullyQualifiedName",
    "tags",
    "constraint",
    "ordinalPosition",
    "jsonSchema",
    "children",
)
_NAMESPACE = uuid.UUID("6f0d3c1e-5a9b-4c57-9a40-0d1b2c3d4e5f")


def stable_id(kind: str, key: str) -> str:
    """A deterministic UUID for an entity, so a reloaded catalog keeps its ids."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{key}"))


def dumps(obj: Any) -> str:
    """Compact JSON, as OM writes it (`JsonUtils.pojoToJson`)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class SimError(Exception):
    """An error the simulator answers with OM's `{"code", "message"}` body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_found(etype: str, key: str) -> SimError:
    """OM's 404 for a missing entity (`CatalogExceptionMessage.entityNotFound`)."""
    return SimError(404, f"{etype} instance for {key} not found")


class Record:
    """One stored entity: its current JSON (bytes), identity, and previous versions."""

    __slots__ = (
        "database",
        "deleted",
        "display_name",
        "etype",
        "fqn",
        "history",
        "id",
        "name",
        "needs",
        "raw",
        "schema",
        "service",
        "version",
        "view",
        "view_key",
    )

    def __init__(self, etype: str, doc: dict[str, Any], *, service: str | None = None) -> None:
        self.etype = etype
        self.id: str = doc["id"]
        self.name: str = doc["name"]
        self.fqn: str = doc["fullyQualifiedName"]
        self.service = service
        self.database: str | None = None
        self.schema: str | None = None
        self.history: list[bytes] | None = None
        self.raw = b""
        self.needs: frozenset[str] = frozenset()
        self.view_key: frozenset[str] | None = None
        self.view = b""
        self.deleted = False
        self.version = 0.1
        self.display_name: str | None = None
        self.store(doc)

    def store(self, doc: dict[str, Any]) -> None:
        """Replace the current JSON (no version bookkeeping: callers do that)."""
        self.raw = dumps(doc).encode()
        self.deleted = bool(doc.get("deleted", False))
        self.version = float(doc.get("version", 0.1))
        self.display_name = doc.get("displayName")
        gated = GATED_FIELDS.get(self.etype, frozenset())
        self.needs = frozenset(k for k in doc if k in gated)
        self.view_key = None
        self.view = b""

    def doc(self) -> dict[str, Any]:
        """A fresh, mutable copy of the current entity."""
        return json.loads(self.raw)

    def ref(self) -> dict[str, Any]:
        """The EntityReference of this entity."""
        out: dict[str, Any] = {"id": self.id, "type": self.etype, "name": self.name, "fullyQualifiedName": self.fqn}
        if self.display_name:
            out["displayName"] = self.display_name
        out["deleted"] = self.deleted
        return out

    def render(self, fields: frozenset[str]) -> bytes:
        """The entity as OM returns it for `fields=` (relationship fields only when asked for)."""
        if self.needs <= fields:
            return self.raw
        if self.view_key == fields:
            return self.view
        self.view = dumps(project(self.etype, self.doc(), fields)).encode()
        self.view_key = fields
        return self.view


def project(etype: str, doc: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    """Drop the relationship fields not asked for (and column tags unless `tags` was asked for)."""
    gated = GATED_FIELDS.get(etype, frozenset())
    out = {k: v for k, v in doc.items() if k not in gated or k in fields}
    if "tags" not in fields and etype in COLUMN_TYPES and isinstance(out.get("columns"), list):
        out["columns"] = [_strip_column_tags(c) for c in out["columns"]]
    return out


def _strip_column_tags(col: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in col.items() if k != "tags"}
    if out.get("children"):
        out["children"] = [_strip_column_tags(c) for c in out["children"]]
    return out


def parse_fields(etype: str, raw: str | None) -> frozenset[str]:
    """Parse and check a `fields=` value against the type's whitelist (400 on an unknown field)."""
    if not raw:
        return frozenset()
    allowed = ALLOWED_FIELDS.get(etype, frozenset())
    out = set()
    for part in raw.split(","):
        name = part.strip()
        if not name:
            continue
        if name not in allowed:
            raise SimError(400, f"Invalid field name {name}")
        out.add(name)
    return frozenset(out)


def data_type_display(data_type: str, length: int | None = None) -> str:
    """The `dataTypeDisplay` OM connectors usually emit: the lower-case type, with its length."""
    base = data_type.lower()
    return f"{base}({length})" if length is not None else base


def normalize_column(col: dict[str, Any], parent_fqn: str, position: int | None) -> dict[str, Any]:
    """A column in OM's key order with its FQN (children recursively), dropping unknown keys."""
    out: dict[str, Any] = {}
    name = col["name"]
    for key in COLUMN_KEYS:
        if key == "fullyQualifiedName":
            out[key] = fqnlib.column_fqn(parent_fqn, name)
        elif key == "tags":
            out[key] = [tag_label(t) if isinstance(t, str) else t for t in col.get("tags") or []]
        elif key == "ordinalPosition":
            pos = col.get("ordinalPosition", position)
            if pos is not None:
                out[key] = pos
        elif key == "children":
            kids = col.get("children")
            if kids:
                own = out["fullyQualifiedName"]
                out[key] = [normalize_column(c, own, c.get("ordinalPosition")) for c in kids]
        elif key == "dataTypeDisplay":
            if col.get(key) is not None:
                out[key] = col[key]
            elif col.get("dataType"):
                out[key] = data_type_display(col["dataType"], col.get("dataLength"))
        elif col.get(key) is not None:
            out[key] = col[key]
    return out


def tag_label(tag_fqn: str) -> dict[str, Any]:
    """A manual, confirmed classification TagLabel (glossary terms are written `Glossary:<fqn>`)."""
    source = "Classification"
    if tag_fqn.startswith("Glossary:"):
        source, tag_fqn = "Glossary", tag_fqn.removeprefix("Glossary:")
    return {"tagFQN": tag_fqn, "source": source, "labelType": "Manual", "state": "Confirmed"}


def usage_summary(daily: int, weekly: int, monthly: int, percentile: float | None, date: str) -> dict[str, Any]:
    """A UsageDetails object (`usageSummary`)."""

    def stats(count: int) -> dict[str, Any]:
        out: dict[str, Any] = {"count": count}
        if percentile is not None:
            out["percentileRank"] = percentile
        return out

    return {"dailyStats": stats(daily), "weeklyStats": stats(weekly), "monthlyStats": stats(monthly), "date": date}


def find_column(columns: list[dict[str, Any]], name: str) -> int:
    """Index of the top-level column `name` (404 when absent)."""
    for i, col in enumerate(columns):
        if col.get("name") == name:
            return i
    raise SimError(404, f"column {name} not found")


def column_fqns(columns: list[dict[str, Any]]) -> set[str]:
    """Every column FQN of an entity, nested children included."""
    out: set[str] = set()
    for col in columns:
        if col.get("fullyQualifiedName"):
            out.add(col["fullyQualifiedName"])
        if col.get("children"):
            out |= column_fqns(col["children"])
    return out
