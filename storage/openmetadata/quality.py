"""The data-quality half of the OpenMetadata client: test cases, results, incidents and the careful write-back.

A mixin of `OpenMetadataClient` (storage/openmetadata/client.py), which owns the HTTP session, paging and lenient
parsing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from storage.errors import OMNotFound, OpenMetadataError
from storage.openmetadata.fqn import url_segment
from storage.openmetadata.http import split_page
from storage.openmetadata.models import TestCase, TestCaseResolutionStatus, TestCaseResult

if TYPE_CHECKING:
    from typing import TypeVar

    from pydantic import BaseModel

    from storage.openmetadata.http import OMHttp, QueryParams
    from storage.openmetadata.versions import Profile

    M = TypeVar("M", bound=BaseModel)

INCLUDE = "non-deleted"


class QualityMixin:
    """Test cases, their results and Incident Manager states (`self` is an `OpenMetadataClient`)."""

    if TYPE_CHECKING:  # what the mixin uses of its host, `OpenMetadataClient` (storage/openmetadata/client.py)
        _http: OMHttp
        page_size: int

        @property
        def base_url(self) -> str: ...
        async def version_profile(self) -> Profile: ...
        def _iter_cursor(self, path: str, params: QueryParams, model: type[M], kind: str) -> AsyncIterator[M]: ...
        def _parse(self, model: type[M], kind: str, raw: Any) -> M | None: ...

    # ---- data quality ---------------------------------------------------------------------------------
    async def iter_test_cases(self, table_fqn: str | None = None) -> AsyncIterator[TestCase]:
        """Every non-deleted test case (or one table's, its columns' included) with its latest result and open
        incident id; malformed ones skipped."""
        fields = (await self.version_profile()).fields("testCase")
        params: dict[str, Any] = {"fields": fields, "include": INCLUDE, "limit": self.page_size}
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
        self, start_ts: int, end_ts: int, latest: bool = True, *, test_fqn: str | None = None
    ) -> list[TestCaseResolutionStatus]:
        """Incident (test case resolution) statuses in a window; `latest` keeps one row per `stateId`.

        The list pages with an opaque cursor: the first page sends no `offset`, and each answer's `paging.after`
        goes back unchanged as the next `offset` (a plain number is a 400 on a real server).
        """
        path = "v1/dataQuality/testCases/testCaseIncidentStatus"
        params: dict[str, Any] = {"startTs": start_ts, "endTs": end_ts, "latest": latest, "limit": self.page_size}
        if test_fqn is not None:
            params["testCaseFQN"] = test_fqn
        out: list[TestCaseResolutionStatus] = []
        seen_cursors: set[str] = set()
        while True:
            data, paging = split_page(await self._http.get_json(path, params), path)
            out.extend(s for raw in data if (s := self._parse(TestCaseResolutionStatus, "incidentStatus", raw)))
            after = paging.get("after")
            if not data or not isinstance(after, str) or not after:
                return out
            if after in seen_cursors:
                raise OpenMetadataError(f"OpenMetadata repeated a paging cursor on GET /{path}")
            seen_cursors.add(after)
            params["offset"] = after

    async def incident_history(self, state_id: str) -> list[TestCaseResolutionStatus]:
        """Every status of one incident (`stateId`), oldest first."""
        path = f"v1/dataQuality/testCases/testCaseIncidentStatus/stateId/{url_segment(state_id)}"
        data, _ = split_page(await self._http.get_json(path), path)
        rows = [s for raw in data if (s := self._parse(TestCaseResolutionStatus, "incidentStatus", raw))]
        return sorted(rows, key=lambda r: (r.timestamp or 0, r.updatedAt or 0))

    async def current_incident(self, test_fqn: str) -> TestCaseResolutionStatus | None:
        """The newest status of the test case's latest incident, or None when it never had one."""
        path = f"v1/dataQuality/testCases/name/{url_segment(test_fqn)}"
        body = await self._http.get_json(path, {"fields": "incidentId", "include": INCLUDE})
        state_id = body.get("incidentId") if isinstance(body, dict) else None
        if isinstance(state_id, str) and state_id:
            history = await self.incident_history(state_id)
            if history:
                return history[-1]
        # resolved incidents may no longer be linked from the test case: look for its newest status
        now_ms = int(time.time() * 1000)
        rows = await self.incident_statuses(now_ms - 90 * 86_400_000, now_ms + 86_400_000, test_fqn=test_fqn)
        return max(rows, key=lambda r: (r.timestamp or 0, r.updatedAt or 0), default=None)

    async def user_ref(self, name: str) -> dict[str, Any] | None:
        """The full EntityReference of the OpenMetadata user `name` (`GET /v1/users/name/{name}`), None if unknown.

        Released servers resolve an assignee or `resolvedBy` by its `id`; a name alone is refused."""
        try:
            body = await self._http.get_json(f"v1/users/name/{url_segment(name)}")
        except OMNotFound:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise OpenMetadataError(f"OpenMetadata answered GET /v1/users/name/{name} without a user id")
        ref = {"id": body["id"], "type": "user", "name": body.get("name") or name}
        ref["fullyQualifiedName"] = body.get("fullyQualifiedName") or ref["name"]
        return ref

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
    ) -> IncidentWrite:
        """Add an Ack / Assigned / Resolved status to the open incident of test case `test_fqn`, when it makes sense.

        The current state is read first: on OpenMetadata an Ack or Assigned after Resolved opens a NEW incident,
        so nothing is written when the incident is already resolved there (or already in that state). People are
        sent as full user references (looked up by name). `reason` is ours (fixed, false_positive, duplicate,
        other) or already an OM failure reason.
        """
        if status not in INCIDENT_WRITE_STATES:
            raise ValueError(f"incident status must be one of {', '.join(INCIDENT_WRITE_STATES)}, not {status!r}")
        current = await self.current_incident(test_fqn)
        skip = _skip_reason(current, status, assignee)
        if skip is not None:
            return IncidentWrite(None, current, skip)
        assignee_ref = resolver_ref = None
        if status == "Assigned":
            assignee_ref = await self.user_ref(assignee or "")
            if assignee_ref is None:
                raise OMNotFound(f"OpenMetadata has no user {assignee!r} to assign the incident to", status=404)
        if status == "Resolved" and resolved_by:
            resolver_ref = await self.user_ref(resolved_by)  # unknown: OpenMetadata records the bot
        body = incident_status_body(
            test_fqn,
            status,
            assignee=assignee_ref,
            reason=reason,
            comment=comment,
            severity=severity,
            resolved_by=resolver_ref,
        )
        path = "v1/dataQuality/testCases/testCaseIncidentStatus"
        answer = await self._http.post_json(path, body)
        try:
            written = TestCaseResolutionStatus.model_validate(answer)
        except ValidationError:
            raise OpenMetadataError(
                f"OpenMetadata answered POST /{path} without an incident status", url=self.base_url + path
            ) from None
        return IncidentWrite(written, current, None)


INCIDENT_WRITE_STATES = ("Ack", "Assigned", "Resolved")
FAILURE_REASONS = ("FalsePositive", "MissingData", "Duplicates", "OutOfBounds", "Other")
REASON_TO_OM = {"fixed": "Other", "false_positive": "FalsePositive", "duplicate": "Duplicates", "other": "Other"}


def failure_reason(reason: str | None) -> str:
    """Our resolve reason as an OpenMetadata `testCaseFailureReason` (unknown or absent → `Other`)."""
    if reason in FAILURE_REASONS:
        return reason
    return REASON_TO_OM.get((reason or "").strip().lower(), "Other")


@dataclass(frozen=True, slots=True)
class IncidentWrite:
    """What a write-back did: the status written, or why nothing was (`skipped`), and the state it found."""

    written: TestCaseResolutionStatus | None
    found: TestCaseResolutionStatus | None
    skipped: str | None

    @property
    def already(self) -> bool:
        """OpenMetadata already shows what was asked (nothing worth telling anyone)."""
        return bool(self.skipped and self.skipped.startswith(ALREADY))


ALREADY = "OpenMetadata already shows this"


def _skip_reason(current: TestCaseResolutionStatus | None, status: str, assignee: str | None) -> str | None:
    """Why writing `status` over `current` would be wrong (None when it should be written)."""
    if current is None:
        return "OpenMetadata has no incident for this test case"
    state = current.testCaseResolutionStatusType
    if state == "Resolved":
        if status == "Resolved":
            return f"{ALREADY}: resolved"
        return f"the incident is already resolved in OpenMetadata; {status} would open a new incident there"
    if status == state == "Ack":
        return f"{ALREADY}: acknowledged"
    if status == state == "Assigned":
        details = current.testCaseResolutionStatusDetails or {}
        who = details.get("assignee") if isinstance(details, dict) else None
        if isinstance(who, dict) and assignee and assignee in (who.get("name"), who.get("fullyQualifiedName")):
            return f"{ALREADY}: assigned to {assignee}"
    if status == "Ack" and state == "Assigned":
        return "the incident is already assigned in OpenMetadata (an Ack would move it back)"
    return None


def incident_status_body(
    test_fqn: str,
    status: str,
    *,
    assignee: dict[str, Any] | None = None,
    reason: str | None = None,
    comment: str | None = None,
    severity: str | None = None,
    resolved_by: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `CreateTestCaseResolutionStatus` body of one Ack / Assigned / Resolved status (people as full refs)."""
    if status not in INCIDENT_WRITE_STATES:
        raise ValueError(f"incident status must be one of {', '.join(INCIDENT_WRITE_STATES)}, not {status!r}")
    body: dict[str, Any] = {"testCaseResolutionStatusType": status, "testCaseReference": test_fqn}
    if status == "Assigned":
        if not assignee or not assignee.get("id"):
            raise ValueError("an Assigned status needs the assignee's user reference (with its id)")
        body["testCaseResolutionStatusDetails"] = {"assignee": assignee}
    elif status == "Resolved":
        details: dict[str, Any] = {
            "testCaseFailureReason": failure_reason(reason),
            "testCaseFailureComment": comment or "",
        }
        if resolved_by:
            details["resolvedBy"] = resolved_by
        body["testCaseResolutionStatusDetails"] = details
    if severity:
        body["severity"] = severity
    return body
