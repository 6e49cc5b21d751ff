"""Plain data the agents pass around: evidence, breaks, hypotheses, fix proposals, incident drafts, texts."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Json:
    """The `to_dict` of the frozen dataclasses below (a mixin: only dataclasses inherit it)."""

    def to_dict(self: DataclassInstance) -> dict[str, Any]:
        """A JSON-able dict (datetimes as ISO strings, tuples as lists)."""
        return {k: _plain(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Evidence(_Json):
    """One fact an incident rests on: a change row, an edge, a snapshot, a test result or a web source."""

    kind: str
    ref: str
    summary: str
    data: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Break(_Json):
    """Something downstream that breaks (or broke): an asset or one of its columns, and why."""

    entity_fqn: str
    column: str | None
    entity_type: str | None
    distance: int
    reason: str
    via: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hypothesis(_Json):
    """A candidate root cause with its confidence and evidence; cause_fqn is "unknown" when nothing explains it."""

    cause_fqn: str
    cause_column: str | None
    change_kind: str | None
    change_id: int | None
    summary: str
    confidence: float
    evidence: tuple[Evidence, ...] = ()
    path: tuple[str, ...] = ()
    column_path: tuple[str, ...] = ()  # the column chain from the changed column to the asset, when lineage has one


@dataclass(frozen=True)
class FixProposal(_Json):
    """A remediation proposal; when simulated, which breaks it resolves on the graph and which remain."""

    kind: str
    title: str
    sql: str | None
    steps: tuple[str, ...]
    simulated: bool
    resolves: tuple[Break, ...] = ()
    remains: tuple[Break, ...] = ()


@dataclass(frozen=True)
class IncidentDraft(_Json):
    """What the observer concluded from one upstream cause, before analysis and words."""

    fingerprint: str
    kind: str
    severity: str
    title: str
    root_fqn: str
    root_column: str | None
    cause_change_ids: tuple[int, ...]
    breaks: tuple[Break, ...]
    dashboards: tuple[str, ...]
    charts: tuple[str, ...]
    owners: tuple[str, ...]
    severity_reasons: tuple[str, ...]
    opened_at: datetime


@dataclass(frozen=True)
class Explanation(_Json):
    """The two texts of an incident: a stakeholder brief and a technical explanation."""

    brief: str
    technical: str
    source: str  # "template" | "llm"
    fallback_reason: str | None = None
    citations: tuple[str, ...] = ()


@runtime_checkable
class IncidentLike(Protocol):
    """What the agents read of a stored incident (`storage.persistence.incident_views.IncidentView` is one)."""

    @property
    def id(self) -> int: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def root_fqn(self) -> str: ...
    @property
    def root_column(self) -> str | None: ...
    @property
    def opened_at(self) -> datetime: ...
    @property
    def status(self) -> str: ...
    @property
    def details(self) -> Mapping[str, Any]: ...


# The incident kind a breaking change opens: a symptom explained by one of these is fixed by fixing it.
CAUSE_INCIDENT_KINDS = {
    "column_removed": "breaking_schema_change",
    "column_renamed": "breaking_schema_change",
    "column_type_changed": "breaking_schema_change",
    "lineage_edge_removed": "lineage_edge_lost",
    "pipeline_run_failed": "pipeline_failed",
    "owner_removed": "ownership_lost",
}


def incident_fingerprint(*key: str) -> str:
    """The stable fingerprint of an incident key, e.g. ("schema", entity FQN, column)."""
    return hashlib.sha256("|".join(key).encode("utf-8")).hexdigest()[:32]
