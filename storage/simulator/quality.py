"""Data quality and runs: test cases, result time series, incidents (resolution statuses), pipeline runs."""

from __future__ import annotations

import bisect
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from storage import fqn as fqnlib
from storage.simulator.entities import EntitiesMixin
from storage.simulator.records import Record, SimError, stable_id

INCIDENT_TYPES = ("New", "Ack", "Assigned", "Resolved")
FAILURE_REASONS = ("FalsePositive", "MissingData", "Duplicates", "OutOfBounds", "Other")


class QualityMixin(EntitiesMixin):
    """Test cases carry their latest result inline; results and incidents are time series (no versions)."""

    # --- test cases -------------------------------------------------------------------------------------
    def add_test_case(
        self,
        entity_fqn: str,
        name: str,
        *,
        definition: str,
        column: str | None = None,
        parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        description: str | None = None,
        display_name: str | None = None,
        owners: Iterable[str] = (),
        tags: Iterable[str] = (),
        logical_suites: Sequence[str] = (),
        etype: str = "table",
    ) -> Record:
        """A test case on an entity (or one of its columns), in the executable suite `<entityFQN>.testSuite`."""
        target = self.get(etype, entity_fqn, include="all")
        if column is not None:
            link = f"<#E::{etype}::{target.fqn}::columns::{column}>"
            tested = fqnlib.column_fqn(target.fqn, column)
        else:
            link = f"<#E::{etype}::{target.fqn}>"
            tested = target.fqn
        case_fqn = fqnlib.column_fqn(tested, name)
        suite = _suite_ref(f"{target.fqn}.testSuite")
        doc = self._new_doc("testCase", name, case_fqn, display_name=display_name, description=description)
        doc["testDefinition"] = {
            "id": stable_id("testDefinition", definition),
            "type": "testDefinition",
            "name": definition,
            "fullyQualifiedName": definition,
            "deleted": False,
        }
        doc["entityLink"] = link
        doc["entityFQN"] = tested
        doc["testSuite"] = suite
        doc["testSuites"] = [_suite(suite, basic=True), *(_suite(_suite_ref(s), basic=False) for s in logical_suites)]
        doc["parameterValues"] = _parameters(parameters)
        self._finish(doc, owners, tags, None)
        rec = self.insert("testCase", doc, service=target.service)
        self.case_targets[rec.id] = (target.fqn, column, link, suite["id"])
        self.results[case_fqn] = []
        if "testSuite" not in target.needs:
            self.seed_patch(target, lambda d: d.__setitem__("testSuite", suite))
        return rec

    def list_test_cases(self, include: str, filters: Mapping[str, str | None]) -> list[Record]:
        """Name-ordered test cases passing OM's list filters (entityLink, entityFQN, status, type, suite)."""
        _keys, rows = self.sorted_rows("testCase", include)
        link = filters.get("entityLink")
        entity_fqn = filters.get("entityFQN")
        all_tests = (filters.get("includeAllTests") or "").lower() == "true"
        status = filters.get("testCaseStatus")
        case_type = filters.get("testCaseType") or "all"
        suite_id = filters.get("testSuiteId")
        link_target = _link_target(link) if link else None
        out = []
        for rec in rows:
            target, column, case_link, case_suite = self.case_targets[rec.id]
            if link and not (case_link == link or (all_tests and link_target == target)):
                continue
            if entity_fqn and not _matches_entity(target, column, entity_fqn, all_tests):
                continue
            if status and self.case_status.get(rec.id) != status:
                continue
            if (case_type == "table" and column is not None) or (case_type == "column" and column is None):
                continue
            if suite_id and case_suite != suite_id:
                continue
            out.append(rec)
        return out

    # --- results ----------------------------------------------------------------------------------------
    def add_test_result(
        self,
        case_fqn: str,
        status: str,
        *,
        result: str | None = None,
        values: Sequence[Mapping[str, Any]] | None = None,
        timestamp: int | None = None,
        extra: Mapping[str, Any] | None = None,
        event: bool = True,
        by: str = "admin",
    ) -> dict[str, Any]:
        """Record a result: inline it on the case, open a `New` incident on Failed, emit `entityUpdated`."""
        with self.lock:
            rec = self.get("testCase", case_fqn)
            ts = timestamp if timestamp is not None else self.tick()
            row: dict[str, Any] = {"id": str(uuid.uuid4()), "testCaseFQN": rec.fqn, "timestamp": ts}
            row["testCaseStatus"] = status
            if result is not None:
                row["result"] = result
            row["testResultValue"] = [dict(v) for v in values or []]
            for key, value in (extra or {}).items():
                if value is not None and key not in row:
                    row[key] = value
            if status == "Failed":
                state_id = self.open_incidents.get(rec.fqn) or self._new_incident(rec, ts, by=by)["stateId"]
                row["incidentId"] = state_id
            series = self.results.setdefault(rec.fqn, [])
            series.insert(bisect.bisect_right([r["timestamp"] for r in series], ts), row)
            latest = series[-1]
            doc = rec.doc()
            doc["testCaseResult"] = latest
            doc["testCaseStatus"] = latest["testCaseStatus"]
            self.case_status[rec.id] = latest["testCaseStatus"]
            _set_incident(doc, self.open_incidents.get(rec.fqn))
            rec.store(doc)
            if event:
                change = {
                    "fieldsAdded": [],
                    "fieldsUpdated": [{"name": "testCaseResult", "newValue": row}],
                    "fieldsDeleted": [],
                    "previousVersion": rec.version,
                }
                self.emit("entityUpdated", rec, change, by=by)
            return row

    def result_rows(self, case_fqn: str, start_ts: int | None, end_ts: int | None) -> list[dict[str, Any]]:
        """A case's results in [startTs, endTs], newest first."""
        rec = self.get("testCase", case_fqn, include="all")
        rows = self.results.get(rec.fqn, [])
        return [r for r in reversed(rows) if _in_window(r["timestamp"], start_ts, end_ts)]

    # --- incidents --------------------------------------------------------------------------------------
    def _user_ref(self, name: str) -> dict[str, Any]:
        rec = self.find("user", name)
        if rec is not None:
            return rec.ref()
        return {"id": stable_id("user", name), "type": "user", "name": name, "fullyQualifiedName": name}

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
        self.incidents.append(row)
        return row

    def add_incident_status(
        self,
        case_fqn: str,
        status_type: str,
        *,
        assignee: str | None = None,
        severity: str | None = None,
        reason: str | None = None,
        comment: str | None = None,
        timestamp: int | None = None,
        by: str = "admin",
    ) -> dict[str, Any]:
        """Add a status to the case's incident (a new row with the same stateId); New opens one."""
        with self.lock:
            rec = self.get("testCase", case_fqn)
            if status_type not in INCIDENT_TYPES:
                raise SimError(400, f"Invalid testCaseResolutionStatusType {status_type}")
            ts = timestamp if timestamp is not None else self.tick()
            state_id = self.open_incidents.get(rec.fqn)
            if status_type == "New":
                if state_id is not None:
                    raise SimError(400, f"Test case {rec.fqn} already has an open incident {state_id}")
                row = self._new_incident(rec, ts, by=by, severity=severity)
                self._sync_incident(rec)
                return row
            if state_id is None:
                raise SimError(400, f"Test case {rec.fqn} has no open incident")
            previous = [r for r in self.incidents if r["stateId"] == state_id][-1]
            details: dict[str, Any] | None = None
            if status_type == "Assigned":
                if not assignee:
                    raise SimError(400, "An Assigned status needs an assignee")
                user = self.get("user", assignee)
                details = {"assignee": user.ref()}
            elif status_type == "Resolved":
                if reason is not None and reason not in FAILURE_REASONS:
                    raise SimError(400, f"Invalid testCaseFailureReason {reason}")
                details = {
                    "testCaseFailureReason": reason or "Other",
                    "testCaseFailureComment": comment or "",
                    "resolvedBy": self._user_ref(by),
                }
            row = self._incident_row(
                rec, state_id, status_type, ts, by=by, severity=severity or previous.get("severity"), details=details
            )
            if status_type == "Resolved":
                self.open_incidents.pop(rec.fqn, None)
                self._sync_incident(rec)
            return row

    def _sync_incident(self, rec: Record) -> None:
        doc = rec.doc()
        _set_incident(doc, self.open_incidents.get(rec.fqn))
        rec.store(doc)

    def incident_rows(self, filters: Mapping[str, str | None]) -> list[dict[str, Any]]:
        """Incident status rows, newest first, filtered as OM's `testCaseIncidentStatus` list."""
        start_ts = _int_or_none(filters.get("startTs"))
        end_ts = _int_or_none(filters.get("endTs"))
        kind = filters.get("testCaseResolutionStatusType")
        assignee = filters.get("assignee")
        case_fqn = filters.get("testCaseFQN")
        origin = filters.get("originEntityFQN")
        rows = [r for r in self.incidents if _in_window(r["timestamp"], start_ts, end_ts)]
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

    # --- pipeline runs ----------------------------------------------------------------------------------
    def set_pipeline_status(
        self,
        fqn: str,
        execution_status: str,
        *,
        task_status: Mapping[str, str] | Sequence[Mapping[str, Any]] | None = None,
        timestamp: int | None = None,
        event: bool = True,
        by: str = "admin",
    ) -> dict[str, Any]:
        """Record a pipeline run (time series: no version; `pipelineStatus` in fieldsUpdated, `entityUpdated`)."""
        with self.lock:
            rec = self.get("pipeline", fqn)
            ts = timestamp if timestamp is not None else self.tick()
            if isinstance(task_status, Mapping):
                tasks = [{"name": k, "executionStatus": v} for k, v in task_status.items()]
            else:
                tasks = [dict(t) for t in task_status or []]
            status = {"timestamp": ts, "executionStatus": execution_status, "taskStatus": tasks}
            runs = self.pipeline_runs.setdefault(rec.fqn, [])
            replaced = next((r for r in runs if r["timestamp"] == ts), None)
            if replaced is not None:
                runs.remove(replaced)
            runs.append(status)
            runs.sort(key=lambda r: r["timestamp"])
            doc = rec.doc()
            doc["pipelineStatus"] = runs[-1]
            rec.store(doc)
            if event:
                field: dict[str, Any] = {"name": "pipelineStatus", "newValue": status}
                if replaced is not None:
                    field["oldValue"] = replaced
                change = {
                    "fieldsAdded": [],
                    "fieldsUpdated": [field],
                    "fieldsDeleted": [],
                    "previousVersion": rec.version,
                }
                self.emit("entityUpdated", rec, change, by=by)
            return doc

    def pipeline_status_rows(self, fqn: str, start_ts: int | None, end_ts: int | None) -> list[dict[str, Any]]:
        """A pipeline's runs in [startTs, endTs], newest first."""
        rec = self.get("pipeline", fqn, include="all")
        runs = self.pipeline_runs.get(rec.fqn, [])
        return [r for r in reversed(runs) if _in_window(r["timestamp"], start_ts, end_ts)]


def _matches_entity(target: str, column: str | None, wanted: str, all_tests: bool) -> bool:
    """OM's `entityFQN` filter: the entity's own tests (its columns' too with includeAllTests)."""
    if column is not None and fqnlib.column_fqn(target, column) == wanted:
        return True
    return target == wanted and (column is None or all_tests)


def _suite_ref(name: str) -> dict[str, Any]:
    return {
        "id": stable_id("testSuite", name),
        "type": "testSuite",
        "name": name,
        "fullyQualifiedName": name,
        "deleted": False,
    }


def _suite(ref: dict[str, Any], *, basic: bool) -> dict[str, Any]:
    """A TestSuite object as listed in a case's `testSuites` (basic = the table's executable suite)."""
    return {
        "id": ref["id"],
        "name": ref["name"],
        "fullyQualifiedName": ref["fullyQualifiedName"],
        "basic": basic,
        "deleted": False,
    }


def _parameters(parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> list[dict[str, str]]:
    if not parameters:
        return []
    items = parameters.items() if isinstance(parameters, Mapping) else ((p["name"], p.get("value")) for p in parameters)
    out = []
    for name, value in items:
        text = value if isinstance(value, str) else json.dumps(value)
        out.append({"name": str(name), "value": text})
    return out


def _set_incident(doc: dict[str, Any], state_id: str | None) -> None:
    if state_id:
        doc["incidentId"] = state_id
    else:
        doc.pop("incidentId", None)


def _link_target(link: str) -> str | None:
    """The entity FQN inside `<#E::table::FQN[::columns::col]>`."""
    if not (link.startswith("<#E::") and link.endswith(">")):
        return None
    parts = link[5:-1].split("::")
    return parts[1] if len(parts) >= 2 else None


def _in_window(ts: int, start: int | None, end: int | None) -> bool:
    return (start is None or ts >= start) and (end is None or ts <= end)


def _int_or_none(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise SimError(400, f"Invalid number {value}") from exc
