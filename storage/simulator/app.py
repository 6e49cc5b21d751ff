"""The simulator's ASGI app: OpenMetadata 1.x REST routes with OM's exact shapes, over a Catalog."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from storage.simulator import admin
from storage.simulator.admin import JSON, error_response
from storage.simulator.catalog import Catalog
from storage.simulator.faults import FaultInjector, broken
from storage.simulator.records import COLLECTIONS, Record, SimError, dumps, parse_fields
from storage.simulator.store import INCLUDE_VALUES

Validator = Callable[[str, Any], None]
LINEAGE_TYPES = frozenset({"table", "dashboard", "pipeline", "topic", "dashboardDataModel", "chart"})
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class Reply:
    """A JSON body (already encoded) and whether it may be schema-validated."""

    __slots__ = ("body", "status", "validate")

    def __init__(self, body: bytes, status: int = 200, *, validate: bool = True) -> None:
        self.body, self.status, self.validate = body, status, validate


def _int(q: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = q.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SimError(400, f"query param {name} must be an integer") from exc


class Simulator:
    """Routes one request to the catalog; `endpoint` is the single Starlette route."""

    def __init__(self, catalog: Catalog, *, token: str, validator: Validator | None, version: str) -> None:
        self.catalog = catalog
        self.token = token
        self.validator = validator
        self.version = {"version": version, "revision": "simulator", "timestamp": int(time.time() * 1000)}
        self.faults = FaultInjector()
        self._auth = f"Bearer {token}"

    async def endpoint(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        raw_path = raw.decode("latin-1")
        segments = [unquote(s, encoding="utf-8") for s in raw_path.split("/")[1:]]
        path = request.scope["path"]
        method = request.method
        if segments and segments[0] == "admin":
            if request.headers.get("authorization") != self._auth:
                return error_response(401, "Not Authorized! Token not present or invalid")
            return await admin.handle(self, request, segments[1:])
        fault = self.faults.match(method, path)
        if fault is not None:
            if fault.delay_seconds:
                await asyncio.sleep(fault.delay_seconds)
            if fault.status is not None:
                headers = {"Retry-After": _retry_after(fault.retry_after)} if fault.retry_after is not None else {}
                return error_response(fault.status, fault.message or f"Injected fault {fault.id}", headers)
        if path != "/api/v1/system/version" and request.headers.get("authorization") != self._auth:
            return error_response(401, "Not Authorized! Token not present or invalid")
        body: Any = None
        if method in ("POST", "PUT", "PATCH"):
            data = await request.body()
            try:
                body = json.loads(data) if data else None
            except ValueError:
                return error_response(400, "Unable to process JSON")
        try:
            if segments[:2] != ["api", "v1"]:
                raise SimError(404, "HTTP 404 Not Found")
            reply = self.route(method, segments[2:], request.query_params, body)
        except SimError as exc:
            return error_response(exc.status, exc.message)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a request body of the wrong shape
            return error_response(400, f"Invalid request: {exc!r}")
        if self.validator is not None and reply.validate and reply.body and reply.status < 300:
            try:
                self.validator(path, json.loads(reply.body))
            except Exception as exc:  # a strict validator turns a bad shape into a visible 500
                return error_response(500, f"response failed schema validation: {exc}")
        return Response(reply.body, reply.status, media_type=JSON)

    # --- routing ----------------------------------------------------------------------------------------
    def route(self, method: str, seg: list[str], q: Mapping[str, str], body: Any) -> Reply:
        """Dispatch `/api/v1/<seg...>`."""
        head = seg[0] if seg else ""
        if seg == ["system", "version"] and method == "GET":
            return Reply(dumps(self.version).encode())
        if seg == ["events"] and method == "GET":
            with self.catalog.lock:
                return Reply(self.catalog.events_json(q, _int(q, "timestamp", 0) or 0))
        if seg[:2] == ["events", "subscriptions"]:
            return self.subscriptions(method, seg[2:], body)
        if head == "lineage":
            return self.lineage(method, seg[1:], q, body)
        if seg[:2] == ["dataQuality", "testCases"]:
            return self.quality(method, seg[2:], q, body)
        if seg[:2] == ["dashboard", "datamodels"]:
            return self.collection("dashboardDataModel", method, seg[2:], q, body)
        if head in COLLECTIONS and head != "dataQuality":
            return self.collection(COLLECTIONS[head], method, seg[1:], q, body)
        raise SimError(404, "HTTP 404 Not Found")

    def collection(self, etype: str, method: str, rest: list[str], q: Mapping[str, str], body: Any) -> Reply:
        """List, get by name or id, versions; plus pipeline run status."""
        if etype == "pipeline" and len(rest) == 2 and rest[1] == "status":
            return self.pipeline_status(method, rest[0], q, body)
        if method != "GET":
            raise SimError(405, "HTTP 405 Method Not Allowed")
        if not rest:
            filters = tuple((k, q[k]) for k in ("service", "database", "databaseSchema") if q.get(k))
            with self.catalog.lock:
                keys, rows = self.catalog.sorted_rows(etype, _include(q), filters)
                return self.page(etype, keys, rows, q)
        if rest[0] == "name" and len(rest) == 2:
            return self.one(etype, rest[1], q, by_id=False)
        if len(rest) == 1:
            return self.one(etype, rest[0], q, by_id=True)
        if rest[1] == "versions":
            with self.catalog.lock:
                rec = self.catalog.get(etype, rest[0], by_id=True, include="all")
                if len(rest) == 2:
                    history = {"entityType": etype, "versions": self.catalog.versions(rec)}
                    return Reply(dumps(history).encode())
                if len(rest) == 3:
                    return Reply(self.catalog.version(rec, rest[2]))
        raise SimError(404, "HTTP 404 Not Found")

    def page(self, etype: str, keys: list[tuple[str, str]], rows: list[Record], q: Mapping[str, str]) -> Reply:
        """One `{data, paging}` page, entities rendered for `fields`."""
        limit = _int(q, "limit", 10)
        if limit is None or limit < 0 or limit > 1_000_000:
            raise SimError(400, "query param limit must be between 0 and 1000000")
        fields = parse_fields(etype, q.get("fields"))
        chunk, paging = self.catalog.page(keys, rows, limit=limit, after=q.get("after"), before=q.get("before"))
        parts = [self.render(r, fields) for r in chunk]
        ok = all(p[1] for p in parts)
        body = b'{"data":[' + b",".join(p[0] for p in parts) + b'],"paging":' + dumps(paging).encode() + b"}"
        return Reply(body, validate=ok)

    def one(self, etype: str, key: str, q: Mapping[str, str], *, by_id: bool) -> Reply:
        fields = parse_fields(etype, q.get("fields"))
        with self.catalog.lock:
            rec = self.catalog.get(etype, key, by_id=by_id, include=_include(q))
            raw, ok = self.render(rec, fields)
            return Reply(raw, validate=ok)

    def render(self, rec: Record, fields: frozenset[str]) -> tuple[bytes, bool]:
        """The entity's JSON for `fields`, or a broken one when a `malformed` fault names it."""
        if rec.fqn in self.faults.malformed:
            return dumps(broken(rec.etype, json.loads(rec.render(fields)))).encode(), False
        return rec.render(fields), True

    # --- lineage ----------------------------------------------------------------------------------------
    def lineage(self, method: str, rest: list[str], q: Mapping[str, str], body: Any) -> Reply:
        """GET lineage by name or id; PUT an edge; DELETE an edge by names or ids."""
        cat = self.catalog
        if method == "PUT" and not rest:
            cat.put_lineage(body)
            return Reply(b"", 200, validate=False)
        if method == "DELETE" and len(rest) in (4, 6):
            by_name = len(rest) == 6
            if by_name and (rest[1] != "name" or rest[4] != "name"):
                raise SimError(404, "HTTP 404 Not Found")
            ft, fk, tt, tk = (rest[0], rest[2], rest[3], rest[5]) if by_name else tuple(rest)
            cat.delete_lineage(ft, fk, tt, tk, by_id=not by_name)
            return Reply(b"", 200, validate=False)
        if method != "GET" or len(rest) not in (2, 3):
            raise SimError(404, "HTTP 404 Not Found")
        etype = rest[0]
        if etype not in LINEAGE_TYPES:
            raise SimError(400, f"Invalid entity type {etype}")
        up = min(3, max(0, _int(q, "upstreamDepth", 1) or 0))
        down = min(3, max(0, _int(q, "downstreamDepth", 1) or 0))
        with cat.lock:
            if len(rest) == 3 and rest[1] == "name":
                rec = cat.get(etype, rest[2])
            elif len(rest) == 2:
                rec = cat.get(etype, rest[1], by_id=True)
            else:
                raise SimError(404, "HTTP 404 Not Found")
            return Reply(cat.lineage_json(rec, up, down))

    # --- event subscriptions (webhooks) ------------------------------------------------------------------
    def subscriptions(self, method: str, rest: list[str], body: Any) -> Reply:
        """`/v1/events/subscriptions`: create (POST), create or replace (PUT), list, get and delete."""
        subs = self.catalog.subscriptions
        with self.catalog.lock:  # the catalog's clock stamps `updatedAt`
            if not rest and method in ("POST", "PUT"):
                doc, status = subs.create(body, replace=method == "PUT")
                return Reply(dumps(doc).encode(), status, validate=False)
            if not rest and method == "GET":
                return Reply(dumps(subs.listing()).encode(), validate=False)
        by_name = len(rest) == 2 and rest[0] == "name"
        if len(rest) == 1 or by_name:
            key = rest[-1]
            if method == "GET":
                return Reply(dumps(subs.get(key, by_name=by_name)).encode(), validate=False)
            if method == "DELETE":
                return Reply(dumps(subs.delete(key, by_name=by_name)).encode(), validate=False)
            raise SimError(405, "HTTP 405 Method Not Allowed")
        raise SimError(404, "HTTP 404 Not Found")

    # --- data quality -----------------------------------------------------------------------------------
    def quality(self, method: str, rest: list[str], q: Mapping[str, str], body: Any) -> Reply:
        """Test cases, their results and incidents."""
        cat = self.catalog
        if rest and rest[0] == "testCaseResults" and len(rest) == 2:
            if method == "POST":
                return Reply(dumps(_post_result(cat, rest[1], body)).encode(), 201)
            with cat.lock:
                rows = cat.result_rows(rest[1], _int(q, "startTs", None), _int(q, "endTs", None))
                return Reply(dumps({"data": rows, "paging": {"total": len(rows)}}).encode())
        if rest and rest[0] == "testCaseIncidentStatus":
            return self.incidents(method, rest[1:], q, body)
        if not rest and method == "GET":
            with cat.lock:
                rows = cat.list_test_cases(_include(q), q)
                keys = [(r.name, r.id) for r in rows]
                return self.page("testCase", keys, rows, q)
        return self.collection("testCase", method, rest, q, body)

    def incidents(self, method: str, rest: list[str], q: Mapping[str, str], body: Any) -> Reply:
        cat = self.catalog
        if method == "POST" and not rest:
            return Reply(dumps(_post_incident(cat, body)).encode(), 201)
        if method != "GET":
            raise SimError(405, "HTTP 405 Method Not Allowed")
        with cat.lock:
            if not rest:
                rows = cat.incident_rows(q)
                offset = _int(q, "offset", 0) or 0
                limit = _int(q, "limit", 10)
                limit = 10 if limit is None else limit
                page = rows[offset : offset + limit]
                paging = {"offset": offset, "limit": limit, "total": len(rows)}
                return Reply(dumps({"data": page, "paging": paging}).encode())
            if len(rest) == 2 and rest[0] == "stateId":
                rows = cat.incident_history(rest[1])
                return Reply(dumps({"data": rows, "paging": {"total": len(rows)}}).encode())
            if len(rest) == 1:
                for row in cat.incidents:
                    if row["id"] == rest[0]:
                        return Reply(dumps(row).encode())
                raise SimError(404, f"testCaseResolutionStatus instance for {rest[0]} not found")
        raise SimError(404, "HTTP 404 Not Found")

    def pipeline_status(self, method: str, fqn: str, q: Mapping[str, str], body: Any) -> Reply:
        """`GET|PUT /v1/pipelines/{fqn}/status` (run history, or record a run)."""
        cat = self.catalog
        if method == "PUT":
            if not isinstance(body, dict) or "executionStatus" not in body or "timestamp" not in body:
                raise SimError(400, "pipelineStatus needs timestamp and executionStatus")
            doc = cat.set_pipeline_status(
                fqn, body["executionStatus"], task_status=body.get("taskStatus") or [], timestamp=int(body["timestamp"])
            )
            return Reply(dumps(doc).encode())
        if method != "GET":
            raise SimError(405, "HTTP 405 Method Not Allowed")
        with cat.lock:
            rows = cat.pipeline_status_rows(fqn, _int(q, "startTs", None), _int(q, "endTs", None))
            return Reply(dumps({"data": rows, "paging": {"total": len(rows)}}).encode())


def _include(q: Mapping[str, str]) -> str:
    include = q.get("include") or "non-deleted"
    if include not in INCLUDE_VALUES:
        raise SimError(400, f"query param include must be one of {list(INCLUDE_VALUES)}")
    return include


def _retry_after(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _post_result(cat: Catalog, fqn: str, body: Any) -> dict[str, Any]:
    """`POST /v1/dataQuality/testCases/testCaseResults/{fqn}` with a createTestCaseResult body."""
    if not isinstance(body, dict) or "timestamp" not in body or "testCaseStatus" not in body:
        raise SimError(400, "testCaseResult needs timestamp and testCaseStatus")
    if body["testCaseStatus"] not in ("Success", "Failed", "Aborted", "Queued"):
        raise SimError(400, f"Invalid testCaseStatus {body['testCaseStatus']}")
    skip = {"fqn", "timestamp", "testCaseStatus", "result", "testResultValue", "incidentId"}
    return cat.add_test_result(
        fqn,
        body["testCaseStatus"],
        result=body.get("result"),
        values=body.get("testResultValue") or [],
        timestamp=int(body["timestamp"]),
        extra={k: v for k, v in body.items() if k not in skip},
    )


def _post_incident(cat: Catalog, body: Any) -> dict[str, Any]:
    """`POST /v1/dataQuality/testCases/testCaseIncidentStatus` (createTestCaseResolutionStatus)."""
    if not isinstance(body, dict) or not body.get("testCaseResolutionStatusType") or not body.get("testCaseReference"):
        raise SimError(400, "testCaseResolutionStatusType and testCaseReference are required")
    details = body.get("testCaseResolutionStatusDetails") or {}
    assignee = details.get("assignee") or {}
    name = assignee.get("name")
    if not name and assignee.get("id"):
        rec = cat.records.get(assignee["id"])
        name = rec.name if rec is not None else None
    return cat.add_incident_status(
        str(body["testCaseReference"]),
        body["testCaseResolutionStatusType"],
        assignee=name,
        severity=body.get("severity"),
        reason=details.get("testCaseFailureReason"),
        comment=details.get("testCaseFailureComment"),
    )


def create_app(
    catalog: Catalog,
    *,
    token: str = "sim-token",
    validator: Validator | None = None,
    version: str = "1.13.6",
) -> Starlette:
    """The ASGI app serving `catalog` (bearer `token`; `validator(path, payload)` sees every OM response)."""
    sim = Simulator(catalog, token=token, validator=validator, version=version)
    app = Starlette(routes=[Route("/{path:path}", sim.endpoint, methods=METHODS)])
    app.state.simulator = sim
    app.state.catalog = catalog
    app.state.faults = sim.faults
    return app
