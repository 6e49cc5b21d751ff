"""OpenMetadata JSON Schema validation for tests: the copied 1.13 schemas, one lazily built registry per version.

The schemas are 1.13's. For another version the entity schemas are patched from the same version table the
simulator follows (`storage.openmetadata.versions.profile_for`): properties the version's entity class lacks are
dropped,
`domain` (one EntityReference) replaces `domains` on 1.5–1.8, and 2.0's ChangeEvent gains `recursive` and its new
event types. Entities are always validated; only answers with no schema at all (the audit log) are not.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft7Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from simulator.cascade import CONTAINER_COLLECTIONS
from simulator.fields import view_for
from storage.openmetadata.versions import Profile, profile_for
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
    "database": "entity/data/database.json",
    "databaseSchema": "entity/data/databaseSchema.json",
    "databaseService": "entity/services/databaseService.json",
    "dashboardService": "entity/services/dashboardService.json",
    "pipelineService": "entity/services/pipelineService.json",
    "messagingService": "entity/services/messagingService.json",
}
DEFAULT_VERSION = "1.13.6"
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
    **CONTAINER_COLLECTIONS,  # databases, schemas and services: the simulator's own table
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
    """The 229 schema files, each registered under its path-derived URI (wrong `$id`s ignored), patched to a
    version's shapes when a profile is given."""

    def __init__(self, root: Path, profile: Profile | None = None) -> None:
        docs: dict[str, dict[str, Any]] = {}
        for path in sorted(root.rglob("*.json")):
            rel = path.relative_to(root).as_posix()
            doc = json.loads(path.read_text("utf-8"))
            doc["$id"] = BASE + rel
            doc.pop("$schema", None)  # else jsonschema swaps our OMValidator back to plain Draft7 on each $ref
            docs[rel] = doc
        if profile is not None:
            _patch(docs, profile)
        resources = [(BASE + rel, Resource.from_contents(d, default_specification=DRAFT7)) for rel, d in docs.items()]
        self.registry: Registry = Registry().with_resources(resources)
        self.validators: dict[str, Any] = {}

    def validator(self, kind: str) -> Any:
        if kind not in self.validators:
            target = KINDS[kind]
            self.validators[kind] = OMValidator(
                {"$ref": BASE + target}, registry=self.registry, format_checker=Draft7Validator.FORMAT_CHECKER
            )
        return self.validators[kind]


def _patch(docs: dict[str, dict[str, Any]], profile: Profile) -> None:
    """Reshape the 1.13 schemas to `profile`'s entity classes and ChangeEvent."""
    reference = {"$ref": BASE + "type/entityReference.json"}
    for etype, rel in KINDS.items():
        props = profile.properties.get(etype)
        if not props or "#" in rel:
            continue
        schema = docs[rel]
        for name in ("domain", "owner"):
            if name in props and name not in schema["properties"]:
                schema["properties"][name] = dict(reference)
        schema["properties"] = {k: v for k, v in schema["properties"].items() if k in props}
        if "required" in schema:
            schema["required"] = [k for k in schema["required"] if k in props]
    event = docs["type/changeEvent.json"]
    if view_for(profile).marks_recursive:  # the 2.0.7.0 wheel's ChangeEvent has `recursive`; 1.13.6.3's has not
        event["properties"]["recursive"] = {"type": "boolean"}
    event_types = docs["type/changeEventType.json"]
    known = list(event_types.get("enum", []))
    event_types["enum"] = known + sorted(t for t in profile.event_types if t not in known)


_LOCK = threading.Lock()
_REGISTRIES: dict[tuple[tuple[int, int], str], _Registry] = {}


def registry(version: str = DEFAULT_VERSION) -> _Registry:
    """The registry of `version`'s shapes, loaded on first use."""
    profile = profile_for(version)
    key = (profile.release, profile.range)
    with _LOCK:
        if key not in _REGISTRIES:
            _REGISTRIES[key] = _Registry(SCHEMA_DIR, profile)
        return _REGISTRIES[key]


def validate(kind: str, obj: Any, version: str = DEFAULT_VERSION) -> None:
    """Raise SchemaViolation if `obj` is not a valid `kind` (see KINDS) on OpenMetadata `version`."""
    reg = registry(version)
    with _LOCK:
        error = best_match(reg.validator(kind).iter_errors(obj))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise SchemaViolation(f"{kind} at /{where}: {error.message[:300]}")


def _validate_list(kind: str, payload: Any, version: str) -> None:
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise SchemaViolation(f"{kind} list: expected {{data, paging}}")
    for i, item in enumerate(payload["data"]):
        try:
            validate(kind, item, version)
        except SchemaViolation as exc:
            raise SchemaViolation(f"data[{i}]: {exc}") from None
    validate("paging", payload.get("paging"), version)


def validate_event(event: Any, version: str = DEFAULT_VERSION) -> None:
    """A ChangeEvent, and the entity it carries as a JSON string, on OpenMetadata `version`."""
    validate("changeEvent", event, version)
    entity_type = event.get("entityType")
    if isinstance(event.get("entity"), str) and entity_type in KINDS:
        validate(entity_type, json.loads(event["entity"]), version)


def _validate_event_list(payload: Any, version: str) -> None:
    _validate_list("changeEvent", payload, version)
    for event in payload["data"]:
        validate_event(event, version)


def _validate_history(kind: str, payload: Any, version: str) -> None:
    validate("entityHistory", payload, version)
    for raw in payload["versions"]:
        if not isinstance(raw, str):
            raise SchemaViolation("entityHistory: versions must be JSON strings")
        validate(kind, json.loads(raw), version)


_ENTITY_ROUTE = re.compile(
    r"^/api/v1/(?P<coll>dashboard/datamodels|dataQuality/testCases|services/[A-Za-z]+|[A-Za-z]+)(?P<rest>/.*)?$"
)


def response_validator(path: str, payload: Any, version: str = DEFAULT_VERSION) -> None:
    """Validate what the simulator sent for `path` against the schema of that route on OpenMetadata `version`."""
    path = unquote(path.split("?", 1)[0])
    if path == "/api/v1/system/version":
        return validate("serverVersion", payload, version)
    if path == "/api/v1/events":
        return _validate_event_list(payload, version)
    if path.startswith("/api/v1/lineage/"):
        return validate("entityLineage", payload, version)
    if path.startswith("/api/v1/dataQuality/testCases/testCaseResults/"):
        if isinstance(payload, dict) and "data" in payload:
            return _validate_list("testCaseResult", payload, version)
        return validate("testCaseResult", payload, version)
    if path.startswith("/api/v1/dataQuality/testCases/testCaseIncidentStatus"):
        if isinstance(payload, dict) and "data" in payload:
            return _validate_list("testCaseResolutionStatus", payload, version)
        return validate("testCaseResolutionStatus", payload, version)
    match = _ENTITY_ROUTE.match(path)
    if match is None or match["coll"] not in COLLECTION_KINDS:
        raise SchemaViolation(f"no schema known for {path}")
    kind = COLLECTION_KINDS[match["coll"]]
    rest = match["rest"] or ""
    if not rest:
        return _validate_list(kind, payload, version)
    if kind == "pipeline" and rest.endswith("/status"):
        if isinstance(payload, dict) and "data" in payload:
            return _validate_list("pipelineStatus", payload, version)
        return validate(kind, payload, version)
    if re.search(r"/versions$", rest):
        return _validate_history(kind, payload, version)
    return validate(kind, payload, version)


def validator_for(version: str) -> Callable[[str, Any], None]:
    """`response_validator` bound to one OpenMetadata version (what a simulator serving it is checked with)."""

    def check(path: str, payload: Any) -> None:
        response_validator(path, payload, version)

    return check
