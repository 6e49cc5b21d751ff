"""The simulator's in-memory store: records, indexes, name-ordered paging, versions and change events."""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from simulator.audit import AuditLog
from simulator.events import events_feed
from simulator.fields import VersionView, view_for
from simulator.records import TYPE_COLLECTION, Record, SimError, dumps, not_found
from simulator.webhooks import EventSubscriptions
from storage.openmetadata.versions import Profile, profile_for

DEFAULT_VERSION = "1.13.6"

INCLUDE_VALUES = ("non-deleted", "deleted", "all")


def wall_clock_ms() -> int:
    """The default clock: wall time in epoch milliseconds."""
    return int(time.time() * 1000)


def encode_cursor(rec: Record) -> str:
    """OM's opaque cursor: URL-safe base64 of `{"name", "id"}` of a row."""
    return base64.urlsafe_b64encode(dumps({"name": rec.name, "id": rec.id}).encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (name, id) inside a cursor (400 when it is not one of ours)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return str(data["name"]), str(data["id"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SimError(400, f"Invalid cursor {cursor}") from exc


def included(rec: Record, include: str) -> bool:
    """Whether `include=` lets a record through."""
    if include == "all":
        return True
    return rec.deleted if include == "deleted" else not rec.deleted


class CatalogStore:
    """Records by id and FQN, list caches, the event log and the monotonic clock."""

    def __init__(
        self,
        *,
        clock: Callable[[], int] | None = None,
        base_url: str = "http://localhost:8585",
        lineage_follows_columns: bool = False,
    ) -> None:
        self.clock: Callable[[], int] = clock or wall_clock_ms
        self.base_url = base_url.rstrip("/")
        self.lineage_follows_columns = lineage_follows_columns
        self.lock = threading.RLock()
        self.records: dict[str, Record] = {}
        self.by_fqn: dict[tuple[str, str], Record] = {}
        self.by_type: dict[str, list[Record]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.containers: dict[tuple[str, str], Record] = {}  # databases, schemas, services made on demand
        self.events: list[tuple[int, str, str, bytes]] = []
        self._event_ts: list[int] = []
        self._last_ts = 0
        self._generation = 0
        self._list_cache: dict[tuple[Any, ...], tuple[int, list[tuple[str, str]], list[Record]]] = {}
        # lineage: (from id, to id) → lineageDetails JSON (None when empty), plus adjacency sets
        self.edges: dict[tuple[str, str], str | None] = {}
        self.edge_meta: dict[tuple[str, str], dict[str, Any]] = {}  # createdAt/By, updatedAt/By (2.0 events)
        self.lineage_changes: list[dict[str, Any]] = []  # the 2.0 lineage ChangeEvents (not in /v1/events)
        self.upstream: dict[str, set[str]] = {}
        self.downstream: dict[str, set[str]] = {}
        # data quality and pipeline runs (time series, not versioned)
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.incidents: list[dict[str, Any]] = []
        self.open_incidents: dict[str, str] = {}
        self.last_incident: dict[str, dict[str, Any]] = {}  # test case FQN → its newest status row
        self.pipeline_runs: dict[str, list[dict[str, Any]]] = {}
        # event subscriptions: every recorded event is pushed to their webhooks (in the background)
        self.subscriptions = EventSubscriptions(self.tick)
        # test case id → (target entity FQN, column, entityLink, executable suite id); id → latest status
        self.case_targets: dict[str, tuple[str, str | None, str, str]] = {}
        self.case_status: dict[str, str] = {}
        # the audit log (1.12+) and the version whose shapes and rules this catalog follows (set by the app)
        self.audit = AuditLog()
        self.profile: Profile = profile_for(DEFAULT_VERSION)
        self.view: VersionView = view_for(self.profile)

    def set_profile(self, profile: Profile) -> None:
        """Follow `profile` from now on (what the app serving this catalog reports as its version)."""
        with self.lock:
            self.profile = profile
            self.view = view_for(profile)
            self.profile_changed()

    def profile_changed(self) -> None:
        """Hook: re-derive what depends on the version (test cases' `incidentId`)."""

    # --- time -------------------------------------------------------------------------------------------
    def tick(self) -> int:
        """Now in ms, strictly greater than any timestamp handed out before."""
        now = int(self.clock())
        if now <= self._last_ts:
            now = self._last_ts + 1
        self._last_ts = now
        return now

    def seed_time(self) -> int:
        """The clock's now for seeded entities (equal stamps allowed, so seeding never runs ahead of the clock)."""
        now = int(self.clock())
        self._last_ts = max(self._last_ts, now)
        return now

    # --- records ----------------------------------------------------------------------------------------
    def href(self, etype: str, entity_id: str) -> str:
        """The `href` OM puts on an entity."""
        return f"{self.base_url}/api/v1/{TYPE_COLLECTION.get(etype, etype + 's')}/{entity_id}"

    def insert(self, etype: str, doc: dict[str, Any], *, service: str | None = None) -> Record:
        """Store a new entity (409 if the FQN is taken)."""
        key = (etype, doc["fullyQualifiedName"])
        if key in self.by_fqn:
            raise SimError(409, "Entity already exists")
        rec = Record(etype, doc, service=service)
        self.records[rec.id] = rec
        self.by_fqn[key] = rec
        self.by_type.setdefault(etype, []).append(rec)
        self._generation += 1
        return rec

    def find(self, etype: str, fqn: str) -> Record | None:
        """A record by type and FQN, deleted or not."""
        return self.by_fqn.get((etype, fqn))

    def get(self, etype: str, key: str, *, by_id: bool = False, include: str = "non-deleted") -> Record:
        """A record by FQN (or id), honouring `include` (404 otherwise)."""
        rec = self.records.get(key) if by_id else self.by_fqn.get((etype, key))
        if rec is None or rec.etype != etype or not included(rec, include):
            raise not_found(etype, key)
        return rec

    def resolve(self, fqn: str, etype: str | None = None) -> Record:
        """A record by FQN, trying the lineage-capable types when no type is given."""
        types = (etype,) if etype else ("table", "dashboardDataModel", "dashboard", "topic", "pipeline", "chart")
        for t in types:
            rec = self.by_fqn.get((t, fqn))
            if rec is not None:
                return rec
        raise not_found(etype or "entity", fqn)

    def owner_refs(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """Owner references for user or team names (404 on an unknown name)."""
        refs = []
        for name in names:
            rec = self.by_fqn.get(("user", name)) or self.by_fqn.get(("team", name))
            if rec is None:
                raise SimError(404, f"user instance for {name} not found")
            refs.append(rec.ref())
        return refs

    def seed_patch(self, rec: Record, patch: Callable[[dict[str, Any]], None]) -> None:
        """Edit a record while building a catalog (no version, no event)."""
        doc = rec.doc()
        patch(doc)
        rec.store(doc)

    def remove(self, rec: Record) -> None:
        """Forget an entity (a hard delete), with the lineage edges that touch it."""
        self.records.pop(rec.id, None)
        self.by_fqn.pop((rec.etype, rec.fqn), None)
        rows = self.by_type.get(rec.etype, [])
        if rec in rows:
            rows.remove(rec)
        for other in self.upstream.pop(rec.id, set()):
            self.edges.pop((other, rec.id), None)
            self.edge_meta.pop((other, rec.id), None)
            self.downstream.get(other, set()).discard(rec.id)
        for other in self.downstream.pop(rec.id, set()):
            self.edges.pop((rec.id, other), None)
            self.edge_meta.pop((rec.id, other), None)
            self.upstream.get(other, set()).discard(rec.id)
        self.membership_changed()

    # --- listing ----------------------------------------------------------------------------------------
    def membership_changed(self) -> None:
        """Invalidate list caches (an entity was created, deleted or restored)."""
        self._generation += 1

    def sorted_rows(
        self, etype: str, include: str, filters: tuple[tuple[str, str], ...] = ()
    ) -> tuple[list[tuple[str, str]], list[Record]]:
        """Name-then-id ordered rows of a type passing `include` and equality filters (cached)."""
        key = (etype, include, filters)
        hit = self._list_cache.get(key)
        if hit is not None and hit[0] == self._generation:
            return hit[1], hit[2]
        rows = [r for r in self.by_type.get(etype, ()) if included(r, include) and _passes(r, filters)]
        rows.sort(key=lambda r: (r.name, r.id))
        keys = [(r.name, r.id) for r in rows]
        if len(self._list_cache) > 256:
            self._list_cache.clear()
        self._list_cache[key] = (self._generation, keys, rows)
        return keys, rows

    def page(
        self,
        keys: list[tuple[str, str]],
        rows: list[Record],
        *,
        limit: int,
        after: str | None,
        before: str | None,
    ) -> tuple[list[Record], dict[str, Any]]:
        """One page of name-ordered rows and its `paging` (OM's listAfter/listBefore cursor rules)."""
        total = len(rows)
        paging: dict[str, Any] = {}
        if before is not None:
            end = bisect.bisect_left(keys, decode_cursor(before))
            start = max(0, end - limit)
            chunk = rows[start:end]
            if start > 0 and chunk:
                paging["before"] = encode_cursor(chunk[0])
            if chunk:
                paging["after"] = encode_cursor(chunk[-1])
        else:
            start = bisect.bisect_right(keys, decode_cursor(after)) if after is not None else 0
            chunk = rows[start : start + limit]
            if after is not None and chunk:
                paging["before"] = encode_cursor(chunk[0])
            if start + limit < total and chunk:
                paging["after"] = encode_cursor(chunk[-1])
        paging["total"] = total
        return chunk, paging

    # --- versions and events ----------------------------------------------------------------------------
    def versions(self, rec: Record) -> list[str]:
        """Every version of an entity as a JSON string, newest first."""
        older = [raw.decode() for raw in reversed(rec.history or [])]
        return [rec.raw.decode(), *older]

    def version(self, rec: Record, wanted: str) -> bytes:
        """One stored version by its number (`"0.2"`)."""
        try:
            target = round(float(wanted), 1)
        except ValueError as exc:
            raise SimError(400, f"Invalid version {wanted}") from exc
        for raw in [rec.raw, *(rec.history or [])]:
            if round(float(json.loads(raw).get("version", 0.1)), 1) == target:
                return raw
        raise SimError(404, f"{rec.etype} instance for {rec.id} and version {wanted} not found")

    def commit(
        self,
        rec: Record,
        doc: dict[str, Any],
        *,
        added: list[dict[str, Any]] | None = None,
        updated: list[dict[str, Any]] | None = None,
        deleted: list[dict[str, Any]] | None = None,
        major: bool = False,
        event_type: str = "entityUpdated",
        by: str = "admin",
        event: bool = True,
        recursive: bool = False,
    ) -> dict[str, Any]:
        """Record a versioned change as OM does: version bump, changeDescription, history, ChangeEvent
        (`event=False` for the children of a cascade, which get no event of their own)."""
        previous = rec.version
        change = {
            "fieldsAdded": added or [],
            "fieldsUpdated": updated or [],
            "fieldsDeleted": deleted or [],
            "previousVersion": previous,
        }
        now = self.tick()
        doc["version"] = round(previous + (1.0 if major else 0.1), 1)
        doc["updatedAt"] = now
        doc["updatedBy"] = by
        doc["changeDescription"] = change
        if rec.history is None:
            rec.history = []
        rec.history.append(rec.raw)
        was_deleted = rec.deleted
        rec.store(doc)
        if rec.deleted != was_deleted:
            self.membership_changed()
        if event:
            self.emit(event_type, rec, change, timestamp=now, previous=previous, by=by, recursive=recursive)
        return doc

    def emit(
        self,
        event_type: str,
        rec: Record,
        change: dict[str, Any] | None,
        *,
        timestamp: int | None = None,
        previous: float | None = None,
        by: str = "admin",
        recursive: bool = False,
    ) -> dict[str, Any]:
        """Append a ChangeEvent (entity as a JSON-encoded string of the version's shape, timestamp = the entity's
        updatedAt); `recursive` marks the root of a cascade delete where the version has the field (2.0)."""
        ts = timestamp if timestamp is not None else self.tick()
        event: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "eventType": event_type,
            "entityType": rec.etype,
            "entityId": rec.id,
            "entityFullyQualifiedName": rec.fqn,
            "previousVersion": previous if previous is not None else rec.version,
            "currentVersion": rec.version,
            "userName": by,
            "timestamp": ts,
        }
        if change is not None:
            event["changeDescription"] = change
        if recursive and self.view.marks_recursive:
            event["recursive"] = True
        event["entity"] = rec.render(self.view, self.view.all_fields(rec.etype)).decode()
        raw = dumps(event).encode()
        self.events.append((ts, event_type, rec.etype, raw))
        self._event_ts.append(ts)
        self.audit.record(event, ts)
        self.subscriptions.publish(rec.etype, raw)
        return event

    def events_json(self, params: Mapping[str, str | None], timestamp: int) -> bytes:
        """`GET /v1/events`: ascending, inclusive timestamp, only the kinds named in the params."""
        return events_feed(self.events, self._event_ts, params, timestamp)


def _passes(rec: Record, filters: tuple[tuple[str, str], ...]) -> bool:
    for name, value in filters:
        if name == "service" and rec.service != value:
            return False
        if name == "database" and rec.database != value:
            return False
        if name == "databaseSchema" and rec.schema != value:
            return False
    return True
