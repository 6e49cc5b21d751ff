"""Incidents (test case resolution statuses) as each OpenMetadata version records them.

Rules, from `TestCaseResolutionStatusRepository.storeInternal` and `TestCaseResolutionStatusMapper`
(openmetadata-service `jdbi3/`, `resources/dqtests/`; docs/openmetadata-versions.md has the details):
- a status joins the open incident (same `stateId`, severity inherited); with no open incident, Ack, Assigned and
  Resolved start a new one (a fresh `stateId`), and New while one is open is not stored;
- before 1.7 (`validateStatus`, removed by PR #20585) an open incident cannot go back: Assigned → Ack or New and
  Ack → New answer 400 `Incident with status [X] cannot be moved to [Y]`;
- the assignee (and `resolvedBy`) is resolved by id; only 2.0's mapper also accepts a name alone;
- a test case's `incidentId` is its latest result's stamp on 1.x (`TestCaseRepository.getIncidentId`), so it stays
  on a resolved incident; 2.0 derives it from the incident timeline (the open incident, or none).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from simulator.entities import EntitiesMixin
from simulator.records import Record, SimError, stable_id
from storage.openmetadata import fqn as fqnlib

INCIDENT_TYPES = ("New", "Ack", "Assigned", "Resolved")
FAILURE_REASONS = ("FalsePositive", "MissingData", "Duplicates", "OutOfBounds", "Other")
FLOW_CHECK_UNTIL = (1, 7)  # `validateStatus` is in the 1.3–1.6 repositories, gone once PR #20585 (2025-04) landed
NAMES_ACCEPTED_SINCE = (2, 0)  # the newest mapper's `resolveAssignee` takes a name; released 1.x need the id
TIMELINE_INCIDENT_ID_SINCE = (2, 0)  # PR #30182: "on 2.0 ... it derives incidentId from the incident timeline"
PersonSpec = str | Mapping[str, Any] | None


class IncidentsMixin(EntitiesMixin):
    """The `testCaseIncidentStatus` time series; `open_incidents` maps a test case FQN to its unresolved stateId."""

    # --- people -----------------------------------------------------------------------------------------
    def _user_ref(self, name: str) -> dict[str, Any]:
        rec = self.find("user", name)
        if rec is not None:
            return rec.ref()
        return {"id": stable_id("user", name), "type": "user", "name": name, "fullyQualifiedName": name}

    def person_ref(self, spec: PersonSpec, role: str = "assignee") -> dict[str, Any] | None:
        """A user or team reference from a request (by id; by name only where the version resolves names).

        A plain string is a name given through the admin API or a seed: looked up by name (an unknown
        `resolvedBy` is made up, as the acting user of a seed may be no catalog user)."""
        if spec is None:
            return None
        if isinstance(spec, str):
            rec = self.find("user", spec) or self.find("team", spec)
            if rec is None and role == "assignee":
                raise SimError(404, f"user instance for {spec} not found")
            return rec.ref() if rec is not None else self._user_ref(spec)
        etype = str(spec.get("type") or "user")
        if etype not in ("user", "team"):
            raise SimError(400, f"Invalid {role} type '{etype}'. Must be one of [user, team]")
        if spec.get("id"):
            rec = self.records.get(str(spec["id"]))
            if rec is None or rec.etype != etype:
                raise SimError(404, f"{etype} instance for {spec['id']} not found")
            return rec.ref()
        name = spec.get("name")
        if not name or self.profile.release < NAMES_ACCEPTED_SINCE:
            # released 1.x servers look the reference up by its id, which is null here
            raise SimError(404, f"{etype} instance for null not found")
        wanted = fqnlib.quote_name(str(name).lower() if etype == "user" else str(name))
        rec = self.find(etype, wanted) or self.find(etype, str(name))
        if rec is None:
            raise SimError(404, f"{etype} instance for {wanted} not found")
        return rec.ref()

    # --- rows -------------------------------------------------------------------------------------------
    def _new_incident(self, rec: Record, ts: int, *, by: str, severity: str | None = None) -> dict[str, Any]:
        state_id = str(uuid.uuid4())
        self.open_incidents[rec.fqn] = state_id
        return self._incident_row(rec, state_id, "New", ts, by=by, severity=severity, details=None)

    def _incident_row(
        self,
        rec: Record,
        state_id: str,
        kind: str,
        ts: int,
        *,
        by: str,
        severity: str | None,
        details: dict[str, Any] | None,
        store: bool = True,
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"id": str(uuid.uuid4()), "stateId": state_id, "timestamp": ts}
        row["testCaseResolutionStatusType"] = kind
        if details is not None:
            row["testCaseResolutionStatusDetails"] = details
        row["updatedBy"] = self._user_ref(by)
        row["updatedAt"] = ts
        ref = rec.ref()
        ref.pop("deleted", None)
        row["testCaseReference"] = ref
        if severity:
            row["severity"] = severity
        if store:
            self.incidents.append(row)
            self.last_incident[rec.fqn] = row
        return row

    def add_incident_status(
        self,
        case_fqn: str,
        status_type: str,
        *,
        assignee: PersonSpec = None,
        resolved_by: PersonSpec = None,
        severity: str | None = None,
        reason: str | None = None,
        comment: str | None = None,
        timestamp: int | None = None,
        by: str = "admin",
        from_request: bool = False,
    ) -> dict[str, Any]:
        """Record a status as `POST /v1/dataQuality/testCases/testCaseIncidentStatus` does on this version.

        `from_request`: the body of a real POST (a Resolved keeps only the `resolvedBy` it was sent); the admin API
        and the seeds record the acting user as `resolvedBy`."""
        with self.lock:
            rec = self.get("testCase", case_fqn, include="all")
            if status_type not in INCIDENT_TYPES:
                raise SimError(400, f"Invalid testCaseResolutionStatusType {status_type}")
            last = self.last_incident.get(rec.fqn)
            current = last if last is not None and last["testCaseResolutionStatusType"] != "Resolved" else None
            is_open = current is not None
            if current is not None and self.profile.release < FLOW_CHECK_UNTIL:
                _check_flow(current["testCaseResolutionStatusType"], status_type)
            ts = timestamp if timestamp is not None else self.tick()
            if current is not None:
                state_id = str(current["stateId"])
                severity = severity or current.get("severity")
            else:
                state_id = str(uuid.uuid4())
            if status_type == "Resolved" and resolved_by is None and not from_request:
                resolved_by = by
            details = self._details(status_type, assignee, resolved_by, reason, comment)
            if status_type == "New" and is_open:  # already open: answered, not stored
                return self._incident_row(rec, state_id, "New", ts, by=by, severity=severity, details=None, store=False)
            if status_type == "Resolved" and last is None:
                raise SimError(500, f"Cannot find the last incident status for stateId {state_id}")
            row = self._incident_row(rec, state_id, status_type, ts, by=by, severity=severity, details=details)
            if status_type == "Resolved":
                self.open_incidents.pop(rec.fqn, None)
            else:
                self.open_incidents[rec.fqn] = state_id
            self.refresh_incident_id(rec)
            return row

    def _details(
        self,
        status_type: str,
        assignee: PersonSpec,
        resolved_by: PersonSpec,
        reason: str | None,
        comment: str | None,
    ) -> dict[str, Any] | None:
        if status_type == "Assigned":
            ref = self.person_ref(assignee)
            if ref is None:
                raise SimError(400, "An Assigned status needs testCaseResolutionStatusDetails.assignee")
            return {"assignee": ref}
        if status_type == "Resolved":
            if reason is not None and reason not in FAILURE_REASONS:
                raise SimError(400, f"Invalid testCaseFailureReason {reason}")
            details: dict[str, Any] = {"testCaseFailureReason": reason or "Other"}
            details["testCaseFailureComment"] = comment or ""
            who = self.person_ref(resolved_by, "resolvedBy")
            if who is not None:
                details["resolvedBy"] = who
            return details
        return None

    # --- the test case's incidentId ---------------------------------------------------------------------
    def incident_id_for(self, rec: Record) -> str | None:
        """What this version shows as the test case's `incidentId`."""
        if self.profile.release >= TIMELINE_INCIDENT_ID_SINCE:
            return self.open_incidents.get(rec.fqn)
        series = self.results.get(rec.fqn) or []
        return series[-1].get("incidentId") if series else None

    def refresh_incident_id(self, rec: Record) -> None:
        """Re-derive the stored test case's `incidentId` (no version, no event: it is a computed field)."""
        doc = rec.doc()
        state_id = self.incident_id_for(rec)
        if doc.get("incidentId") == state_id:
            return
        if state_id:
            doc["incidentId"] = state_id
        else:
            doc.pop("incidentId", None)
        rec.store(doc)

    def profile_changed(self) -> None:
        super().profile_changed()
        for rec in self.by_type.get("testCase", ()):
            self.refresh_incident_id(rec)

    # --- reads ------------------------------------------------------------------------------------------
    def incident_rows(self, filters: Mapping[str, str | None]) -> list[dict[str, Any]]:
        """Incident status rows, newest first, filtered as OM's `testCaseIncidentStatus` list."""
        start_ts, end_ts = _int_or_none(filters.get("startTs")), _int_or_none(filters.get("endTs"))
        kind = filters.get("testCaseResolutionStatusType")
        assignee = filters.get("assignee")
        case_fqn = filters.get("testCaseFQN")
        origin = filters.get("originEntityFQN")
        rows = [r for r in self.incidents if in_window(r["timestamp"], start_ts, end_ts)]
        if (filters.get("latest") or "").lower() == "true":
            latest: dict[str, dict[str, Any]] = {}
            for r in rows:
                latest[r["stateId"]] = r
            rows = list(latest.values())
        out = []
        for r in rows:
            ref_fqn = r["testCaseReference"]["fullyQualifiedName"]
            if kind and r["testCaseResolutionStatusType"] != kind:
                continue
            if case_fqn and ref_fqn != case_fqn:
                continue
            if origin:
                case = self.find("testCase", ref_fqn)
                if case is None or self.case_targets[case.id][0] != origin:
                    continue
            if assignee:
                details = r.get("testCaseResolutionStatusDetails") or {}
                if (details.get("assignee") or {}).get("name") != assignee:
                    continue
            out.append(r)
        out.sort(key=lambda r: r["timestamp"], reverse=True)
        return out

    def incident_history(self, state_id: str) -> list[dict[str, Any]]:
        """Every status row of one incident, oldest first."""
        return [r for r in self.incidents if r["stateId"] == state_id]


def _check_flow(last: str, new: str) -> None:
    """`validateStatus` of 1.3–1.6: an open incident never moves back."""
    backwards = {"Ack": ("New",), "Assigned": ("New", "Ack")}
    if new in backwards.get(last, ()):
        raise SimError(400, f"Incident with status [{last}] cannot be moved to [{new}]")


def in_window(ts: int, start: int | None, end: int | None) -> bool:
    return (start is None or ts >= start) and (end is None or ts <= end)


def _int_or_none(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise SimError(400, f"Invalid number {value}") from exc
