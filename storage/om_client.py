"""Async client of the OpenMetadata 1.x REST API used by the sync: entities, lineage, data quality, events."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from storage.errors import OMAuthError, OMNotFound, OMUnavailable, OMUnsupportedVersion, OpenMetadataError
from storage.fqn import url_segment
from storage.om_http import ClientStats, OMHttp, QueryParams, Sleep
from storage.om_lineage import LineageEdge, parse_lineage
from storage.om_models import (
    ENTITY_COLLECTIONS,
    ChangeEvent,
    EntityBase,
    OMTeam,
    OMUser,
    ServerVersion,
    TestCase,
    TestCaseResolutionStatus,
    TestCaseResult,
)

__all__ = ["LineageEdge", "LineageFailure", "MalformedItem", "OpenMetadataClient", "event_entity"]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
R = TypeVar("R")

SUPPORTED_RANGE = ">= 1.0, < 2.0 (OpenMetadata 1.x)"
EVENT_KINDS = ("entityCreated", "entityUpdated", "entityDeleted", "entityRestored")
EVENT_ENTITY_TYPES = ("table", "dashboard", "chart", "dashboardDataModel", "pipeline", "topic", "testCase")
TEST_CASE_FIELDS = "testDefinition,testSuite,incidentId,owners"
INCLUDE = "non-deleted"
MAX_LINEAGE_DEPTH = 3


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


class OpenMetadataClient:
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
            raise OpenMetadataError(
                f"{self.base_url}v1/system/version did not return a version: is this OpenMetadata?",
                url=self.base_url + "v1/system/version",
            ) from None
        return self.server

    async def check_version(self) -> ServerVersion:
        """Read the server version and refuse (`OMUnsupportedVersion`) anything outside 1.x."""
        version = await self.server_version()
        match = re.match(r"\s*v?(\d+)\.(\d+)", version.version)
        if match is None or int(match.group(1)) != 1:
            raise OMUnsupportedVersion(
                f"OpenMetadata {version.version} at {self.base_url} is not supported: "
                f"DNA Bot supports OpenMetadata {SUPPORTED_RANGE}",
                version=version.version,
                supported=SUPPORTED_RANGE,
                url=self.base_url + "v1/system/version",
            )
        return version

    # ---- data assets ----------------------------------------------------------------------------------
    async def iter_entities(self, entity_type: str) -> AsyncIterator[EntityBase]:
        """Every non-deleted entity of one `ENTITY_COLLECTIONS` type, cursor-paged; malformed ones skipped."""
        collection, model, fields = _collection(entity_type)
        params = {"fields": fields, "include": INCLUDE, "limit": self.page_size}
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
        collection, model, fields = _collection(entity_type)
        path = f"v1/{collection}/name/{url_segment(fqn)}"
        body = await self._http.get_json(path, {"fields": fields, "include": include})
        return self._parse(model, entity_type, body)

    # ---- lineage --------------------------------------------------------------------------------------
    async def lineage(self, entity_type: str, fqn: str, upstream: int = 1, downstream: int = 1) -> list[LineageEdge]:
        """The resolved lineage edges around one entity (`OMNotFound` when the entity is gone).

        Edges whose UUIDs cannot be resolved are skipped and recorded in `malformed` under the entity's FQN.
        """
        params = {"upstreamDepth": _depth(upstream), "downstreamDepth": _depth(downstream)}
        path = f"v1/lineage/{entity_type}/name/{url_segment(fqn)}"
        body = await self._http.get_json(path, params)
        if not isinstance(body, dict) or not isinstance(body.get("entity"), dict):
            # an unusable answer must not read as "no edges": the caller would drop the entity's lineage
            raise OpenMetadataError(f"OpenMetadata answered GET /{path} without a lineage `entity`")
        edges, problems = parse_lineage(body)
        for problem in problems:
            self._skip(MalformedItem("lineage", fqn, f"edge {problem.ref}: {problem.error}"))
        return edges

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

    # ---- data quality ---------------------------------------------------------------------------------
    async def iter_test_cases(self, table_fqn: str | None = None) -> AsyncIterator[TestCase]:
        """Every non-deleted test case (or one table's, its columns' included) with its latest result and open
        incident id; malformed ones skipped."""
        params: dict[str, Any] = {"fields": TEST_CASE_FIELDS, "include": INCLUDE, "limit": self.page_size}
        if table_fqn is not None:
            params |= {"entityLink": f"<#E::table::{table_fqn}>", "includeAllTests": "true"}
        async for case in self._iter_cursor("v1/dataQuality/testCases", params, TestCase, "testCase"):
            yield case

    async def test_case_results(self, fqn: str, start_ts: int, end_ts: int) -> list[TestCaseResult]:
        """The results of one test case between two epoch-ms timestamps."""
        path = f"v1/dataQuality/testCases/testCaseResults/{url_segment(fqn)}"
        params = {"startTs": start_ts, "endTs": end_ts}
        return [r async for r in self._iter_cursor(path, params, TestCaseResult, "testCaseResult")]

    async def incident_statuses(
        self, start_ts: int, end_ts: int, latest: bool = True
    ) -> list[TestCaseResolutionStatus]:
        """Incident (test case resolution) statuses in a window; `latest` keeps one row per `stateId`."""
        path = "v1/dataQuality/testCases/testCaseIncidentStatus"
        out: list[TestCaseResolutionStatus] = []
        offset = 0
        while True:
            params = {
                "startTs": start_ts,
                "endTs": end_ts,
                "latest": latest,
                "limit": self.page_size,
                "offset": offset,
            }
            data, paging = _page(await self._http.get_json(path, params), path)
            out.extend(s for raw in data if (s := self._parse(TestCaseResolutionStatus, "incidentStatus", raw)))
            offset += len(data)
            total = paging.get("total")
            if not data or (isinstance(total, int) and offset >= total):
                return out
            if not isinstance(total, int) and len(data) < self.page_size:
                return out

    async def post_incident_status(
        self,
        test_fqn: str,
        status: str,
        *,
        assignee: str | None = None,
        reason: str | None = None,
        comment: str | None = None,
        severity: str | None = None,
        resolved_by: str | None = None,
    ) -> TestCaseResolutionStatus:
        """Add an Ack / Assigned / Resolved status to the open incident of test case `test_fqn`.

        `POST /v1/dataQuality/testCases/testCaseIncidentStatus`. `assignee` and `resolved_by` are OpenMetadata
        user names; `reason` is ours (fixed, false_positive, duplicate, other) or already an OM failure reason.
        """
        body = incident_status_body(
            test_fqn,
            status,
            assignee=assignee,
            reason=reason,
            comment=comment,
            severity=severity,
            resolved_by=resolved_by,
        )
        path = "v1/dataQuality/testCases/testCaseIncidentStatus"
        answer = await self._http.post_json(path, body)
        try:
            return TestCaseResolutionStatus.model_validate(answer)
        except ValidationError:
            raise OpenMetadataError(
                f"OpenMetadata answered POST /{path} without an incident status", url=self.base_url + path
            ) from None

    # ---- people ---------------------------------------------------------------------------------------
    async def iter_users(self) -> AsyncIterator[OMUser]:
        """Every non-deleted user (name, email, displayName), cursor-paged; malformed ones skipped as `people`."""
        params = {"include": INCLUDE, "limit": self.page_size}
        async for user in self._iter_cursor("v1/users", params, OMUser, "people"):
            yield user

    async def iter_teams(self) -> AsyncIterator[OMTeam]:
        """Every non-deleted team (name, email, displayName), cursor-paged; malformed ones skipped as `people`."""
        params = {"include": INCLUDE, "limit": self.page_size}
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
        params["timestamp"] = timestamp_ms
        data, _ = _page(await self._http.get_json("v1/events", params), "v1/events")
        seen = set(exclude_ids)
        events: list[ChangeEvent] = []
        for raw in data:
            event = self._parse(ChangeEvent, "changeEvent", raw)
            if event is not None and event.id not in seen:
                seen.add(event.id)
                events.append(event)
        events.sort(key=lambda e: e.timestamp)
        return events

    # ---- paging and lenient parsing -------------------------------------------------------------------
    async def _iter_cursor(self, path: str, params: QueryParams, model: type[M], kind: str) -> AsyncIterator[M]:
        after: str | None = None
        seen_cursors: set[str] = set()
        while True:
            query = dict(params) if after is None else {**params, "after": after}
            data, paging = _page(await self._http.get_json(path, query), path)
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


INCIDENT_WRITE_STATES = ("Ack", "Assigned", "Resolved")
FAILURE_REASONS = ("FalsePositive", "MissingData", "Duplicates", "OutOfBounds", "Other")
REASON_TO_OM = {"fixed": "Other", "false_positive": "FalsePositive", "duplicate": "Duplicates", "other": "Other"}


def failure_reason(reason: str | None) -> str:
    """Our resolve reason as an OpenMetadata `testCaseFailureReason` (unknown or absent → `Other`)."""
    if reason in FAILURE_REASONS:
        return reason
    return REASON_TO_OM.get((reason or "").strip().lower(), "Other")


def incident_status_body(
    test_fqn: str,
    status: str,
    *,
    assignee: str | None = None,
    reason: str | None = None,
    comment: str | None = None,
    severity: str | None = None,
    resolved_by: str | None = None,
) -> dict[str, Any]:
    """The `CreateTestCaseResolutionStatus` body of one Ack / Assigned / Resolved status."""
    if status not in INCIDENT_WRITE_STATES:
        raise ValueError(f"incident status must be one of {', '.join(INCIDENT_WRITE_STATES)}, not {status!r}")
    body: dict[str, Any] = {"testCaseResolutionStatusType": status, "testCaseReference": test_fqn}
    if status == "Assigned":
        if not assignee:
            raise ValueError("an Assigned status needs an assignee")
        body["testCaseResolutionStatusDetails"] = {"assignee": {"name": assignee, "type": "user"}}
    elif status == "Resolved":
        details: dict[str, Any] = {
            "testCaseFailureReason": failure_reason(reason),
            "testCaseFailureComment": comment or "",
        }
        if resolved_by:
            details["resolvedBy"] = {"name": resolved_by, "type": "user"}
        body["testCaseResolutionStatusDetails"] = details
    if severity:
        body["severity"] = severity
    return body


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


def _collection(entity_type: str) -> tuple[str, type[EntityBase], str]:
    try:
        return ENTITY_COLLECTIONS[entity_type]
    except KeyError:
        known = ", ".join(ENTITY_COLLECTIONS)
        raise ValueError(f"unknown entity type {entity_type!r} (known: {known})") from None


def _depth(value: int) -> int:
    return max(0, min(MAX_LINEAGE_DEPTH, int(value)))


def _page(body: Any, path: str) -> tuple[list[Any], dict[str, Any]]:
    """Split a list answer into its `data` and `paging`; anything else is a protocol error."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise OpenMetadataError(f"OpenMetadata answered GET /{path} without a `data` list")
    paging = body.get("paging")
    return body["data"], paging if isinstance(paging, dict) else {}


def _ref_of(raw: Any) -> str | None:
    if isinstance(raw, dict):
        for key in ("fullyQualifiedName", "id", "name"):
            if isinstance(raw.get(key), str) and raw[key]:
                return raw[key]
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
