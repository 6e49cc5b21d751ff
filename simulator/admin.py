"""The simulator's admin API (not part of OM): mutate the catalog and inject faults, under `/admin/`.

Routes (bearer auth as for OM; FQNs and column names percent-encoded as one path segment):

| method | path | body |
|---|---|---|
| POST | /admin/tables | compact table `{"fqn", "columns", ...}` (entityCreated) |
| POST | /admin/tables/{fqn}/columns | a column `{"name", "dataType", ...}` |
| DELETE | /admin/tables/{fqn}/columns/{name} | |
| POST | /admin/tables/{fqn}/columns/{name}/rename | `{"newName"}` |
| POST | /admin/tables/{fqn}/columns/{name}/retype | `{"dataType", "dataTypeDisplay"?, "dataLength"?}` |
| POST | /admin/tables/{fqn}/columns/{name}/constraint | `{"constraint": str or null}` |
| POST | /admin/tables/{fqn}/columns/{name}/description | `{"description": str or null}` |
| PUT | /admin/entities/{type}/{fqn}/owners | `{"owners": [user or team names]}` |
| PUT | /admin/entities/{type}/{fqn}/tags | `{"tags": [tag FQNs]}` |
| PUT | /admin/entities/{type}/{fqn}/description | `{"description": str or null}` |
| DELETE | /admin/entities/{type}/{fqn} | (soft delete), or `{"recursive"?, "hardDelete"?}` (or as query params) |
| POST | /admin/entities/{type}/{fqn}/restore | |
| POST, DELETE | /admin/lineage | `{"from", "to", "fromType"?, "toType"?, "columns"?, "pipeline"?, "sqlQuery"?}` |
| POST | /admin/pipelines/{fqn}/status | `{"executionStatus", "taskStatus"?: {task: status} or [...], "timestamp"?}` |
| POST | /admin/tests/{testCaseFQN}/result | `{"status", "result"?, "values"?: {name: value}, "timestamp"?}` |
| POST | /admin/tests/{testCaseFQN}/incident | `{"status", "assignee"?, "severity"?, "reason"?, "comment"?}` |
| GET, POST, DELETE | /admin/faults | a fault spec (below); DELETE clears them all |
| GET | /admin/catalog | (entity counts, event count, last timestamp) |

A fault spec: `{"path_regex"?, "method"?, "status"?, "times"?, "delay_seconds"?, "retry_after"?, "message"?}`
(matching OM requests get `status` after the delay, `times` times, 429 + `Retry-After` when only
`retry_after` is given), or `{"malformed": FQN}` to serve that entity with a broken shape. `"lineage_of": FQN or
[FQNs]` narrows a fault to `GET /v1/lineage/{type}/name/{fqn}` of those entities (a 404 then says what OM says,
`<type> instance for <fqn> not found`); `"body"` (JSON, or a string sent as is) is served instead of the real
answer, with `status` (default 200): a wrong-shaped or unparsable 200.

A delete with `recursive` or `hardDelete`, or of a `database`, `databaseSchema` or service, is the cascade of
`DELETE /api/v1/{collection}/{id}`: children removed with the root, one ChangeEvent for the root only.

Every body may carry `"user"` (default `admin`), recorded as `updatedBy` / the event's `userName`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from simulator.cascade import CONTAINER_TYPES
from simulator.compact import add_edge_spec, clock_date, table_args
from simulator.records import SimError, dumps

if TYPE_CHECKING:
    from simulator.app import Simulator
    from simulator.catalog import Catalog

JSON = "application/json"


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """OM's error body `{"code", "message"}` with the `WWW-Authenticate: om-auth` header."""
    body = dumps({"code": status, "message": message}).encode()
    return Response(body, status, headers={"WWW-Authenticate": "om-auth", **(headers or {})}, media_type=JSON)


async def handle(sim: Simulator, request: Request, seg: list[str]) -> Response:
    """Serve one admin request (`seg` is the path after `/admin/`, decoded)."""
    body: Any = {}
    data = await request.body()
    if data:
        try:
            body = json.loads(data)
        except ValueError:
            return error_response(400, "Unable to process JSON")
    if not isinstance(body, dict):
        return error_response(400, "the admin body must be a JSON object")
    for key, value in request.query_params.items():
        body.setdefault(key, value)
    try:
        result = dispatch(sim, request.method, seg, body)
    except SimError as exc:
        return error_response(exc.status, exc.message)
    except (KeyError, TypeError, ValueError) as exc:
        return error_response(400, f"bad admin request: {exc!r}")
    return Response(dumps(result).encode(), 200, media_type=JSON)


def dispatch(sim: Simulator, method: str, seg: list[str], body: dict[str, Any]) -> Any:
    """Route an admin call to the Catalog method that does it."""
    cat = sim.catalog
    by = str(body.get("user") or "admin")
    head = seg[0] if seg else ""
    if head == "faults" and len(seg) == 1:
        if method == "POST":
            return sim.faults.add(body)
        if method == "DELETE":
            sim.faults.clear()
            return {"faults": [], "malformed": []}
        return sim.faults.describe()
    if head == "catalog" and method == "GET":
        with cat.lock:
            return {
                "counts": cat.counts(),
                "events": len(cat.events),
                "lastTimestamp": cat.events[-1][0] if cat.events else None,
            }
    if head == "tables":
        return _tables(cat, method, seg[1:], body, by)
    if head == "entities" and len(seg) >= 3:
        return _entities(cat, method, seg[1], seg[2], seg[3:], body, by)
    if head == "lineage" and len(seg) == 1:
        return _lineage(cat, method, body)
    if head == "pipelines" and len(seg) == 3 and seg[2] == "status" and method == "POST":
        return cat.set_pipeline_status(
            seg[1], body["executionStatus"], task_status=body.get("taskStatus"), timestamp=body.get("timestamp"), by=by
        )
    if head == "tests" and len(seg) == 3 and method == "POST":
        if seg[2] == "result":
            values = body.get("values") or {}
            if isinstance(values, dict):
                values = [{"name": k, "value": str(v)} for k, v in values.items()]
            return cat.add_test_result(
                seg[1], body["status"], result=body.get("result"), values=values, timestamp=body.get("timestamp"), by=by
            )
        if seg[2] == "incident":
            return cat.add_incident_status(
                seg[1],
                body["status"],
                assignee=body.get("assignee"),
                severity=body.get("severity"),
                reason=body.get("reason"),
                comment=body.get("comment"),
                by=by,
            )
    raise SimError(404, f"no admin route {method} /admin/{'/'.join(seg)}")


def _tables(cat: Catalog, method: str, seg: list[str], body: dict[str, Any], by: str) -> Any:
    if not seg and method == "POST":
        parts, kwargs = table_args(body, clock_date(cat))
        return cat.create_table(*parts, **kwargs)
    if len(seg) < 2 or seg[1] != "columns":
        raise SimError(404, "no such admin table route")
    fqn = seg[0]
    if len(seg) == 2 and method == "POST":
        column = body.get("column", body)
        return cat.add_column(fqn, {k: v for k, v in column.items() if k != "user"}, by=by)
    if len(seg) == 3 and method == "DELETE":
        return cat.drop_column(fqn, seg[2], by=by)
    if len(seg) == 4 and method in ("POST", "PUT"):
        name, action = seg[2], seg[3]
        if action == "rename":
            return cat.rename_column(fqn, name, body["newName"], by=by)
        if action == "retype":
            return cat.retype_column(
                fqn,
                name,
                body["dataType"],
                data_type_display=body.get("dataTypeDisplay"),
                data_length=body.get("dataLength"),
                by=by,
            )
        if action == "constraint":
            return cat.set_column_constraint(fqn, name, body.get("constraint"), by=by)
        if action == "description":
            return cat.set_column_description(fqn, name, body.get("description"), by=by)
    raise SimError(404, "no such admin column route")


def _entities(cat: Catalog, method: str, etype: str, fqn: str, rest: list[str], body: dict[str, Any], by: str) -> Any:
    if not rest and method == "DELETE":
        recursive, hard = _flag(body, "recursive"), _flag(body, "hardDelete")
        if recursive or hard or etype in CONTAINER_TYPES:
            return cat.delete_entity(etype, fqn, recursive=recursive, hard=hard, by=by)
        return cat.soft_delete(etype, fqn, by=by)
    if rest == ["restore"] and method in ("POST", "PUT"):
        return cat.restore(etype, fqn, by=by)
    if rest == ["owners"] and method in ("PUT", "POST"):
        return cat.set_owners(etype, fqn, body.get("owners") or [], by=by)
    if rest == ["tags"] and method in ("PUT", "POST"):
        return cat.set_tags(etype, fqn, body.get("tags") or [], by=by)
    if rest == ["description"] and method in ("PUT", "POST"):
        return cat.set_description(etype, fqn, body.get("description"), by=by)
    raise SimError(404, "no such admin entity route")


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    return value is True or str(value).lower() == "true"


def _lineage(cat: Catalog, method: str, body: dict[str, Any]) -> Any:
    if method == "POST":
        return add_edge_spec(cat, body)
    if method == "DELETE":
        cat.remove_edge(body["from"], body["to"], from_type=body.get("fromType"), to_type=body.get("toType"))
        return {"deleted": True}
    raise SimError(405, "HTTP 405 Method Not Allowed")
