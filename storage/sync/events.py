"""What OpenMetadata's change events ask a sync to re-read: assets, test targets, lineage ends, cascade deletes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.domain import dna
from storage.openmetadata.client import CONTAINER_TYPES, event_entity
from storage.openmetadata.models import ENTITY_COLLECTIONS, ChangeEvent, TestCase

# OpenMetadata 2.0 records lineage edits as events of `entityType: lineage` (1.x records none).
LINEAGE_EVENTS = frozenset({"entityLineageAdded", "entityLineageUpdated", "entityLineageDeleted"})
DELETE_EVENTS = frozenset({"entityDeleted", "entitySoftDeleted"})
# How 2.0 names an edge in `entityFullyQualifiedName` when the event carries no usable edge.
EDGE_FQN_SEPARATORS = ("--upstream-->", "-->")


@dataclass
class EventPlan:
    """The re-reads a batch of events asks for."""

    changed: dict[str, str] = field(default_factory=dict)  # FQN → entity type: re-read entity and lineage
    test_targets: set[str] = field(default_factory=set)  # entities whose tests changed
    lineage: dict[str, str] = field(default_factory=dict)  # FQN → entity type: re-read lineage only
    gone: set[str] = field(default_factory=set)  # known entities under a deleted container
    lineage_events: int = 0


def plan_events(events: Iterable[ChangeEvent], known: Mapping[str, str]) -> EventPlan:
    """Sort events into re-reads; `known` (FQN → type, live entities) resolves lineage ends and cascades."""
    out = EventPlan()
    for ev in events:
        if ev.entityType == "lineage" or ev.eventType in LINEAGE_EVENTS:
            out.lineage_events += 1
            for etype, fqn in lineage_ends(ev, known):
                out.lineage[fqn] = etype
            continue
        if ev.entityType in CONTAINER_TYPES:
            if ev.eventType in DELETE_EVENTS:
                out.gone |= cascade(ev, known)
            continue
        target = event_target(ev)
        if target is None:
            continue
        if ev.entityType == "testCase":
            out.test_targets.add(target[1])
        elif target[0] != "pipeline":  # pipelines are re-read with the context
            out.changed[target[1]] = target[0]
    for fqn in out.changed:
        out.lineage.pop(fqn, None)  # re-read in full anyway
    return out


def event_targets(ev: ChangeEvent, known: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """Every (entity type, FQN) one event asks a targeted sync to re-read (for webhooks): the asset, a test's
    target, both ends of a lineage edge, or a deleted container (whose known children the sync then re-reads)."""
    if ev.entityType == "lineage" or ev.eventType in LINEAGE_EVENTS:
        return lineage_ends(ev, known or {})
    if ev.entityType in CONTAINER_TYPES:
        root = container_fqn(ev)
        return [(ev.entityType, root)] if root and ev.eventType in DELETE_EVENTS else []
    target = event_target(ev)
    return [target] if target is not None else []


def event_target(ev: Any) -> tuple[str, str] | None:
    """The (entity type, FQN) a change event asks a sync to re-read: the data asset itself, or for a test case
    the entity its test checks; None for what the sync does not keep (users, services, …) or cannot place."""
    if ev.entityType == "testCase":
        test = _test_of_event(ev)
        target = test_target(test) if test is not None else None
        if test is None or not target:
            return None
        kind = test.entityLink.strip().removeprefix("<#E::").split("::", 1)[0]
        return (kind if kind in ENTITY_COLLECTIONS else "table", target)
    if ev.entityType not in ENTITY_COLLECTIONS:
        return None
    fqn = ev.entityFullyQualifiedName or _fqn_from_event(ev)
    return (ev.entityType, fqn) if fqn else None


def test_target(test: TestCase) -> str | None:
    """The FQN of the entity a test case checks, from its entity link `<#E::table::FQN[::columns::c]>`."""
    return dna.entity_of_test_link(test.entityLink) or test.entityFQN


def lineage_ends(ev: ChangeEvent, known: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (type, FQN) of both ends of the edge a lineage event names: from the edge it carries (`fromEntity` /
    `toEntity` references), else from `entityFullyQualifiedName` with types from `known`."""
    edge = event_entity(ev) or {}
    edge = edge.get("edge", edge) if isinstance(edge.get("edge"), dict) else edge
    ends: list[tuple[str, str]] = []
    for key in ("fromEntity", "toEntity"):
        ref = edge.get(key)
        if isinstance(ref, dict):
            fqn = ref.get("fullyQualifiedName") or ref.get("fqn")
            etype = ref.get("type") or (known.get(fqn) if isinstance(fqn, str) else None)
            if isinstance(fqn, str) and isinstance(etype, str) and etype in ENTITY_COLLECTIONS:
                ends.append((etype, fqn))
    if len(ends) == 2:
        return ends
    name = ev.entityFullyQualifiedName or ""
    for separator in EDGE_FQN_SEPARATORS:
        if separator in name:
            parts = [p.strip() for p in name.split(separator, 1)]
            found = [(known[p], p) for p in parts if p in known]
            return found or ends
    return ends


def container_fqn(ev: ChangeEvent) -> str | None:
    if ev.entityFullyQualifiedName:
        return ev.entityFullyQualifiedName
    entity = event_entity(ev)
    fqn = entity.get("fullyQualifiedName") if isinstance(entity, dict) else None
    return fqn if isinstance(fqn, str) and fqn else None


def cascade(ev: ChangeEvent, known: Mapping[str, str]) -> set[str]:
    """Known entities under a deleted container: a cascade delete sends one event, for the root only."""
    root = container_fqn(ev)
    return children_of(root, known) if root else set()


def children_of(root: str, known: Iterable[str]) -> set[str]:
    prefix = root + "."
    return {fqn for fqn in known if fqn.startswith(prefix)}


def _fqn_from_event(ev: Any) -> str | None:
    entity = event_entity(ev)
    if isinstance(entity, dict):
        fqn = entity.get("fullyQualifiedName")
        return fqn if isinstance(fqn, str) else None
    return None


def _test_of_event(ev: Any) -> TestCase | None:
    entity = event_entity(ev)
    if not isinstance(entity, dict):
        return None
    try:
        return TestCase.model_validate(entity)
    except ValueError:
        return None
