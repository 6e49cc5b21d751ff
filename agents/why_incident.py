"""What an incident already says about one dataset, for the why answer: its cause, column path, fix, and how it healed.

The why answer and the incident share one analysis: when an open (or recently resolved) incident is rooted at the
asked dataset or breaks it, the answer reuses the incident's stored hypotheses (the analyst's, computed by the
pipeline) instead of guessing again, and after a resolution it says what broke, when, and what healed it.
Pure functions over incident views (or the plain dicts the tests' fakes give) and change views.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from agents.analyst import change_summary
from agents.breaks import TABLE_LEVEL

OPEN_STATUSES = frozenset({"open", "acknowledged", "snoozed"})
# Change kinds that can heal a break (a rename reverted, a column back, a test or pipeline recovered, …).
HEALING_KINDS = frozenset(
    {
        "column_added",
        "column_renamed",
        "column_type_changed",
        "column_mapping_added",
        "column_nullability_changed",
        "column_constraint_changed",
        "entity_restored",
        "lineage_edge_added",
        "owner_added",
        "owner_changed",
        "pipeline_run_recovered",
        "test_recovered",
    }
)


def field_of(incident: Any, key: str) -> Any:
    """A field of an incident view (or of the plain dict a fake store gives)."""
    return incident.get(key) if isinstance(incident, Mapping) else getattr(incident, key, None)


def _details(incident: Any) -> Mapping[str, Any]:
    return field_of(incident, "details") or {}


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (str(value) if value is not None else None)


def covering(incidents: Sequence[Any], now: datetime, window: timedelta) -> Any | None:
    """The incident an answer about a dataset should follow: the first open one (the list is most severe first),
    else the one resolved last, if within `window`; None when there is neither."""
    for incident in incidents:
        if field_of(incident, "status") in OPEN_STATUSES:
            return incident
    resolved = [
        i
        for i in incidents
        if field_of(i, "status") == "resolved"
        and isinstance(field_of(i, "resolved_at"), datetime)
        and now - field_of(i, "resolved_at") <= window
    ]
    return max(resolved, key=lambda i: (field_of(i, "resolved_at"), field_of(i, "id"))) if resolved else None


def _column_path(fqn: str, details: Mapping[str, Any], top: Mapping[str, Any]) -> list[str]:
    """The column chain from the changed column to a column of `fqn`, as the incident's lineage records it."""
    prefix = f"{fqn}."
    own = list(top.get("column_path") or ())
    if len(own) > 1 and own[-1].startswith(prefix):
        return own
    chains = [
        list((e.get("data") or {}).get("columns") or ())
        for e in top.get("evidence") or ()
        if isinstance(e, Mapping) and e.get("kind") == "edge"
    ]
    ends_here = [c for c in chains if len(c) > 1 and c[-1].startswith(prefix)]
    if ends_here:
        return min(ends_here, key=len)
    cause = f"{top.get('cause_fqn')}."
    for brk in details.get("breaks") or ():
        if not isinstance(brk, Mapping) or brk.get("entity_fqn") != fqn or not brk.get("column"):
            continue
        via = [str(v) for v in brk.get("via") or ()]
        if via and TABLE_LEVEL not in via and via[0].startswith(cause):
            return [*via, f"{fqn}.{brk['column']}"]
    return []


def _entity_path(fqn: str, top: Mapping[str, Any], upstream_paths: Callable[[], Iterable[Sequence[str]]]) -> list[str]:
    """The incident's lineage path cut at `fqn` (the asked dataset), else a lineage path from the cause to it."""
    path = list(top.get("path") or ())
    if fqn in path:
        return path[: path.index(fqn) + 1]
    cause = top.get("cause_fqn")
    found = next((list(p) for p in upstream_paths() if p and p[0] == cause), None)
    return found or [p for p in (cause, fqn) if p]


def _fix(details: Mapping[str, Any]) -> dict[str, Any] | None:
    fixes = [f for f in details.get("fixes") or () if isinstance(f, Mapping)]
    if not fixes:
        return None
    f = fixes[0]
    resolves, remains = len(f.get("resolves") or ()), len(f.get("remains") or ())
    return {
        "title": f.get("title"),
        "simulated": bool(f.get("simulated")),
        "resolves": resolves,
        "of": resolves + remains,
    }


def incident_ref(incident: Any) -> dict[str, Any]:
    """The incident as a why answer names it."""
    keys = ("id", "kind", "severity", "status", "title", "root_fqn", "root_column")
    out = {k: field_of(incident, k) for k in keys}
    out |= {"opened_at": _iso(field_of(incident, "opened_at")), "resolved_at": _iso(field_of(incident, "resolved_at"))}
    out["ref"] = f"incident:{out['id']}"
    return out


def cause_for(
    fqn: str, incident: Any, upstream_paths: Callable[[], Iterable[Sequence[str]]] = tuple
) -> dict[str, Any] | None:
    """The incident's top hypothesis as the cause of `fqn`'s trouble (its root, or an asset it breaks), with the
    column path to `fqn` when the lineage has one and the proposed fix; None when the incident holds no analysis.
    `upstream_paths` (lineage paths down to `fqn`) is called only when the incident's own path misses `fqn`."""
    details = _details(incident)
    hypotheses = [h for h in details.get("hypotheses") or () if isinstance(h, Mapping)]
    if not hypotheses:
        return None
    top = hypotheses[0]
    root = field_of(incident, "root_fqn")
    distance = next(
        (
            b.get("distance")
            for b in details.get("breaks") or ()
            if isinstance(b, Mapping) and b.get("entity_fqn") == fqn
        ),
        0,
    )
    known = top.get("cause_fqn") not in (None, "unknown")
    return {
        "incident_id": field_of(incident, "id"),
        "role": "root" if fqn == root else "impacted",
        "cause_fqn": top.get("cause_fqn"),
        "cause_column": top.get("cause_column"),
        "change_id": top.get("change_id"),
        "change_kind": top.get("change_kind"),
        "summary": top.get("summary"),
        "confidence": top.get("confidence"),
        "distance": distance,
        "path": list(top.get("path") or ()) if fqn == root or not known else _entity_path(fqn, top, upstream_paths),
        "column_path": _column_path(fqn, details, top) if known else [],
        "fix": _fix(details),
    }


def spent_change_ids(incident: Any, links: Iterable[Any] = ()) -> set[int]:
    """Changes a resolved incident already explained (its causes and symptoms): no longer a cause of anything."""
    ids = {int(i) for i in _details(incident).get("cause_change_ids") or ()}
    return ids | {int(field_of(link, "change_id")) for link in links}


def healing(
    incident: Any, events: Sequence[Any], links: Sequence[Any], changes: Iterable[Any]
) -> dict[str, Any] | None:
    """How a resolved incident healed: who resolved it, when and why, and the changes on its root (or cause) that
    arrived while it was open (e.g. the revert of the rename); None while it is not resolved."""
    if field_of(incident, "status") != "resolved":
        return None
    resolved = next((e for e in reversed(events) if field_of(e, "status_to") == "resolved"), None)
    opened_at, resolved_at = field_of(incident, "opened_at"), field_of(incident, "resolved_at")
    hypotheses = _details(incident).get("hypotheses") or [{}]
    where = {field_of(incident, "root_fqn"), (hypotheses[0] or {}).get("cause_fqn")}
    spent = spent_change_ids(incident, links)
    healed_by = [
        c
        for c in changes
        if c.entity_fqn in where
        and c.kind in HEALING_KINDS
        and c.id not in spent
        and (opened_at is None or c.detected_at > opened_at)
        and (resolved_at is None or c.detected_at <= resolved_at)
    ]
    healed_by.sort(key=lambda c: (c.detected_at, c.id))
    return {
        "incident_id": field_of(incident, "id"),
        "resolved_at": _iso(resolved_at),
        "by": field_of(resolved, "actor") if resolved is not None else None,
        "automatic": field_of(resolved, "kind") == "auto_resolved" if resolved is not None else False,
        "reason": (field_of(resolved, "reason") or field_of(resolved, "note")) if resolved is not None else None,
        "changes": [
            {
                "id": c.id,
                "ref": f"change:{c.id}",
                "entity_fqn": c.entity_fqn,
                "kind": c.kind,
                "summary": change_summary(c),
                "detected_at": c.detected_at.isoformat(),
            }
            for c in healed_by
        ],
    }
