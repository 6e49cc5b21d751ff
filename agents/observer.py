"""The observer: a run's changes in, incident drafts, symptoms to attach and incidents to auto-resolve out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agents import breaks as bk
from agents import observer_quality as oq
from agents.autoresolve import resolution
from agents.config import AgentConfig
from agents.model import Break, IncidentDraft, IncidentLike, incident_fingerprint
from agents.severity import is_used, severity
from storage.domain.lineage import LineageGraph
from storage.openmetadata.fqn import build, column_fqn, last, split
from storage.persistence.store import ChangeView

SCHEMA_KINDS = ("column_removed", "column_renamed", "column_type_changed")
GenesOf = Callable[[str], "dict[str, Any] | None"]


@dataclass(frozen=True)
class ObserverResult:
    """New drafts, symptoms for open incidents and for this run's drafts, and incidents to auto-resolve.

    `details` maps a draft's fingerprint to facts to keep in the incident's details (old/new column, expected
    type, edge ends, test FQN and results, trust before); auto-resolve reads them back. `refresh` holds details
    patches for open incidents: the newer results of their failing tests (`observer_quality.refreshed`).
    """

    drafts: list[IncidentDraft]
    attach: list[tuple[int, list[int]]]  # (open incident id, symptom change ids)
    resolve: list[tuple[int, str]]  # (open incident id, reason)
    draft_symptoms: list[tuple[str, list[int]]] = field(default_factory=list)  # (draft fingerprint, change ids)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    refresh: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (open incident id, details patch)


@dataclass
class _Cause:
    """A draft under construction."""

    key: tuple[str, ...]
    kind: str
    root_fqn: str
    root_column: str | None
    title: str
    change_ids: list[int]
    breaks: list[Break]
    facts: dict[str, Any]
    symptoms: list[int] = field(default_factory=list)
    first_row: int = 0  # orders a draft with no change row of its own (a test opened from its OM incident)

    @property
    def fingerprint(self) -> str:
        return incident_fingerprint(*self.key)


@dataclass(frozen=True)
class _Target:
    """Where a symptom may attach: an open incident (by id) or a draft of this run (by fingerprint)."""

    ref: int | str
    opened_at: datetime | None  # None: a draft of this run (always within the window)
    root: tuple[str, str | None]
    distances: dict[tuple[str, str | None], int]

    def distance(self, entity: str, column: str | None) -> int | None:
        """How far the symptom is from the cause, None when it is not in the blast radius."""
        found = [d for k, d in self.distances.items() if k[0] == entity and (column is None or k[1] in (None, column))]
        if entity == self.root[0] and (column is None or self.root[1] in (None, column)):
            found.append(0)
        return min(found, default=None)


def _short(fqn: str, column: str | None = None) -> str:
    return f"{last(fqn)}.{column}" if column else last(fqn)


# ----------------------------------------------------------------------------------------- causes


def _mappings_moved_to(changes: Sequence[ChangeView], entity: str, column: str) -> bool:
    """Did this run re-point column mappings to `entity.column` (a server that rewrites lineage on rename)?"""
    target = column_fqn(entity, column)
    for c in changes:
        if c.kind == "column_mapping_added":
            sources = (c.details or {}).get("from") or []
            if target in (sources if isinstance(sources, list) else [sources]):
                return True
    return False


def _schema_cause(
    change: ChangeView, graph: LineageGraph, genes_of: GenesOf, changes: Sequence[ChangeView] = ()
) -> _Cause | None:
    details = change.details or {}
    entity = change.entity_fqn
    columns = ((genes_of(entity) or {}).get("schema") or {}).get("columns") or []
    new: str | None = None
    if change.kind == "column_renamed":
        old = str(details.get("old_name") or change.subject)
        new = str(details.get("new_name") or change.new_value)
        expected = bk.type_signature(bk.find_column(columns, new))
        what = f"{_short(entity, old)} renamed to {new}"
    elif change.kind == "column_type_changed":
        old = str(change.subject)
        expected = bk.type_signature(change.old_value if isinstance(change.old_value, Mapping) else None)
        now = bk.type_signature(change.new_value if isinstance(change.new_value, Mapping) else None)
        what = f"{_short(entity, old)} changed type from {expected} to {now}"
    else:
        old = str(change.subject)
        expected = bk.type_signature(change.old_value if isinstance(change.old_value, Mapping) else None)
        what = f"{_short(entity, old)} dropped"
    # Follow the new name only if this run moved mappings onto it: a revert (order_state → status, where
    # `status` was always the mapped column) heals the dependants instead of breaking them.
    follow = new if new and _mappings_moved_to(changes, entity, new) else None
    found = bk.schema_breaks(graph, entity, old, columns, expected, renamed_to=follow)
    if not found:
        return None  # no dependants: a change, not an incident
    facts = {
        "change_kind": change.kind,
        "old_column": old,
        "new_column": new,
        "expected_type": expected,
        "mappings_follow_rename": follow is not None,
    }
    return _Cause(
        ("schema", entity, old),
        "breaking_schema_change",
        entity,
        old,
        what + bk.impact_text(found),
        [change.id],
        found,
        facts,
    )


def _edge_cause(change: ChangeView, graph: LineageGraph) -> _Cause | None:
    src, dst = str(change.subject), change.entity_fqn
    found = bk.edge_breaks(graph, src, dst, bk.has_edge(graph, src, dst))
    if not found:
        return None
    pipeline = (change.old_value or {}).get("pipeline") if isinstance(change.old_value, Mapping) else None
    title = f"Lineage lost: {_short(src)} → {_short(dst)}{bk.impact_text(found)}"
    facts = {"edge_from": src, "edge_to": dst, "pipeline": pipeline}
    return _Cause(("edge", src, dst), "lineage_edge_lost", dst, None, title, [change.id], found, facts)


def _pipeline_cause(rows: Sequence[ChangeView], graph: LineageGraph) -> _Cause:
    pipeline = str(rows[0].subject)
    loads = sorted({r.entity_fqn for r in rows if r.entity_fqn != pipeline})
    found = bk.pipeline_breaks(graph, pipeline, "Failed", loads)
    tasks = sorted({t for r in rows for t in (r.details or {}).get("failed_tasks") or ()})
    title = f"Pipeline failed: {pipeline}" + (f" (failed tasks: {', '.join(tasks)})" if tasks else "")
    own = [r.id for r in rows if r.entity_fqn == pipeline] or [r.id for r in rows]
    cause = _Cause(("pipeline", pipeline), "pipeline_failed", pipeline, None, title, own, found, {})
    cause.facts = {"pipeline": pipeline, "failed_tasks": tasks, "loads": loads}
    cause.symptoms = [r.id for r in rows if r.id not in own]
    return cause


def _test_cause(
    entity: str,
    test_fqn: str,
    source: Mapping[str, Any],
    om: Any,
    change_ids: list[int],
    graph: LineageGraph,
    seen_at: datetime,
) -> _Cause:
    """`source`: the test's gene entry or its change row's details (column, result); `om`: its OM incident."""
    column = source.get("column")
    found = bk.test_breaks(graph, entity, column, test_fqn, "Failed")
    title = f"Test failing: {last(test_fqn)} on {_short(entity, column)}"
    result = oq.result_entry(entity, test_fqn, source, seen_at)
    facts = {"test_fqn": test_fqn, "result": result["text"], "om_incident": om, "test_results": [result]}
    return _Cause(("test", test_fqn), "test_failing", entity, column, title, change_ids, found, facts)


def _join_results(target: _Cause, symptom: _Cause) -> None:
    """A failing test joining a draft brings its result along (the draft's own results first)."""
    if symptom.facts.get("test_results"):
        kept = target.facts.get("test_results") or []
        target.facts["test_results"] = oq.merge_results(kept, symptom.facts["test_results"])


def _deleted_cause(change: ChangeView, graph: LineageGraph, genes_of: GenesOf) -> _Cause | None:
    entity = change.entity_fqn
    found = bk.deleted_breaks(graph, entity, genes_of)
    if not found:
        return None  # nothing downstream: a change, not an incident
    parts = split(entity)
    name = build(*parts[-2:]) if len(parts) >= 4 else last(entity)  # schema.table for tables
    title = f"{name} was deleted{bk.impact_text(found, assets=True)}"
    facts = {"change_kind": change.kind, "deleted_fqn": entity}
    return _Cause(("deleted", entity), "breaking_schema_change", entity, None, title, [change.id], found, facts)


def _trust_cause(change: ChangeView) -> _Cause:
    title = f"Trust dropped on {_short(change.entity_fqn)}: {change.old_value} → {change.new_value}"
    facts = {"trust_before": change.old_value, "trust_after": change.new_value}
    return _Cause(("trust", change.entity_fqn), "trust_drop", change.entity_fqn, None, title, [change.id], [], facts)


def _ownership_cause(rows: Sequence[ChangeView], genes_of: GenesOf) -> _Cause | None:
    entity = rows[0].entity_fqn
    genes = genes_of(entity)
    if not genes or (genes.get("ownership") or {}).get("owners"):
        return None
    if not (is_used(genes) or (genes.get("ownership") or {}).get("tier")):
        return None
    previous = [r.subject for r in rows if r.subject]
    title = f"No owner left on {_short(entity)}" + (f" (was {', '.join(previous)})" if previous else "")
    facts = {"previous_owners": previous}
    return _Cause(
        ("ownership", entity),
        "ownership_lost",
        entity,
        None,
        title,
        [r.id for r in rows],
        bk.ownership_breaks(genes),
        facts,
    )


# ----------------------------------------------------------------------------------------- grouping


def _incident_target(inc: IncidentLike) -> _Target:
    distances: dict[tuple[str, str | None], int] = {}
    for d in (inc.details or {}).get("breaks") or ():
        key = bk.break_key(d)
        distances[key] = min(distances.get(key, 1 << 30), int(d.get("distance") or 0))
    return _Target(inc.id, inc.opened_at, (inc.root_fqn, inc.root_column), distances)


def _draft_target(cause: _Cause) -> _Target:
    distances: dict[tuple[str, str | None], int] = {}
    for b in cause.breaks:
        distances.setdefault(bk.break_key(b), b.distance)
    return _Target(cause.fingerprint, None, (cause.root_fqn, cause.root_column), distances)


def _best_target(
    places: Sequence[tuple[str, str | None]], at: datetime, targets: Sequence[_Target], config: AgentConfig
) -> _Target | None:
    """The closest target whose blast radius holds one of `places`, among those within the group window."""
    scored = []
    for order, target in enumerate(targets):
        if target.opened_at is not None and at - target.opened_at > config.group_window:
            continue
        found = [d for e, c in places if (d := target.distance(e, c)) is not None]
        if found:
            scored.append((min(found), order, target))
    return min(scored, key=lambda s: (s[0], s[1]))[2] if scored else None


def _symptom_groups(changes: Sequence[ChangeView]) -> list[tuple[str, list[ChangeView]]]:
    """Symptom rows grouped by what they are about, in a fixed order: edges, pipelines, tests, trust."""
    groups: dict[tuple[str, str], list[ChangeView]] = {}
    for c in changes:
        if c.kind == "lineage_edge_removed" and (c.details or {}).get("direction") == "upstream":
            groups.setdefault(("0edge", f"{c.subject}|{c.entity_fqn}"), []).append(c)
        elif c.kind == "pipeline_run_failed":
            groups.setdefault(("1pipeline", str(c.subject)), []).append(c)
        elif c.kind == "test_newly_failing":
            groups.setdefault(("2test", str(c.subject)), []).append(c)
        elif c.kind == "trust_dropped":
            groups.setdefault(("3trust", c.entity_fqn), []).append(c)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0], min(c.id for c in kv[1])))
    return [(key[0][1:], rows) for key, rows in ordered]


def _symptom_cause(kind: str, rows: Sequence[ChangeView], graph: LineageGraph, genes_of: GenesOf) -> _Cause | None:
    if kind == "edge":
        return _edge_cause(rows[0], graph)
    if kind == "pipeline":
        return _pipeline_cause(rows, graph)
    if kind == "test":
        row, test = rows[0], str(rows[0].subject)
        gene = oq.find_test(genes_of(row.entity_fqn), test)
        om = oq.om_incident(gene) or oq.om_incident(row.details)
        # The gene holds the latest result (and, when it has them, its time and values) while it still fails.
        source = {**(row.details or {}), **(gene if gene and gene.get("status") == "Failed" else {})}
        at = max(r.detected_at for r in rows)
        return _test_cause(row.entity_fqn, test, source, om, [row.id], graph, at)
    return _trust_cause(rows[0])


Symptom = tuple[_Cause, list[int], datetime, list[tuple[str, str | None]]]


def _symptoms(
    changes: Sequence[ChangeView], graph: LineageGraph, genes_of: GenesOf, scan: Sequence[str], now: datetime
) -> list[Symptom]:
    """Each symptom's cause, change ids, time and places; then failing tests with an open OM incident."""
    out: list[Symptom] = []
    for kind, rows in _symptom_groups(changes):
        if (cause := _symptom_cause(kind, rows, graph, genes_of)) is not None:
            at = max(r.detected_at for r in rows)
            out.append((cause, sorted(r.id for r in rows), at, _places(kind, rows, cause)))
    newly = [str(c.subject) for c in changes if c.kind == "test_newly_failing"]
    for t in oq.open_in_om(changes, genes_of, skip=newly, extra=scan, now=now):
        cause = _test_cause(t.entity, t.fqn, t.test, oq.om_incident(t.test), list(t.change_ids), graph, t.at)
        cause.first_row = t.first_row
        out.append((cause, list(t.change_ids), t.at, [(cause.root_fqn, cause.root_column)]))
    return out


def _places(kind: str, rows: Sequence[ChangeView], cause: _Cause) -> list[tuple[str, str | None]]:
    """The (entity, column) spots a symptom sits on, to look up in a blast radius."""
    if kind == "pipeline":
        places: list[tuple[str, str | None]] = [(cause.root_fqn, None)]
        return places + [(r.entity_fqn, None) for r in rows]
    return [(cause.root_fqn, cause.root_column)]


# ----------------------------------------------------------------------------------------- the observer


def _draft(cause: _Cause, genes_of: GenesOf, now: datetime) -> IncidentDraft:
    root_genes = genes_of(cause.root_fqn)
    impacted = list(dict.fromkeys(b.entity_fqn for b in cause.breaks if b.distance > 0))
    impacted_genes = [genes_of(f) for f in impacted]
    dashboards = bk.dashboards_of(cause.breaks)
    sev, reasons = severity(
        cause.kind, breaks=cause.breaks, dashboards=dashboards, root_genes=root_genes, impacted_genes=impacted_genes
    )
    owners: dict[str, None] = {}
    for genes in [root_genes, *impacted_genes]:
        for owner in ((genes or {}).get("ownership") or {}).get("owners") or ():
            owners.setdefault(str(owner.get("name")), None)
    return IncidentDraft(
        fingerprint=cause.fingerprint,
        kind=cause.kind,
        severity=sev,
        title=cause.title,
        root_fqn=cause.root_fqn,
        root_column=cause.root_column,
        cause_change_ids=tuple(sorted(cause.change_ids)),
        breaks=tuple(cause.breaks),
        dashboards=dashboards,
        charts=bk.charts_of(cause.breaks),
        owners=tuple(owners),
        severity_reasons=reasons,
        opened_at=now,
    )


def _cause_drafts(changes: Sequence[ChangeView], graph: LineageGraph, genes_of: GenesOf) -> list[_Cause]:
    """Schema, deletion and ownership causes: they open their own incident, never attach."""
    causes: dict[str, _Cause] = {}
    for c in changes:
        if c.kind in SCHEMA_KINDS or c.kind == "entity_deleted":
            if c.kind in SCHEMA_KINDS:
                cause = _schema_cause(c, graph, genes_of, changes)
            else:
                cause = _deleted_cause(c, graph, genes_of)
            if cause is None:
                continue
            if cause.fingerprint in causes:  # one incident per (entity, old column)
                causes[cause.fingerprint].change_ids.append(c.id)
            else:
                causes[cause.fingerprint] = cause
    removed: dict[str, list[ChangeView]] = {}
    for c in changes:
        if c.kind == "owner_removed":
            removed.setdefault(c.entity_fqn, []).append(c)
    for entity in sorted(removed):
        owned = _ownership_cause(removed[entity], genes_of)
        if owned is not None:
            causes.setdefault(owned.fingerprint, owned)
    return list(causes.values())


def observe(
    changes: Sequence[ChangeView],
    *,
    open_incidents: Sequence[IncidentLike],
    graph: LineageGraph,
    genes_of: GenesOf,
    now: datetime,
    config: AgentConfig,
    scan_entities: Sequence[str] = (),
) -> ObserverResult:
    """Turn a run's changes into drafts, attachments and auto-resolutions (pure; deterministic order).

    `scan_entities` are looked at for failing tests with an open OpenMetadata incident even without a change
    in this run: the first sync passes every table, so incidents already open in OpenMetadata are not missed.
    """
    changes = sorted(changes, key=lambda c: c.id)
    open_list = sorted((i for i in open_incidents if i.status != "resolved"), key=lambda i: i.id)
    resolve = [(i.id, reason) for i in open_list if (reason := resolution(i, graph, genes_of, config)) is not None]
    resolving = {i for i, _ in resolve}
    open_fps = {i.fingerprint for i in open_list}
    targets = [_incident_target(i) for i in open_list if i.id not in resolving]
    causes = [c for c in _cause_drafts(changes, graph, genes_of) if c.fingerprint not in open_fps]
    by_fp = {c.fingerprint: c for c in causes}
    targets += [_draft_target(c) for c in causes]
    attach: dict[int, list[int]] = {}
    joined: dict[int, list[dict[str, Any]]] = {}  # results of the failing tests that join open incidents
    for cause, ids, at, places in _symptoms(changes, graph, genes_of, scan_entities, now):
        if cause.fingerprint in open_fps:
            continue
        if cause.fingerprint in by_fp:
            by_fp[cause.fingerprint].symptoms += [i for i in ids if i not in by_fp[cause.fingerprint].change_ids]
            _join_results(by_fp[cause.fingerprint], cause)
            continue
        target = _best_target(places, at, targets, config)
        if target is None:
            causes.append(cause)
            by_fp[cause.fingerprint] = cause
            targets.append(_draft_target(cause))
        elif isinstance(target.ref, int):
            if ids:
                attach.setdefault(target.ref, []).extend(ids)
                joined.setdefault(target.ref, []).extend(cause.facts.get("test_results") or ())
        else:
            by_fp[target.ref].symptoms += ids
            _join_results(by_fp[target.ref], cause)
    causes.sort(key=lambda c: min(c.change_ids, default=c.first_row))
    return ObserverResult(
        drafts=[_draft(c, genes_of, now) for c in causes],
        attach=[(i, sorted(set(ids))) for i, ids in sorted(attach.items())],
        resolve=resolve,
        draft_symptoms=[(c.fingerprint, sorted(set(c.symptoms))) for c in causes if c.symptoms],
        details={c.fingerprint: {**c.facts, "key": list(c.key)} for c in causes},
        refresh=oq.refreshed((i for i in open_list if i.id not in resolving), genes_of, joined, now),
    )
