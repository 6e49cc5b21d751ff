"""OpenMetadata JSON Schema validation for tests: the copied 1.13 schemas, one lazily built registry."""

from __future__ import annotations

import json
import re
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft7Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.conftest import SCHEMA_DIR

BASE = "https://open-metadata.org/schema/"
KINDS: dict[str, str] = {
    "table": "entity/data/table.json",
    "dashboard": "entity/data/dashboard.json",
    "chart": "entity/data/chart.json",
    "dashboardDataModel": "entity/data/dashboardDataModel.json",
    "pipeline": "entity/data/pipeline.json",
    "topic": "entity/data/topic.json",
    "user": "entity/teams/user.json",
    "team": "entity/teams/team.json",
    "testCase": "tests/testCase.json",
    "testCaseResult": "tests/basic.json#/definitions/testCaseResult",
    "testCaseResolutionStatus": "tests/testCaseResolutionStatus.json",
    "pipelineStatus": "entity/data/pipeline.json#/definitions/pipelineStatus",
    "entityLineage": "type/entityLineage.json",
    "addLineage": "api/lineage/addLineage.json",
    "changeEvent": "type/changeEvent.json",
    "entityHistory": "type/entityHistory.json",
    "paging": "type/paging.json",
    "serverVersion": "api/openMetadataServerVersion.json",
    "createTestCaseResult": "api/tests/createTestCaseResult.json",
    "createTestCaseResolutionStatus": "api/tests/createTestCaseResolutionStatus.json",
}
# REST collection → entity kind, longest first so `dashboard/datamodels` wins over `dashboards`.
COLLECTION_KINDS = {
    "dashboard/datamodels": "dashboardDataModel",
    "dataQuality/testCases": "testCase",
    "tables": "table",
    "dashboards": "dashboard",
    "charts": "chart",
    "pipelines": "pipeline",
    "topics": "topic",
    "users": "user",
    "teams": "team",
}


class SchemaViolation(AssertionError):
    """A payload that the OpenMetadata JSON Schemas reject."""


def _multiple_of(validator: Any, divisor: Any, instance: Any, schema: Any) -> Any:
    """`multipleOf` in decimal arithmetic: OM versions are floats like 0.3 that 0.1 divides exactly."""
    if not validator.is_type(instance, "number"):
        return
    if Decimal(str(instance)) % Decimal(str(divisor)) != 0:
        yield ValidationError(f"{instance!r} is not a multiple of {divisor}")


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    """`pattern` with Java's `(?U)` flag dropped (Python's `re` is Unicode-aware already)."""
    if validator.is_type(instance, "string") and not re.search(_java_pattern(pattern), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _java_pattern(pattern: str) -> str:
    return pattern.removeprefix("(?U)")


OMValidator = validators.extend(Draft7Validator, {"multipleOf": _multiple_of, "pattern": _pattern})


class _Registry:
    """The 229 schema files, each registered under its path-derived URI (wrong `$id`s ignored)."""

    def __init__(self, root: Path) -> None:
        resources = []
        for path in sorted(root.rglob("*.json")):
            rel = path.relative_to(root).as_posix()
            doc = json.loads(path.read_text("utf-8"))
            doc["$id"] = BASE + rel
            doc.pop("$schema", None)  # else jsonschema swaps our OMValidator back to plain Draft7 on each $ref
            resources.append((BASE + rel, Resource.from_contents(doc, default_specification=DRAFT7)))
        self.registry: Registry = Registry().with_resources(resources)
        self.validators: dict[str, Any] = {}

    def validator(self, kind: str) -> Any:
        if kind not in self.validators:
            target = KINDS[kind]
            self.validators[kind] = OMValidator(
                {"$ref": BASE + target}, registry=self.registry, format_checker=Draft7Validator.FORMAT_CHECKER
            )
        return self.validators[kind]


_LOCK = threading.Lock()
_REGISTRY: _Registry | None = None


def registry() -> _Registry:
    """The shared registry, loaded on first use."""
    global _REGISTRY
    with _LOCK:
        if _REGISTRY is None:
            _REGISTRY = _Registry(SCHEMA_DIR)
        return _REGISTRY


def validate(kind: str, obj: Any) -> None:
    """Raise SchemaViolation if `obj` is not a valid `kind` (see KINDS)."""
    reg = registry()
    with _LOCK:
        error = best_match(reg.validator(kind).iter_errors(obj))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise SchemaViolation(f"{kind} at /{where}: {error.message[:300]}")


def _validate_list(kind: str, payload: Any) -> None:
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise SchemaViolation(f"{kind} list: expected {{data, paging}}")
    for i, item in enumerate(payload["data"]):
        try:
            validate(kind, item)
        except SchemaViolation as exc:
            raise SchemaViolation(f"data[{i}]: {exc}") from None
    validate("paging", payload.get("paging"))


def _validate_event_list(payload: Any) -> None:
    _validate_list("changeEvent", payload)
    for event in payload["data"]:
        entity_type = event.get("entityType")
        if isinstance(event.get("entity"), str) and entity_type in KINDS:
            validate(entity_type, json.loads(event["entity"]))


def _validate_history(kind: str, payload: Any) -> None:
    validate("entityHistory", payload)
    for raw in payload["versions"]:
        if not isinstance(raw, str):
            raise SchemaViolation("entityHistory: versions must be JSON strings")
        validate(kind, json.loads(raw))


_ENTITY_ROUTE = re.compile(r"^/api/v1/(?P<coll>dashboard/datamodels|dataQuality/testCases|[A-Za-z]+)(?P<rest>/.*)?$")


def response_validator(path: str, payload: Any) -> None:
    """Validate what the simulator sent for `path` against the schema of that route."""
    path = unquote(path.split("?", 1)[0])
    if path == "/api/v1/system/version":
        return validate("serverVersion", payload)
    if path == "/api/v1/events":
        return _validate_event_list(payload)
    if path.startswith("/api/v1/lineage/"):
        return validate("entityLineage", payload)
    if path.startswith("/api/v1/dataQuality/testCases/testCaseResults/"):
        if isinstance(payload, dict) and "data" in payload:
            return _validate_list("testCaseResult", payload)
        return validate("testCaseResult", payload)
    if path.startswith("/api/v1/dataQuality/testCases/testCaseIncidentStatus"):
        if isinstance(payload, dict) and "data" in payload:
            return _validate_list("testCaseResolutionStatus", payload)
        return validate("testCaseResolutionStatus", payload)
    match = _ENTITY_ROUTE.match(path)
    if match is None or match["coll"] not in COLLECTION_KINDS:
        raise SchemaViolation(f"no schema known for {path}")
    kind = COLLECTION_KINDS[match["coll"]]
    rest = match["rest"] or ""
    if not rest:
        return _validate_list(kind, payload)
    if kind == "pipeline" and rest.endswith("/status"):
        if isinstance(payload, dict) and "data" in payload:
            return _validate_list("pipelineStatus", payload)
        return validate(kind, payload)
    if re.search(r"/versions$", rest):
        return _validate_history(kind, payload)
    return validate(kind, payload)
