"""Async client of the OpenMetadata 1.5–2.x REST API used by the sync: entities, lineage, data quality, events.

Request shapes (the `fields` of each entity type, paging, write-back bodies) follow the server's version, read
first from `/v1/system/version` and looked up in `storage.openmetadata.versions`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from storage.errors import OMAuthError, OMNotFound, OMNotOpenMetadata, OMUnavailable, OpenMetadataError
from storage.openmetadata import versions as om_versions
from storage.openmetadata.fqn import url_segment
from storage.openmetadata.http import ClientStats, OMHttp, QueryParams, Sleep, excerpt, split_page
from storage.openmetadata.lineage import LineageEdge, parse_lineage, parse_search_lineage
from storage.openmetadata.models import (
    ENTITY_COLLECTIONS,
    ChangeEvent,
    EntityBase,
    OMTeam,
    OMUser,
    ServerVersion,
)
from storage.openmetadata.quality import QualityMixin

__all__ = ["LineageAnswer", "LineageEdge", "LineageFailure", "MalformedItem", "OpenMetadataClient", "event_entity"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
R = TypeVar("R")

SUPPORTED_RANGE = om_versions.SUPPORTED
EVENT_KINDS = ("entityCreated", "entityUpdated", "entityDeleted", "entityRestored")
EVENT_ENTITY_TYPES = ("table", "dashboard", "chart", "dashboardDataModel", "pipeline", "topic", "testCase")
# Containers whose (cascade) deletion takes every entity under their FQN with it; one event names the root only.
CONTAINER_TYPES = (
    "databaseService",
    "database",
    "databaseSchema",
    "dashboardService",
    "pipelineService",
    "messagingService",
)
INCLUDE = "non-deleted"
MAX_LINEAGE_DEPTH = 3
LINEAGE_LISTS = ("nodes", "upstreamEdges", "downstreamEdges")


@dataclass(frozen=True, slots=True)
class MalformedItem:
    """An item the server sent that failed validation and was skipped.

    `entity_type` is the entity type listed, or `testCase`, `incidentStatus`, `changeEvent`, `lineage`, …
    """

    entity_type: str
    fqn_or_id: str | None  # the item's FQN, else its id or name, when extractable
    error: str


@dataclass(frozen=True, slots=True)
class LineageFailure:
    """An entity whose lineage could not be read (a 4xx other than 401/403/404, or an unusable answer)."""

    entity_type: str
    fqn: str
    error: str


@dataclass(frozen=True, slots=True)
class LineageAnswer:
    """One entity's lineage as answered: the usable edges, and how many of the answer's edges were skipped."""

    edges: list[LineageEdge]
    skipped: int = 0


class OpenMetadataClient(QualityMixin):
    """One keep-alive session to an OpenMetadata server: `async with OpenMetadataClient(url, tok) as om:`."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        max_retries: int = 5,
        concurrency: int = 16,
        page_size: int = 500,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_cap: float = 60.0,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be ≥ 1 (100–1000 is the sensible range)")
        self._http = OMHttp(
            base_url,
            token,
            timeout=timeout,
            max_retries=max_retries,
            concurrency=concurrency,
            transport=transport,
            sleep=sleep,
            backoff=backoff,
            backoff_max=backoff_max,
            retry_after_cap=retry_after_cap,
        )
        self.page_size = page_size
        self.concurrency = concurrency
        self.malformed: list[MalformedItem] = []
        self.server: ServerVersion | None = None
        self.profile: om_versions.Profile | None = None
        # what a newer server sent that this client does not know: counted and ignored, never fatal
        self.unknown_fields: Counter[str] = Counter()  # "table.someNewKey" → times seen
        self.unknown_event_types: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"OpenMetadataClient({self.base_url!r})"

    @property
    def base_url(self) -> str:
        """The normalised API root, always ending in `/api/`."""
        return self._http.base_url

    @property
    def stats(self) -> ClientStats:
        """Request, retry and byte counters since the client was created."""
        return self._http.stats

    async def __aenter__(self) -> OpenMetadataClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._http.aclose()

    # ---- server version -------------------------------------------------------------------------------
    async def server_version(self) -> ServerVersion:
        """`GET /v1/system/version`."""
        body = await self._http.get_json("v1/system/version")
        try:
            self.server = ServerVersion.model_validate(body)
        except ValidationError:
            raise OMNotOpenMetadata(
                f"{self._http.server_url} does not look like OpenMetadata (its /api/v1/system/version answer has "
                f"no version: {excerpt(json.dumps(body, default=str))}): check OPENMETADATA_URL",
                url=self.base_url + "v1/system/version",
            ) from None
        return self.server

    async def check_version(self) -> ServerVersion:
        """Read the server version, choose its request shapes, and refuse (`OMUnsupportedVersion`, one sentence)
        anything outside 1.5–2.x."""
        version = await self.server_version()
        self.profile = om_versions.profile_for(version.version, url=self.base_url)
        return version

    async def version_profile(self) -> om_versions.Profile:
        """The request shapes of this server (its version is read once, on first need)."""
        if self.profile is None:
            await self.check_version()
        assert self.profile is not None
        return self.profile

    # ---- data assets ----------------------------------------------------------------------------------
    async def iter_entities(self, entity_type: str) -> AsyncIterator[EntityBase]:
        """Every non-deleted entity of one `ENTITY_COLLECTIONS` type, cursor-paged; malformed ones skipped."""
        collection, model = _collection(entity_type)
        fields = (await self.version_profile()).fields(entity_type)
        params: QueryParams = {"fields": fields, "include": INCLUDE, "limit": self.page_size}
        async for item in self._iter_cursor(f"v1/{collection}", params, model, entity_type):
            yield item

    async def get_entity(self, entity_type: str, fqn: str, *, include: str = INCLUDE) -> EntityBase:
        """One entity by FQN (`OMNotFound` when absent, `OpenMetadataError` when the answer is invalid)."""
        entity = await self._get_entity(entity_type, fqn, include)
        if entity is None:
            raise OpenMetadataError(f"OpenMetadata returned an invalid {entity_type} for {fqn}")
        return entity

    async def get_entities(self, entity_type: str, fqns: Iterable[str]) -> dict[str, EntityBase]:
        """Many entities by FQN with bounded concurrency; absent (404) and malformed ones are left out."""

        async def one(fqn: str) -> EntityBase | None:
            try:
                return await self._get_entity(entity_type, fqn, INCLUDE)
            except OMNotFound:
                return None

        wanted = list(dict.fromkeys(fqns))
        found = await _bounded_map(wanted, one, self.concurrency)
        return {fqn: entity for fqn, entity in zip(wanted, found, strict=True) if entity is not None}

    async def _get_entity(self, entity_type: str, fqn: str, include: str) -> EntityBase | None:
        collection, model = _collection(entity_type)
        fields = (await self.version_profile()).fields(entity_type)
        path = f"v1/{collection}/name/{url_segment(fqn)}"
        body = await self._http.get_json(path, {"fields": fields, "include": include})
        return self._parse(model, entity_type, body)

    # ---- lineage --------------------------------------------------------------------------------------
    async def lineage(self, entity_type: str, fqn: str, upstream: int = 1, downstream: int = 1) -> list[LineageEdge]:
        """The resolved lineage edges around one entity (`OMNotFound` when the entity is gone).

        Edges whose UUIDs cannot be resolved are skipped and recorded in `malformed` under the entity's FQN.
        """
        return (await self.lineage_answer(entity_type, fqn, upstream, downstream)).edges

    async def lineage_answer(self, entity_type: str, fqn: str, upstream: int = 1, downstream: int = 1) -> LineageAnswer:
        """`lineage`, saying also how many edges of the answer were skipped (so it is not the whole truth)."""
        params = {"upstreamDepth": _depth(upstream), "downstreamDepth": _depth(downstream)}
        path = f"v1/lineage/{entity_type}/name/{url_segment(fqn)}"
        body = await self._http.get_json(path, params)
        if not isinstance(body, dict) or not isinstance(body.get("entity"), dict):
            # an unusable answer must not read as "no edges": the caller would drop the entity's lineage
            raise OpenMetadataError(f"OpenMetadata answered GET /{path} without a lineage `entity`")
        wrong = [k for k in LINEAGE_LISTS if body.get(k) is not None and not isinstance(body.get(k), list)]
        if wrong:
            raise OpenMetadataError(f"OpenMetadata answered GET /{path} with `{wrong[0]}` not a list")
        edges, problems = parse_lineage(body)
        for problem in problems:
            self._skip(MalformedItem("lineage", fqn, f"edge {problem.ref}: {problem.error}"))
        return LineageAnswer(edges, skipped=len(problems))

    async def lineage_many(
        self,
        items: Sequence[tuple[str, str]],
        upstream: int = 1,
        downstream: int = 1,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[dict[str, list[LineageEdge]], list[LineageFailure]]:
        """Lineage of many `(entity_type, fqn)`: 404 → `[]`; other 4xx → failures; auth/unavailable raise.

        `progress(done)` is called after each entity. Edges equal from both ends share one object.
        """
        canonical: dict[LineageEdge, LineageEdge] = {}
        failures: list[LineageFailure] = []
        done = 0

        async def one(item: tuple[str, str]) -> list[LineageEdge] | None:
            nonlocal done
            entity_type, fqn = item
            try:
                edges: list[LineageEdge] | None = await self.lineage(entity_type, fqn, upstream, downstream)
            except OMNotFound:
                edges = []
            except (OMAuthError, OMUnavailable):
                raise
            except OpenMetadataError as exc:
                failures.append(LineageFailure(entity_type, fqn, str(exc)))
                edges = None
            done += 1
            if progress is not None:
                progress(done)
            return None if edges is None else [canonical.setdefault(edge, edge) for edge in edges]

        results = await _bounded_map(list(items), one, self.concurrency)
        by_fqn = {fqn: edges for (_, fqn), edges in zip(items, results, strict=True) if edges is not None}
        return by_fqn, failures

    async def platform_lineage(self) -> dict[str, list[LineageEdge]]:
        """The whole lineage graph in one read: each search document's upstream edges, by the document's FQN
        (`GET /v1/lineage/getPlatformLineage?view=all`, search-backed, 1.7+).

        Edges resolve exactly as `lineage` resolves them (FQNs, types, pipeline FQN, merged column pairs). The
        answer is one search page of at most 10,000 documents with no paging, so an entity absent from it proves
        nothing; a document with an edge that cannot be resolved is left out too (recorded in `malformed`).
        Raises as every read does: `OMNotFound` before 1.7, `OMUnavailable` while search is down (a 500).
        """
        path = "v1/lineage/getPlatformLineage"
        by_document, problems = parse_search_lineage(await self._http.get_json(path, {"view": "all"}), path)
        for fqn, error in problems:
            self._skip(MalformedItem("lineage", fqn, error))
        return by_document

    # ---- people ---------------------------------------------------------------------------------------
    async def iter_users(self) -> AsyncIterator[OMUser]:
        """Every non-deleted user (name, email, displayName), cursor-paged; malformed ones skipped as `people`."""
        params: QueryParams = {"include": INCLUDE, "limit": self.page_size}
        async for user in self._iter_cursor("v1/users", params, OMUser, "people"):
            yield user

    async def iter_teams(self) -> AsyncIterator[OMTeam]:
        """Every non-deleted team (name, email, displayName), cursor-paged; malformed ones skipped as `people`."""
        params: QueryParams = {"include": INCLUDE, "limit": self.page_size}
        async for team in self._iter_cursor("v1/teams", params, OMTeam, "people"):
            yield team

    # ---- change events --------------------------------------------------------------------------------
    async def events_since(
        self,
        timestamp_ms: int,
        entity_types: Iterable[str] = EVENT_ENTITY_TYPES,
        *,
        exclude_ids: Collection[str] = (),
    ) -> list[ChangeEvent]:
        """Change events at or after `timestamp_ms` (inclusive), oldest first, unique by id.

        The client keeps no state: events whose id is in `exclude_ids` (those already handled at the
        boundary millisecond) are dropped, and de-duplication across calls is the caller's job.
        """
        types = ",".join(dict.fromkeys(entity_types))
        if not types:
            return []
        params: dict[str, str | int] = {kind: types for kind in EVENT_KINDS}
        # a container's deletion takes its children with it (one event for the root): ask for those too
        params["entityDeleted"] = ",".join(dict.fromkeys([*entity_types, *CONTAINER_TYPES]))
        params["timestamp"] = timestamp_ms
        data, _ = split_page(await self._http.get_json("v1/events", params), "v1/events")
        seen = set(exclude_ids)
        events: list[ChangeEvent] = []
        for raw in data:
            event = self._parse(ChangeEvent, "changeEvent", raw)
            if event is not None:
                self.note_event_type(event)
            if event is not None and event.id not in seen:
                seen.add(event.id)
                events.append(event)
        events.sort(key=lambda e: e.timestamp)
        return events

    def note_event_type(self, event: ChangeEvent) -> bool:
        """Count an event type this server version does not define (never fatal); True when it is known."""
        if self.profile is None or not self.profile.event_types or event.eventType in self.profile.event_types:
            return True
        self.unknown_event_types[event.eventType] += 1
        return False

    async def lineage_audit_since(self, start_ts: int, end_ts: int | None = None) -> list[ChangeEvent]:
        """OpenMetadata 2.0's lineage changes (`entityLineageAdded/Updated/Deleted`) from the audit log, oldest first.

        `GET /v1/audit/logs?entityType=lineage&startTs=…` (cursor-paged, at most 200 a page). Each entry is turned
        into the ChangeEvent it records; entries that do not read as one are skipped and counted as malformed.
        """
        path = "v1/audit/logs"
        params: dict[str, Any] = {"entityType": "lineage", "startTs": start_ts, "limit": 200}
        if end_ts is not None:
            params["endTs"] = end_ts
        out: list[ChangeEvent] = []
        seen_cursors: set[str] = set()
        while True:
            data, paging = split_page(await self._http.get_json(path, params), path)
            for raw in data:
                event = self._parse(ChangeEvent, "auditLog", audit_change_event(raw))
                if event is not None:
                    self.note_event_type(event)
                    out.append(event)
            after = paging.get("after")
            if not data or not isinstance(after, str) or not after:
                break
            if after in seen_cursors:
                raise OpenMetadataError(f"OpenMetadata repeated a paging cursor on GET /{path}")
            seen_cursors.add(after)
            params["after"] = after
        out.sort(key=lambda e: e.timestamp)
        return out

    # ---- paging and lenient parsing -------------------------------------------------------------------
    async def _iter_cursor(self, path: str, params: QueryParams, model: type[M], kind: str) -> AsyncIterator[M]:
        after: str | None = None
        seen_cursors: set[str] = set()
        while True:
            query = dict(params) if after is None else {**params, "after": after}
            data, paging = split_page(await self._http.get_json(path, query), path)
            for raw in data:
                item = self._parse(model, kind, raw)
                if item is not None:
                    yield item
            after = paging.get("after") or None
            if after is None:
                return
            if after in seen_cursors:
                raise OpenMetadataError(f"OpenMetadata repeated a paging cursor on GET /{path}")
            seen_cursors.add(after)

    def _parse(self, model: type[M], kind: str, raw: Any) -> M | None:
        if self.profile is not None and isinstance(raw, dict):
            for key in self.profile.unknown_keys(kind, raw):
                self.unknown_fields[f"{kind}.{key}"] += 1
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(item)'}: {err['msg']}" for err in exc.errors()[:3]
            )
            self._skip(MalformedItem(kind, _ref_of(raw), problems))
            return None

    def _skip(self, item: MalformedItem) -> None:
        self.malformed.append(item)
        log.warning("skipped a malformed %s from OpenMetadata (%s): %s", item.entity_type, item.fqn_or_id, item.error)


def event_entity(event: ChangeEvent | dict[str, Any]) -> dict[str, Any] | None:
    """The entity carried by a change event: a JSON string on the wire (sometimes twice encoded), or None."""
    value = event.get("entity") if isinstance(event, dict) else event.entity
    for _ in range(3):
        if isinstance(value, dict):
            return value
        if not isinstance(value, str | bytes):
            return None
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def audit_change_event(entry: Any) -> Any:
    """The ChangeEvent an audit-log entry records: its `changeEvent` (object or JSON string) or the entry itself,
    with the entry's own keys filling what the event lacks."""
    if not isinstance(entry, dict):
        return entry
    inner = entry.get("changeEvent")
    if isinstance(inner, str):
        try:
            inner = json.loads(inner)
        except ValueError:
            inner = None
    event = dict(inner) if isinstance(inner, dict) else {}
    aliases = {
        "id": ("changeEventId", "id"),
        "eventType": ("eventType",),
        "entityType": ("entityType",),
        "entityId": ("entityId",),
        "entityFullyQualifiedName": ("entityFQN", "entityFullyQualifiedName"),
        "timestamp": ("eventTs", "timestamp", "createdAt"),
        "userName": ("userName",),
    }
    for key, names in aliases.items():
        if event.get(key) is None:
            event[key] = next((entry[n] for n in names if entry.get(n) is not None), None)
    if event.get("entityId") is None:
        event["entityId"] = event.get("id") or ""
    return {k: v for k, v in event.items() if v is not None}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _collection(entity_type: str) -> tuple[str, type[EntityBase]]:
    try:
        return ENTITY_COLLECTIONS[entity_type]
    except KeyError:
        known = ", ".join(ENTITY_COLLECTIONS)
        raise ValueError(f"unknown entity type {entity_type!r} (known: {known})") from None


def _depth(value: int) -> int:
    return max(0, min(MAX_LINEAGE_DEPTH, int(value)))


def _ref_of(raw: Any) -> str | None:
    if isinstance(raw, dict):
        for key in ("fullyQualifiedName", "id", "name"):
            value = raw.get(key)
            if isinstance(value, str) and value:
                return value
    return None


async def _bounded_map(items: list[T], fn: Callable[[T], Awaitable[R]], limit: int) -> list[R]:
    """`[await fn(x) for x in items]` run by at most `limit` workers; the first error cancels the rest."""
    results: list[Any] = [None] * len(items)
    queue = iter(enumerate(items))

    async def worker() -> None:
        for index, item in queue:
            results[index] = await fn(item)

    tasks = [asyncio.create_task(worker()) for _ in range(min(limit, len(items)))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return results
