"""The simulator's data-quality routes: test cases, their results, incidents, and pipeline runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from simulator.paging import decode_offset, offset_paging
from simulator.records import SimError, dumps
from simulator.reply import Reply, include_param, int_param

if TYPE_CHECKING:
    from simulator.app import Simulator
    from simulator.catalog import Catalog

SEVERITIES = ("Severity1", "Severity2", "Severity3", "Severity4", "Severity5")


def quality(sim: Simulator, method: str, rest: list[str], q: Mapping[str, str], body: Any) -> Reply:
    """`/v1/dataQuality/testCases…`: results, incidents, then the test cases themselves."""
    cat = sim.catalog
    if rest and rest[0] == "testCaseResults" and len(rest) == 2:
        if method == "POST":
            return Reply(dumps(_post_result(cat, rest[1], body)).encode(), 201)
        with cat.lock:
            rows = cat.result_rows(rest[1], int_param(q, "startTs", None), int_param(q, "endTs", None))
            return Reply(dumps({"data": rows, "paging": {"total": len(rows)}}).encode())
    if rest and rest[0] == "testCaseIncidentStatus":
        return incidents(sim, method, rest[1:], q, body)
    if not rest and method == "GET":
        with cat.lock:
            cases = cat.list_test_cases(include_param(q), q)
            keys = [(r.name, r.id) for r in cases]
            return sim.page("testCase", keys, cases, q)
    return sim.collection("testCase", method, rest, q, body)


def incidents(sim: Simulator, method: str, rest: list[str], q: Mapping[str, str], body: Any) -> Reply:
    """`/v1/dataQuality/testCases/testCaseIncidentStatus`: post a status, list (cursor-paged), one incident."""
    cat = sim.catalog
    if method == "POST" and not rest:
        return Reply(dumps(_post_incident(cat, body)).encode(), 201)
    if method != "GET":
        raise SimError(405, "HTTP 405 Method Not Allowed")
    with cat.lock:
        if not rest:
            limit = int_param(q, "limit", 10)
            if limit is None or not 0 <= limit <= 1_000_000:
                raise SimError(400, "query param limit must be between 0 and 1000000")
            offset = decode_offset(q.get("offset"))  # an opaque cursor: `paging.after` of the previous page
            rows = cat.incident_rows(q)
            page = {"data": rows[offset : offset + limit], "paging": offset_paging(offset, limit, len(rows))}
            return Reply(dumps(page).encode())
        if len(rest) == 2 and rest[0] == "stateId":
            rows = cat.incident_history(rest[1])
            return Reply(dumps({"data": rows, "paging": {"total": len(rows)}}).encode())
        if len(rest) == 1:
            for row in cat.incidents:
                if row["id"] == rest[0]:
                    return Reply(dumps(row).encode())
            raise SimError(404, f"testCaseResolutionStatus instance for {rest[0]} not found")
    raise SimError(404, "HTTP 404 Not Found")


def pipeline_status(sim: Simulator, method: str, fqn: str, q: Mapping[str, str], body: Any) -> Reply:
    """`GET|PUT /v1/pipelines/{fqn}/status` (run history, or record a run)."""
    cat = sim.catalog
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
        rows = cat.pipeline_status_rows(fqn, int_param(q, "startTs", None), int_param(q, "endTs", None))
        return Reply(dumps({"data": rows, "paging": {"total": len(rows)}}).encode())


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
    severity = body.get("severity")
    if severity is not None and severity not in SEVERITIES:
        raise SimError(400, f"Invalid severity {severity}")
    details = body.get("testCaseResolutionStatusDetails") or {}
    if not isinstance(details, dict):
        raise SimError(400, "testCaseResolutionStatusDetails must be an object")
    for key in ("assignee", "resolvedBy"):
        if details.get(key) is not None and not isinstance(details[key], dict):
            raise SimError(400, f"testCaseResolutionStatusDetails.{key} must be an EntityReference")
    return cat.add_incident_status(
        str(body["testCaseReference"]),
        body["testCaseResolutionStatusType"],
        assignee=details.get("assignee"),
        resolved_by=details.get("resolvedBy"),
        severity=severity,
        reason=details.get("testCaseFailureReason"),
        comment=details.get("testCaseFailureComment"),
        from_request=True,
    )
