"""Data quality and runs: test cases, result time series, incidents (resolution statuses), pipeline runs."""

from __future__ import annotations

import bisect
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from simulator.incidents import IncidentsMixin, in_window
from simulator.records import Record, stable_id
from storage.openmetadata import fqn as fqnlib


class QualityMixin(IncidentsMixin):
    """Test cases keep their latest result (inline only when `fields=testCaseResult` asks); results and incidents
    are time series (no versions)."""

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
        if "testSuite" not in target.doc():
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
            rec.store(doc)
            self.refresh_incident_id(rec)
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
        return [r for r in reversed(rows) if in_window(r["timestamp"], start_ts, end_ts)]

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
        return [r for r in reversed(runs) if in_window(r["timestamp"], start_ts, end_ts)]


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


def _link_target(link: str) -> str | None:
    """The entity FQN inside `<#E::table::FQN[::columns::col]>`."""
    if not (link.startswith("<#E::") and link.endswith(">")):
        return None
    parts = link[5:-1].split("::")
    return parts[1] if len(parts) >= 2 else None
