"""Stored entity records of the simulator: compact JSON storage, references, and cached per-version views."""

from __future__ import annotations

import json
import uuid
from typing import Any

from storage.openmetadata import fqn as fqnlib

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
        "raw",
        "schema",
        "service",
        "version",
        "views",
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
        self.views: dict[tuple[Any, frozenset[str]], bytes] = {}
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
        self.views = {}

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

    def render(self, view: Any, fields: frozenset[str]) -> bytes:
        """The entity as `view` (a version's `VersionView`) returns it for `fields=` (cached per view and fields)."""
        key = (view.key, fields)
        out = self.views.get(key)
        if out is None:
            if len(self.views) > 16:
                self.views.clear()
            out = self.views[key] = dumps(view.render(self.etype, self.doc(), fields)).encode()
        return out


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
