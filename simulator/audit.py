"""The audit log (`GET /api/v1/audit/logs`, OpenMetadata 1.12+): recorded ChangeEvents, newest first, keyset paged.

Modelled on `AuditLogResource` / `AuditLogRepository` / `AuditLogEntry` (openmetadata-service `resources/audit/`,
`audit/`): each entry is `{id, changeEventId, eventTs, eventType, userName, actorType, serviceName, entityType,
entityId, entityFQN, createdAt, changeEvent, summary}`, ordered by `(eventTs, id)` descending. `limit` is 1..200
(default 25); `after`/`before` carry `encodeCursor(json {eventTs, id})`, which `ResultList` encodes once more, and an
unreadable cursor is ignored (`AuditLogCursor.fromEncoded` returns null). Only entity events are written
(`SUPPORTED_EVENT_TYPES`), plus the lineage events of 2.0 (`AuditLogRepositoryTest.writePersistsLineageChangeEvents`).
No JSON Schema of the entry ships with OpenMetadata, so the tests leave its answer unvalidated.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from simulator.paging import encode_cursor
from simulator.records import SimError
from storage.openmetadata import fqn as fqnlib

AUDIT_LOG_SINCE = (1, 12)  # PR #23733 "Audit logs" (migrations 1.10.1 / 1.12.0), shipped with 1.12
ENTITY_EVENT_TYPES = frozenset(
    {"entityCreated", "entityUpdated", "entityFieldsChanged", "entitySoftDeleted", "entityDeleted", "entityRestored"}
)
LINEAGE_EVENT_TYPES = frozenset({"entityLineageAdded", "entityLineageUpdated", "entityLineageDeleted"})
AGENT_INDICATORS = ("agent", "documentation", "classification", "automator")
MAX_LIMIT = 200
FILTERS = {
    "userName": "userName",
    "actorType": "actorType",
    "serviceName": "serviceName",
    "entityType": "entityType",
    "entityFQN": "entityFQN",
    "eventType": "eventType",
}


def actor_type(user: str | None) -> str:
    """`AuditLogRepository.determineActorType`: AGENT, BOT or USER from the user name."""
    name = (user or "").lower()
    if any(word in name for word in AGENT_INDICATORS):
        return "AGENT"
    if name.endswith("-bot") or name.endswith("_bot") or name == "bot":
        return "BOT"
    return "USER"


def _service_name(entity_fqn: str | None) -> str | None:
    if not entity_fqn:
        return None
    try:
        return fqnlib.split(entity_fqn)[0]
    except fqnlib.FQNError:
        return entity_fqn.split(".", 1)[0]


def _summary(event: Mapping[str, Any]) -> str:
    """`AuditLogRepository.computeSummary`, without the value formatting of field changes."""
    kind, etype, name = event["eventType"], event.get("entityType"), event.get("entityFullyQualifiedName")
    fixed = {
        "entityCreated": "Created",
        "entityDeleted": "Deleted",
        "entitySoftDeleted": "Soft deleted",
        "entityRestored": "Restored",
    }
    if kind in fixed:
        return f"{fixed[kind]} {etype}: {name}"
    if kind in ("entityUpdated", "entityFieldsChanged"):
        change = event.get("changeDescription") or {}
        parts = [
            f"{verb} {str(f.get('name', 'field')).rsplit('.', 1)[-1]}"
            for verb, key in (("Added", "fieldsAdded"), ("Updated", "fieldsUpdated"), ("Deleted", "fieldsDeleted"))
            for f in change.get(key) or []
        ]
        return ", ".join(parts) or "Entity updated"
    return str(kind)


class AuditLog:
    """Audit entries in insertion order (ids ascend with it)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def record(self, event: Mapping[str, Any], created_at: int) -> None:
        """Write one ChangeEvent (as `AuditLogRepository.write` does for the types it supports)."""
        kind = event.get("eventType")
        if kind not in ENTITY_EVENT_TYPES and kind not in LINEAGE_EVENT_TYPES:
            return
        entity_fqn = event.get("entityFullyQualifiedName")
        entry: dict[str, Any] = {
            "id": len(self.entries) + 1,
            "changeEventId": event["id"],
            "eventTs": event["timestamp"],
            "eventType": kind,
            "userName": event.get("userName"),
            "actorType": actor_type(event.get("userName")),
            "serviceName": _service_name(entity_fqn),
            "entityType": event.get("entityType"),
            "entityId": event.get("entityId"),
            "entityFQN": entity_fqn,
            "createdAt": created_at,
            "changeEvent": dict(event),
            "summary": _summary(event),
        }
        self.entries.append({k: v for k, v in entry.items() if v is not None})

    def listing(self, q: Mapping[str, str]) -> dict[str, Any]:
        """`GET /v1/audit/logs` with its filters, `limit`, and `after`/`before` keyset cursors."""
        limit = _limit(q.get("limit"))
        after, before = q.get("after"), q.get("before")
        if after and before:
            raise SimError(400, "Only one of before or after query parameter allowed")
        rows = [e for e in self.entries if _passes(e, q)]
        rows.sort(key=lambda e: (e["eventTs"], e["id"]), reverse=True)
        total = len(rows)
        before_key, after_key = _decode(before), _decode(after)
        if before_key is not None:
            newer = [e for e in rows if (e["eventTs"], e["id"]) > before_key]
            has_more = len(newer) > limit
            chunk = newer[-limit:]
        else:
            older = [e for e in rows if after_key is None or (e["eventTs"], e["id"]) < after_key]
            has_more = len(older) > limit
            chunk = older[:limit]
        paging: dict[str, Any] = {}
        if chunk and (after_key is not None or before_key is not None):
            paging["before"] = _encode(chunk[0])
        if chunk and (has_more or before_key is not None):
            paging["after"] = _encode(chunk[-1])
        paging["total"] = total
        return {"data": chunk, "paging": paging}


def _limit(raw: str | None) -> int:
    if raw in (None, ""):
        return 25
    try:
        value = int(raw)
    except ValueError as exc:
        raise SimError(400, "query param limit must be a number") from exc
    if value < 1:
        raise SimError(400, "query param limit must be greater than or equal to 1")
    if value > MAX_LIMIT:
        raise SimError(400, f"query param limit must be less than or equal to {MAX_LIMIT}")
    return value


def _passes(entry: Mapping[str, Any], q: Mapping[str, str]) -> bool:
    for param, key in FILTERS.items():
        wanted = q.get(param)
        if wanted and entry.get(key) != wanted:
            return False
    start, end = _ts(q.get("startTs"), "startTs"), _ts(q.get("endTs"), "endTs")
    return (start is None or entry["eventTs"] >= start) and (end is None or entry["eventTs"] <= end)


def _ts(raw: str | None, name: str) -> int | None:
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise SimError(400, f"query param {name} must be a number") from exc


def _encode(entry: Mapping[str, Any]) -> str:
    inner = encode_cursor(json.dumps({"eventTs": entry["eventTs"], "id": entry["id"]}, separators=(",", ":")))
    return encode_cursor(inner)  # `ResultList` encodes the repository's cursor a second time


def _decode(cursor: str | None) -> tuple[int, int] | None:
    """Up to three base64 layers around `{"eventTs", "id"}`; None (ignored) when unreadable, as on the server."""
    if not cursor:
        return None
    text = cursor
    for _ in range(3):
        if text.strip().startswith("{"):
            try:
                data = json.loads(text)
                return int(data["eventTs"]), int(data["id"])
            except (ValueError, KeyError, TypeError):
                return None
        try:
            text = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
        except (ValueError, binascii.Error):
            return None
    return None
