"""The simulator's ASGI app: OpenMetadata REST routes with one version's exact shapes and rules, over a Catalog.

`create_app(catalog, version=…)` serves the version's profile (`storage.openmetadata.versions.profile_for`): the
`fields=`
each entity accepts and how it is rendered (`simulator.fields`), the incident rules, the 2.0 lineage events
and audit log. An unsupported version is refused with the one sentence `profile_for` raises.
"""

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

from simulator import admin, dq_routes, search_lineage
from simulator.admin import JSON, error_response
from simulator.audit import AUDIT_LOG_SINCE
from simulator.cascade import CONTAINER_COLLECTIONS
from simulator.catalog import Catalog
from simulator.faults import FaultInjector, broken
from simulator.fields import view_for
from simulator.records import COLLECTIONS, Record, SimError, dumps
from simulator.reply import Reply, bool_param, include_param, int_param
from storage.openmetadata.versions import profile_for

Validator = Callable[[str, Any], None]
LINEAGE_TYPES = frozenset({"table", "dashboard", "pipeline", "topic", "dashboardDataModel", "chart"})
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class Simulator:
    """Routes one request to the catalog; `endpoint` is the single Starlette route."""

    def __init__(self, catalog: Catalog, *, token: str, validator: Validator | None, version: str) -> None:
        self.profile = profile_for(version)
        self.view = view_for(self.profile)
        self.token = token
        self.validator = validator
        self.version = {"version": version, "revision": "simulator", "timestamp": int(time.time() * 1000)}
        self.faults = FaultInjector()
        self._auth = f"Bearer {token}"
        self.attach(catalog)

    def attach(self, catalog: Catalog) -> None:
        """Serve `catalog` from now on, under this app's version."""
        self.catalog = catalog
        catalog.set_profile(self.profile)

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
        fault = self.faults.match(method, path, segments)
        if fault is not None:
            if fault.delay_seconds:
                await asyncio.sleep(fault.delay_seconds)
            if fault.body is not None:  # what a broken proxy or cache might hand back instead of the answer
                raw = fault.body if isinstance(fault.body, str) else dumps(fault.body)
                return Response(raw.encode(), fault.status or 200, media_type=JSON)
            if fault.status is not None:
                headers = {"Retry-After": _retry_after(fault.retry_after)} if fault.retry_after is not None else {}
                return error_response(fault.status, fault.message_for(segments), headers)
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
                return Reply(self.catalog.events_json(q, int_param(q, "timestamp", 0) or 0))
        if seg == ["audit", "logs"] and method == "GET":
            if self.profile.release < AUDIT_LOG_SINCE:
                raise SimError(404, "HTTP 404 Not Found")
            with self.catalog.lock:  # no JSON Schema of an audit entry ships with OM: served unvalidated
                return Reply(dumps(self.catalog.audit.listing(q)).encode(), validate=False)
        if seg[:2] == ["events", "subscriptions"]:
            return self.subscriptions(method, seg[2:], body)
        if head == "lineage":
            return self.lineage(method, seg[1:], q, body)
        if seg[:2] == ["dataQuality", "testCases"]:
            return dq_routes.quality(self, method, seg[2:], q, body)
        for collection, container in CONTAINER_COLLECTIONS.items():
            parts = collection.split("/")
            if method == "DELETE" and seg[: len(parts)] == parts:
                return self.delete(container, seg[len(parts) :], q)
        if seg[:2] == ["dashboard", "datamodels"]:
            return self.collection("dashboardDataModel", method, seg[2:], q, body)
        if head in COLLECTIONS and head != "dataQuality":
            return self.collection(COLLECTIONS[head], method, seg[1:], q, body)
        raise SimError(404, "HTTP 404 Not Found")

    def collection(self, etype: str, method: str, rest: list[str], q: Mapping[str, str], body: Any) -> Reply:
        """List, get by name or id, versions; plus pipeline run status."""
        if etype == "pipeline" and len(rest) == 2 and rest[1] == "status":
            return dq_routes.pipeline_status(self, method, rest[0], q, body)
        if method == "DELETE" and rest:
            return self.delete(etype, rest, q)
        if method != "GET":
            raise SimError(405, "HTTP 405 Method Not Allowed")
        if not rest:
            filters = tuple((k, q[k]) for k in ("service", "database", "databaseSchema") if q.get(k))
            with self.catalog.lock:
                keys, rows = self.catalog.sorted_rows(etype, include_param(q), filters)
                return self.page(etype, keys, rows, q)
        if rest[0] == "name" and len(rest) == 2:
            return self.one(etype, rest[1], q, by_id=False)
        if len(rest) == 1:
            return self.one(etype, rest[0], q, by_id=True)
        if rest[1] == "versions":
            with self.catalog.lock:
                rec = self.catalog.get(etype, rest[0], by_id=True, include="all")
                if len(rest) == 2:
                    shaped = [self.view_doc(etype, json.loads(v)).decode() for v in self.catalog.versions(rec)]
                    return Reply(dumps({"entityType": etype, "versions": shaped}).encode())
                if len(rest) == 3:
                    return Reply(self.view_doc(etype, json.loads(self.catalog.version(rec, rest[2]))))
        raise SimError(404, "HTTP 404 Not Found")

    def delete(self, etype: str, rest: list[str], q: Mapping[str, str]) -> Reply:
        """`DELETE /v1/{collection}/{id}` or `…/name/{fqn}`, with `recursive` and `hardDelete`."""
        if len(rest) == 2 and rest[0] == "name":
            key, by_id = rest[1], False
        elif len(rest) == 1:
            key, by_id = rest[0], True
        else:
            raise SimError(404, "HTTP 404 Not Found")
        recursive, hard = bool_param(q, "recursive"), bool_param(q, "hardDelete")
        doc = self.catalog.delete_entity(etype, key, by_id=by_id, recursive=recursive, hard=hard)
        return Reply(self.view_doc(etype, doc))

    def view_doc(self, etype: str, doc: dict[str, Any]) -> bytes:
        """An entity as this version shows it with every field (what a write answers)."""
        return dumps(self.view.render(etype, doc, self.view.all_fields(etype))).encode()

    def page(self, etype: str, keys: list[tuple[str, str]], rows: list[Record], q: Mapping[str, str]) -> Reply:
        """One `{data, paging}` page, entities rendered for `fields`."""
        limit = int_param(q, "limit", 10)
        if limit is None or limit < 0 or limit > 1_000_000:
            raise SimError(400, "query param limit must be between 0 and 1000000")
        fields = self.view.parse_fields(etype, q.get("fields"))
        chunk, paging = self.catalog.page(keys, rows, limit=limit, after=q.get("after"), before=q.get("before"))
        parts = [self.render(r, fields) for r in chunk]
        ok = all(p[1] for p in parts)
        body = b'{"data":[' + b",".join(p[0] for p in parts) + b'],"paging":' + dumps(paging).encode() + b"}"
        return Reply(body, validate=ok)

    def one(self, etype: str, key: str, q: Mapping[str, str], *, by_id: bool) -> Reply:
        fields = self.view.parse_fields(etype, q.get("fields"))
        with self.catalog.lock:
            rec = self.catalog.get(etype, key, by_id=by_id, include=include_param(q))
            raw, ok = self.render(rec, fields)
            return Reply(raw, validate=ok)

    def render(self, rec: Record, fields: frozenset[str]) -> tuple[bytes, bool]:
        """The entity's JSON for `fields`, or a broken one when a `malformed` fault names it."""
        if rec.fqn in self.faults.malformed:
            return dumps(broken(rec.etype, json.loads(rec.render(self.view, fields)))).encode(), False
        return rec.render(self.view, fields), True

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
        if method == "GET" and rest in (["getPlatformLineage"], ["getLineage"]):  # search-backed, 1.7+
            return search_lineage.route(self, rest[0], q)
        if method != "GET" or len(rest) not in (2, 3):
            raise SimError(404, "HTTP 404 Not Found")
        etype = rest[0]
        if etype not in LINEAGE_TYPES:
            raise SimError(400, f"Invalid entity type {etype}")
        up = min(3, max(0, int_param(q, "upstreamDepth", 1) or 0))
        down = min(3, max(0, int_param(q, "downstreamDepth", 1) or 0))
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


def _retry_after(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


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
    app.state.profile = sim.profile
    app.state.faults = sim.faults
    return app
