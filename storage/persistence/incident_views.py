"""Read-only views of incidents, their history, links and evidence (frozen dataclasses, no ORM objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class IncidentView:
    """One incident as it stands now."""

    id: int
    fingerprint: str
    kind: str
    severity: str
    status: str
    title: str
    root_fqn: str
    root_column: str | None
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    snoozed_until: datetime | None
    assignee: str | None
    opened_run_id: int | None
    last_run_id: int | None
    version: int
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventView:
    """One entry of an incident's history."""

    id: int
    incident_id: int
    at: datetime
    kind: str
    status_from: str | None
    status_to: str | None
    actor: str
    reason: str | None
    note: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LinkView:
    """A change linked to an incident as its cause or a symptom, with the change's own facts."""

    incident_id: int
    change_id: int
    role: str
    kind: str
    entity_fqn: str
    subject: str | None
    old_value: Any
    new_value: Any
    detected_at: datetime
    details: dict[str, Any] = field(default_factory=dict)  # the change's own (a failing test's result text, …)


@dataclass(frozen=True, slots=True)
class EvidenceView:
    """One fact an incident rests on."""

    id: int
    incident_id: int
    kind: str
    ref: str
    summary: str
    url: str | None
    data: dict[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class IncidentDetailView:
    """An incident with its history (oldest first), linked changes and evidence; `trust` (filled by
    `incidents.with_trust`) holds the trust score now of its root and the assets it breaks, by FQN."""

    incident: IncidentView
    events: list[EventView]
    links: list[LinkView]
    evidence: list[EvidenceView]
    trust: dict[str, dict[str, Any]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ helpers
