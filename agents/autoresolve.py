"""Auto-resolve: whether an open incident's cause is gone, judged from the current genes and lineage graph."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agents import breaks as bk
from agents.config import AgentConfig
from agents.model import IncidentLike, incident_fingerprint
from agents.observer_quality import resolved_note, tests_of
from storage.domain.lineage import LineageGraph
from storage.domain.trust import trust_score

GenesOf = Callable[[str], "dict[str, Any] | None"]
_FACT_KEYS = ("change_kind", "old_column", "new_column", "expected_type", "trust_before")


def _facts(details: Mapping[str, Any]) -> dict[str, Any]:
    """The observer's facts, else what the stored cause change row tells."""
    cause = details.get("cause") or {}
    facts: dict[str, Any] = {"change_kind": cause.get("kind")}
    if cause.get("kind") == "column_renamed":
        facts["new_column"] = (cause.get("details") or {}).get("new_name") or cause.get("new_value")
    if cause.get("kind") in ("column_type_changed", "column_removed") and isinstance(cause.get("old_value"), Mapping):
        facts["expected_type"] = bk.type_signature(cause["old_value"])
    facts.update({k: v for k, v in details.items() if k in _FACT_KEYS and v is not None})
    return facts


def _schema(inc: IncidentLike, graph: LineageGraph, genes: Mapping[str, Any]) -> str | None:
    facts = _facts(inc.details)
    column = facts.get("old_column") or inc.root_column
    if not column:
        return None
    expected = facts.get("expected_type")
    columns = (genes.get("schema") or {}).get("columns") or []
    col = bk.find_column(columns, column)
    retyped = facts.get("change_kind") == "column_type_changed" or any(
        (b.get("reason") == "type_mismatch") for b in inc.details.get("breaks") or ()
    )
    if col is not None and (expected is not None or not retyped) and bk.type_matches(col, expected):
        return f"change reverted: {column} is back"
    follow = facts.get("new_column") if facts.get("mappings_follow_rename") else None
    if not bk.schema_breaks(graph, inc.root_fqn, column, columns, expected, renamed_to=follow):
        return "no dependants left"
    return None


def _edge(inc: IncidentLike, graph: LineageGraph, genes: Mapping[str, Any] | None) -> str | None:
    candidates = {i.fqn for i in graph.upstream(inc.root_fqn, max_depth=1)}
    candidates |= {e.get("fqn") for e in ((genes or {}).get("lineage") or {}).get("upstream") or ()}
    for src in sorted(c for c in candidates if c):
        if incident_fingerprint("edge", src, inc.root_fqn) == inc.fingerprint:
            return f"lineage edge is live again: {src} → {inc.root_fqn}"
    return None


def _test(inc: IncidentLike, genes: Mapping[str, Any]) -> str | None:
    """Recovered (latest result Success), or resolved in OpenMetadata even while the result still fails."""
    for test in tests_of(genes):
        if incident_fingerprint("test", str(test.get("fqn"))) == inc.fingerprint:
            if test.get("status") == "Success":
                return f"test recovered: {test.get('name') or test.get('fqn')}"
            return resolved_note(test)
    return None


def is_deletion(inc: IncidentLike) -> bool:
    """Whether the incident is a deleted upstream asset (a breaking change keyed ("deleted", fqn))."""
    return inc.kind == "breaking_schema_change" and inc.fingerprint == incident_fingerprint("deleted", inc.root_fqn)


def _pipeline(inc: IncidentLike, genes: Mapping[str, Any]) -> str | None:
    for run in (genes.get("pipeline") or {}).get("runs") or ():
        if incident_fingerprint("pipeline", str(run.get("fqn"))) == inc.fingerprint:
            return f"pipeline run succeeded: {run.get('fqn')}" if run.get("status") in bk.OK_RUN_STATUSES else None
    return None


def _ownership(genes: Mapping[str, Any]) -> str | None:
    owners = [str(o.get("name")) for o in (genes.get("ownership") or {}).get("owners") or ()]
    return f"owned again by {', '.join(owners)}" if owners else None


def _trust(inc: IncidentLike, genes: Mapping[str, Any], config: AgentConfig) -> str | None:
    before = _facts(inc.details).get("trust_before")
    if not isinstance(before, (int, float)):
        cause = inc.details.get("cause") or {}
        before = cause.get("old_value") if isinstance(cause.get("old_value"), (int, float)) else None
    if before is None:
        return None
    try:
        now = trust_score(genes).score
    except (KeyError, TypeError):
        return None  # genes too partial to score
    if before - now <= config.trust_drop_threshold / 2:
        return f"trust back to {now} (was {before} before the drop)"
    return None


def resolution(inc: IncidentLike, graph: LineageGraph, genes_of: GenesOf, config: AgentConfig) -> str | None:
    """Why the incident can be auto-resolved now, or None while its cause is still there."""
    genes = genes_of(inc.root_fqn)
    if inc.kind == "lineage_edge_lost":
        return _edge(inc, graph, genes)
    if not genes:
        return None  # the root is unknown or gone: nothing to judge by
    if is_deletion(inc):
        return None if (genes.get("entity") or {}).get("deleted") else "restored"
    if inc.kind == "breaking_schema_change":
        return _schema(inc, graph, genes)
    if inc.kind == "test_failing":
        return _test(inc, genes)
    if inc.kind == "pipeline_failed":
        return _pipeline(inc, genes)
    if inc.kind == "ownership_lost":
        return _ownership(genes)
    if inc.kind == "trust_drop":
        return _trust(inc, genes, config)
    return None
