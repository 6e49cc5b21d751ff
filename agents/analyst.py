"""The analyst: ranked root-cause hypotheses from the lineage timeline, each with its evidence (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from agents.model import Evidence, Hypothesis
from agents.provenance import VENDORS
from storage.domain.lineage import LineageGraph
from storage.openmetadata.fqn import last
from storage.persistence.store import ChangeView

SELF_CAUSED = frozenset({"breaking_schema_change", "lineage_edge_lost", "pipeline_failed", "ownership_lost"})
SELF_CONFIDENCE = 0.95
MAX_INFERRED_CONFIDENCE = 0.9
MAX_HYPOTHESES = 5
MAX_PATH_EVIDENCE = 6
MAX_UPSTREAM_DEPTH = 8
UNKNOWN_SUMMARY = "no upstream change on a lineage path explains this; check the data source itself"

# How much a change of this kind can break what reads from it (0..1); kinds not listed are never candidates.
BREAKING_WEIGHT: dict[str, float] = {
    "entity_deleted": 1.0,
    "column_removed": 1.0,
    "column_renamed": 1.0,
    "column_type_changed": 0.9,
    "lineage_edge_removed": 0.8,
    "pipeline_run_failed": 0.8,
    "column_mapping_removed": 0.6,
    "column_nullability_changed": 0.5,
    "test_newly_failing": 0.5,
    "column_constraint_changed": 0.4,
    "owner_removed": 0.3,
    "trust_dropped": 0.3,
}


def _pct(x: float | None) -> str:
    return f" ({round(x * 100)}% confidence)" if x is not None else ""


def change_summary(c: ChangeView) -> str:
    """One human line for a change row, e.g. "stg_orders.status renamed to order_state (92% confidence)"."""
    d = c.details or {}
    entity = last(c.entity_fqn)
    if c.kind == "column_renamed":
        return f"{entity}.{d.get('old_name') or c.subject} renamed to {d.get('new_name') or c.new_value}" + _pct(
            c.confidence
        )
    if c.kind == "column_removed":
        return f"{entity}.{c.subject} dropped"
    if c.kind == "column_type_changed":
        old, new = ((v or {}).get("type_display") or (v or {}).get("type") for v in (c.old_value, c.new_value))
        return f"{entity}.{c.subject} changed type from {old} to {new}"
    if c.kind == "lineage_edge_removed":
        return f"lineage edge {last(str(c.subject))} → {entity} removed"
    if c.kind == "pipeline_run_failed":
        tasks = ", ".join(d.get("failed_tasks") or ())
        return f"pipeline {c.subject} failed" + (f" (tasks: {tasks})" if tasks else "")
    if c.kind == "owner_removed":
        return f"owner {c.subject} removed from {entity}"
    if c.kind == "test_newly_failing":
        return f"test {last(str(c.subject))} on {entity} started failing"
    if c.kind == "trust_dropped":
        return f"trust score of {entity} dropped from {c.old_value} to {c.new_value}"
    return f"{c.kind.replace('_', ' ')} on {entity}" + (f": {c.subject}" if c.subject else "")


def _change_evidence(c: ChangeView) -> Evidence:
    data = {"kind": c.kind, "subject": c.subject, "old_value": c.old_value, "new_value": c.new_value}
    data |= {"confidence": c.confidence, "details": c.details}
    return Evidence("change", f"change:{c.id}", change_summary(c), data, at=c.detected_at)


def _path_evidence(path: Sequence[str]) -> list[Evidence]:
    return [
        Evidence("edge", f"{a} -> {b}", f"{last(a)} feeds {last(b)}", {"from": a, "to": b}) for a, b in pairwise(path)
    ]


def _column_evidence(via: Sequence[str]) -> Evidence:
    names = " → ".join(via)
    return Evidence("edge", " -> ".join(via), f"column lineage: {names}", {"columns": list(via)})


def _cause_column(c: ChangeView) -> str | None:
    if c.kind == "column_renamed":
        return str((c.details or {}).get("old_name") or c.subject)
    if c.kind.startswith("column_") and c.kind != "column_mapping_removed":
        return c.subject
    return None


# ----------------------------------------------------------------------------------------- the root change


def _self_caused(root_fqn: str, change: ChangeView, graph: LineageGraph) -> Hypothesis:
    column = _cause_column(change)
    evidence = [_change_evidence(change)]
    path: tuple[str, ...] = (root_fqn,)
    if change.kind == "lineage_edge_removed":
        path = (str(change.subject), change.entity_fqn)
        evidence += _path_evidence(path)
        radius = graph.blast_radius(change.entity_fqn)
    else:
        radius = graph.blast_radius(change.entity_fqn, column)
    if radius.entities:
        target = next((i for i in radius.entities if i.type == "dashboard"), radius.entities[-1])
        path = (*path[:-1], *target.path)
        edges = {e.ref: e for imp in radius.entities[:MAX_PATH_EVIDENCE] for e in _path_evidence(imp.path)}
        evidence += [e for ref, e in edges.items() if ref not in {x.ref for x in evidence}]
    evidence += [_column_evidence(c.via) for c in radius.columns[:MAX_PATH_EVIDENCE]]
    return Hypothesis(
        cause_fqn=change.entity_fqn,
        cause_column=column,
        change_kind=change.kind,
        change_id=change.id,
        summary=change_summary(change),
        confidence=SELF_CONFIDENCE,
        evidence=tuple(evidence),
        path=path,
    )


# ----------------------------------------------------------------------------------------- walking upstream


def _time_score(at: datetime, symptom_at: datetime, window: timedelta) -> float | None:
    """1 just before the symptom, falling to 0 at the edge of the window; None outside it (or after)."""
    age = symptom_at - at
    if age < timedelta(0) or age > window:
        return None
    return 1.0 - age / window if window > timedelta(0) else 1.0


def _score(weight: float, distance: int, by_column: bool, timing: float) -> float:
    closeness = 1.0 / max(distance, 1)
    raw = weight * (0.3 + 0.25 * by_column + 0.2 * closeness + 0.15 * timing)
    return round(min(raw, MAX_INFERRED_CONFIDENCE), 3)


def _candidate(
    c: ChangeView,
    root: tuple[str, str | None],
    reach: Mapping[str, tuple[int, tuple[str, ...]]],
    graph: LineageGraph,
    symptom_at: datetime,
    window: timedelta,
) -> tuple[float, int, float, int, Hypothesis] | None:
    weight = BREAKING_WEIGHT.get(c.kind)
    if weight is None or c.entity_fqn not in reach:
        return None
    if c.kind == "lineage_edge_removed" and (c.details or {}).get("direction") != "upstream":
        return None  # recorded on both ends; the downstream end's row is the one on the path
    timing = _time_score(c.detected_at, symptom_at, window)
    if timing is None:
        return None
    distance, path = reach[c.entity_fqn]
    column = _cause_column(c)
    via: tuple[str, ...] = ()
    if column:
        fed = graph.blast_radius(c.entity_fqn, column).columns
        # about one column: that column's chain; about the whole asset ("why did orders break?"): the chain to
        # any of its columns, so a column-level path is used whenever the lineage has one
        via = next((ci.via for ci in fed if (ci.entity_fqn, ci.column if root[1] else None) == root), ())
    by_column = bool(via) or (c.entity_fqn == root[0] and column is not None and column == root[1])
    confidence = _score(weight, distance, by_column, timing)
    evidence = [_change_evidence(c), *_path_evidence(path)]
    if via:
        evidence.append(_column_evidence(via))
    link = "a column-level" if by_column else "a table-level"
    hops = "on the asset itself" if distance == 0 else f"{distance} hop{'s' * (distance != 1)} upstream"
    summary = f"{change_summary(c)}, {hops} through {link} lineage path"
    hypothesis = Hypothesis(c.entity_fqn, column, c.kind, c.id, summary, confidence, tuple(evidence), path, via)
    return confidence, distance, -c.detected_at.timestamp(), c.id, hypothesis


def _reach(graph: LineageGraph, root_fqn: str, root_column: str | None) -> dict[str, tuple[int, tuple[str, ...]]]:
    """Upstream entities (the root at distance 0) with their closest flow-order path to the root."""
    reach: dict[str, tuple[int, tuple[str, ...]]] = {root_fqn: (0, (root_fqn,))}
    for path in graph.upstream_paths(root_fqn, root_column, max_depth=MAX_UPSTREAM_DEPTH):
        for i, fqn in enumerate(path[:-1]):
            sub = path[i:]
            if fqn not in reach or len(sub) - 1 < reach[fqn][0]:
                reach[fqn] = (len(sub) - 1, sub)
    for imp in graph.upstream(root_fqn, root_column, max_depth=MAX_UPSTREAM_DEPTH):
        if imp.fqn not in reach:
            reach[imp.fqn] = (imp.distance, imp.path)
    if len(reach) == 1 and root_column is not None:  # the column has no mapping: fall back to table level
        return _reach(graph, root_fqn, None)
    return reach


def _unknown(symptom: ChangeView | None) -> Hypothesis:
    evidence = (_change_evidence(symptom),) if symptom is not None else ()
    return Hypothesis("unknown", None, None, None, UNKNOWN_SUMMARY, 0.0, evidence, ())


def analyse(
    *,
    kind: str,
    root_fqn: str,
    root_column: str | None,
    cause_change_ids: Sequence[int],
    changes_by_id: Mapping[int, ChangeView],
    upstream_changes: Sequence[ChangeView],
    graph: LineageGraph,
    now: datetime,
    window: timedelta,
) -> list[Hypothesis]:
    """Root-cause hypotheses, best first; a single "unknown" one (confidence 0) when nothing explains it."""
    own = [changes_by_id[i] for i in cause_change_ids if i in changes_by_id]
    if kind in SELF_CAUSED and own:
        return [_self_caused(root_fqn, own[0], graph)]
    symptom = own[0] if own else None
    symptom_at = symptom.detected_at if symptom is not None else now
    reach = _reach(graph, root_fqn, root_column)
    skip = set(cause_change_ids)
    seen: set[int] = set()
    scored = []
    for c in upstream_changes:
        if c.id in skip or c.id in seen:
            continue
        seen.add(c.id)
        found = _candidate(c, (root_fqn, root_column), reach, graph, symptom_at, window)
        if found is not None:
            scored.append(found)
    if not scored:
        return [_unknown(symptom)]
    scored.sort(key=lambda s: (-s[0], *s[1:4]))
    return [h for *_, h in scored[:MAX_HYPOTHESES]]


# ----------------------------------------------------------------------------------------- outside context

QUERY_TOPICS: dict[str, tuple[str, ...]] = {
    "breaking_schema_change": ("{svc} schema change breaking column rename", "{svc} connector column deprecation"),
    "lineage_edge_lost": ("OpenMetadata {svc} lineage missing after ingestion",),
    "test_failing": ("{svc} outage", "{svc} data delay incident"),
    "pipeline_failed": ("{svc} outage", "{svc} task failures known issue"),
    "ownership_lost": ("OpenMetadata {svc} ingestion removes owners",),
    "trust_drop": ("{svc} outage",),
}


def _clean(text: str) -> str:
    """Only plain words go out: no quotes, operators or anything that could smuggle text into a query."""
    return " ".join(re.sub(r"[^\w .-]", " ", text).split())[:60]


def web_queries(kind: str, root_fqn: str, genes: Mapping[str, Any]) -> list[str]:
    """One or two short web search queries for outside context (vendor outages, deprecations).

    Built from the service type and the incident kind only: internal table and column names stay inside. The
    service type comes from metadata, so it is used only when it names a vendor we know (`provenance.VENDORS`).
    """
    del root_fqn  # deliberately unused: internal names never go to a search engine
    entity = (genes or {}).get("entity") or {}
    service = _clean(str(entity.get("service_type") or ""))
    if not service or service.casefold() not in VENDORS:
        return []
    topics = QUERY_TOPICS.get(kind, ("{svc} outage",))
    return [_clean(t.format(svc=service)) for t in topics[:2]]
