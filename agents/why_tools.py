"""The why-agent's tools over the DNA store: DNA, timeline, blast radius, upstream, incidents, trust, rules."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agents import analyst
from agents.model import CAUSE_INCIDENT_KINDS
from storage import graph as graph_store
from storage import store
from storage.errors import DatasetNotFound
from storage.fqn import FQNError, last

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from storage.lineage import LineageGraph

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ store tools
OPEN_STATUSES = frozenset({"open", "acknowledged", "snoozed"})
# The analyst part of a rules answer: (fqn, recent changes on it and upstream, graph) -> top hypothesis or None.
Analyst = Callable[[str, list[dict[str, Any]], "LineageGraph"], "dict[str, Any] | Any | None"]


def _change_dict(c: Any, distance: int = 0) -> dict[str, Any]:
    return {
        "id": c.id,
        "ref": f"change:{c.id}",
        "entity_fqn": c.entity_fqn,
        "kind": c.kind,
        "subject": c.subject,
        "old_value": c.old_value,
        "new_value": c.new_value,
        "detected_at": c.detected_at.isoformat(),
        "distance": distance,
    }


def _incident_dict(view: Any) -> dict[str, Any]:
    keys = ("id", "kind", "severity", "status", "title", "root_fqn", "root_column", "opened_at", "assignee")
    row = view if isinstance(view, dict) else {k: getattr(view, k, None) for k in keys}
    out = {k: row.get(k) for k in keys}
    out["opened_at"] = str(out["opened_at"]) if out["opened_at"] is not None else None
    out["ref"] = f"incident:{out['id']}"
    return out


def _last_name(text: str) -> str:
    try:
        return last(text.strip().strip("`"))
    except FQNError:
        return text


def _relevance(session: Session, fqn: str) -> tuple[int, int, float, str]:
    """Rank same-named datasets: touched by an open incident, a table, usage percentile (then name, stably)."""
    try:
        from storage.incidents import incidents_for

        touched = any(i.status != "resolved" for i in incidents_for(session, fqn))
    except ImportError:  # pragma: no cover - incidents are part of the store
        touched = False
    view = store.dna_at(session, fqn)
    genes = view.genes if view else {}
    usage = (genes.get("usage") or {}).get("percentile") or 0.0
    is_table = (genes.get("entity") or {}).get("type") == "table"
    return (int(touched), int(is_table), float(usage), fqn)


def analyst_hypothesis(
    fqn: str, changes: list[store.ChangeView], graph: LineageGraph, now: datetime, window: timedelta
) -> dict[str, Any] | None:
    """The analyst's best hypothesis for "why did `fqn` break?": its own breaking change, else one upstream."""
    own = [c for c in changes if c.entity_fqn == fqn and c.kind in CAUSE_INCIDENT_KINDS]
    by_id = {c.id: c for c in changes}
    if own:
        cause = max(own, key=lambda c: (c.detected_at, c.id))
        kind = CAUSE_INCIDENT_KINDS[cause.kind]
        column = (cause.details or {}).get("old_name") or cause.subject if kind == "breaking_schema_change" else None
        hypotheses = analyst.analyse(
            kind=kind,
            root_fqn=fqn,
            root_column=column,
            cause_change_ids=(cause.id,),
            changes_by_id=by_id,
            upstream_changes=changes,
            graph=graph,
            now=now,
            window=window,
        )
    else:
        hypotheses = analyst.analyse(
            kind="test_failing",
            root_fqn=fqn,
            root_column=None,
            cause_change_ids=(),
            changes_by_id=by_id,
            upstream_changes=changes,
            graph=graph,
            now=now,
            window=window,
        )
    return hypotheses[0].to_dict() if hypotheses else None


class StoreWhyTools:
    """`WhyTools` over the DNA store: one short session per call (safe to share between requests)."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        graph_loader: Callable[[Session], LineageGraph] | None = None,
        *,
        analyst: Analyst | None = None,
        now: Callable[[], datetime] | None = None,
        since_days: int = 7,
        max_items: int = 50,
        visible: Callable[[list[Any]], list[Any]] | None = None,
    ) -> None:
        self.session_factory = session_factory
        # which of a dataset's incidents this answer may name (its reader may not see every channel's)
        self.visible = visible
        self.graph_loader = graph_loader or graph_store.graph_at
        self.analyst = analyst
        self.now = now  # pinned by tests; the wall clock otherwise
        self.since_days = since_days
        self.max_items = max_items

    def _now(self) -> datetime:
        return self.now() if self.now else datetime.now(UTC)

    def resolve(self, text: str) -> str:
        """The dataset a name means. When several share the name (raw.orders, analytics.orders, model.orders),
        the one an open incident touches wins, then the most used table: "why did orders break?" is about the
        orders that broke."""
        with self.session_factory() as session:
            try:
                return store.resolve_fqn(session, text)
            except DatasetNotFound as exc:
                same_name = [s for s in exc.suggestions if _last_name(s).lower() == _last_name(text).lower()]
                if len(same_name) < 2:
                    raise
                return max(same_name, key=lambda fqn: _relevance(session, fqn))

    def dna(self, fqn: str) -> dict[str, Any]:
        with self.session_factory() as session:
            view = store.dna_at(session, fqn)
        if view is None:
            raise DatasetNotFound(fqn)
        genes, n = view.genes, self.max_items
        tests = (genes.get("quality") or {}).get("tests") or []
        ownership = genes.get("ownership") or {}
        return {
            "fqn": view.entity_fqn,
            "type": view.entity_type,
            "display_name": (genes.get("entity") or {}).get("display_name"),
            "deleted": view.deleted,
            "taken_at": view.taken_at.isoformat(),
            "trust_score": view.trust_score,
            "columns": [
                {"name": c.get("name"), "type": c.get("type")} for c in (genes.get("schema") or {}).get("columns", [])
            ][:n],
            "owners": [o.get("name") for o in ownership.get("owners") or []],
            "tier": ownership.get("tier"),
            "usage": genes.get("usage"),
            "tests": [{"fqn": t.get("fqn"), "status": t.get("status")} for t in tests][:n],
            "pipeline_runs": (genes.get("pipeline") or {}).get("runs", [])[:n],
        }

    def timeline(self, fqn: str, since_days: int = 7) -> dict[str, Any]:
        with self.session_factory() as session:
            changes = store.timeline(session, fqn, self._now() - timedelta(days=since_days))
        return {"fqn": fqn, "since_days": since_days, "changes": [_change_dict(c) for c in changes][-self.max_items :]}

    def blast(self, fqn: str, column: str | None = None) -> dict[str, Any]:
        with self.session_factory() as session:
            radius = graph_store.blast_radius(session, fqn, column, graph=self.graph_loader(session))
        n = self.max_items
        return {
            "root": fqn,
            "column": column,
            "entities": [{"fqn": i.fqn, "type": i.type, "distance": i.distance} for i in radius.entities][:n],
            "columns": [f"{c.entity_fqn}.{c.column}" for c in radius.columns][:n],
            "dashboards": radius.dashboards[:n],
            "charts": radius.charts[:n],
            "pipelines": radius.pipelines[:n],
            "counts": {"entities": len(radius.entities), "columns": len(radius.columns)},
        }

    def upstream(self, fqn: str, column: str | None = None) -> dict[str, Any]:
        with self.session_factory() as session:
            g = self.graph_loader(session)
        impacts = g.upstream(fqn, column)[: self.max_items]
        return {
            "fqn": fqn,
            "column": column,
            "upstream": [{"fqn": i.fqn, "type": i.type, "distance": i.distance} for i in impacts],
            "paths": [list(p) for p in g.upstream_paths(fqn, column, limit=5)],
        }

    def _incident_rows(self, session: Session, fqn: str) -> list[dict[str, Any]] | None:
        try:
            from storage.incidents import incidents_for
        except ImportError:  # incident storage not installed: answer without it
            return None
        views = incidents_for(session, fqn)
        if self.visible is not None:
            views = self.visible(views)
        return [_incident_dict(v) for v in views]

    def incidents(self, fqn: str) -> dict[str, Any]:
        with self.session_factory() as session:
            rows = self._incident_rows(session, fqn)
        return {"fqn": fqn, "available": rows is not None, "incidents": (rows or [])[: self.max_items]}

    def trust(self, fqn: str) -> dict[str, Any]:
        with self.session_factory() as session:
            view = store.dna_at(session, fqn)
            history = store.snapshots_between(session, fqn, self._now() - timedelta(days=30))
        if view is None:
            raise DatasetNotFound(fqn)
        points = [{"at": s.taken_at.isoformat(), "score": s.trust_score} for s in history][-self.max_items :]
        return {"fqn": fqn, "score": view.trust_score, "factors": view.trust_factors, "history": points}

    def rules_answer(self, fqn: str, question: str) -> dict[str, Any]:
        since = self._now() - timedelta(days=self.since_days)
        with self.session_factory() as session:
            g = self.graph_loader(session)
            ups = g.upstream(fqn)[: self.max_items]
            distance = {fqn: 0, **{i.fqn: i.distance for i in ups}}
            views = [(c, d) for f, d in distance.items() for c in store.timeline(session, f, since)]
            changes = [_change_dict(c, d) for c, d in views]
            rows = self._incident_rows(session, fqn)
            view = store.dna_at(session, fqn)
        changes.sort(key=lambda c: (c["detected_at"], c["id"]), reverse=True)
        if self.analyst is not None:
            top = self.analyst(fqn, changes, g)
        else:
            top = analyst_hypothesis(fqn, [c for c, _ in views], g, self._now(), timedelta(days=self.since_days))
        if top is not None and not isinstance(top, dict):
            top = top.to_dict()
        return {
            "fqn": fqn,
            "since_days": self.since_days,
            "incidents": [r for r in rows or [] if r["status"] in OPEN_STATUSES],
            "changes": changes[: self.max_items],
            "hypothesis": top,
            "trust_score": view.trust_score if view else None,
            "degraded": [] if rows is not None else ["incident history unavailable"],
        }
