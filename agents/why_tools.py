"""The why-agent's tools over the DNA store: DNA, timeline, blast radius, upstream, incidents, trust, rules."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agents import analyst, why_incident
from agents.model import CAUSE_INCIDENT_KINDS
from storage.errors import DatasetNotFound
from storage.persistence import graph as graph_store
from storage.persistence import names, store

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from storage.domain.lineage import LineageGraph

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
        """The dataset a name means. Several sharing the name (raw.orders, analytics.orders, model.orders) raise
        AmbiguousDataset: the answer asks which one rather than guessing."""
        with self.session_factory() as session:
            return names.resolve_fqn(session, text)

    def dna(self, fqn: str) -> dict[str, Any]:
        with self.session_factory() as session:
            view = store.dna_at(session, fqn)
            trust = _trust_now(session, fqn, view)
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
            "trust_score": trust["score"],  # now: open incidents take points off (storage/domain/trust.py)
            "snapshot_trust_score": view.trust_score,
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

    def _incident_views(self, session: Session, fqn: str) -> list[Any] | None:
        """The incidents on `fqn` this answer may name; None without incident storage."""
        try:
            from storage.persistence.incidents import incidents_for
        except ImportError:  # incident storage not installed: answer without it
            return None
        views = incidents_for(session, fqn)
        return self.visible(views) if self.visible is not None else views

    def _incident_rows(self, session: Session, fqn: str) -> list[dict[str, Any]] | None:
        views = self._incident_views(session, fqn)
        return None if views is None else [_incident_dict(v) for v in views]

    def incidents(self, fqn: str) -> dict[str, Any]:
        with self.session_factory() as session:
            rows = self._incident_rows(session, fqn)
        return {"fqn": fqn, "available": rows is not None, "incidents": (rows or [])[: self.max_items]}

    def trust(self, fqn: str) -> dict[str, Any]:
        with self.session_factory() as session:
            view = store.dna_at(session, fqn)
            history = store.snapshots_between(session, fqn, self._now() - timedelta(days=30))
            now = _trust_now(session, fqn, view)
        if view is None:
            raise DatasetNotFound(fqn)
        points = [{"at": s.taken_at.isoformat(), "score": s.trust_score} for s in history][-self.max_items :]
        return {
            "fqn": fqn,
            "score": now["score"],
            "snapshot_score": view.trust_score,
            "open_incidents_note": now["note"],
            "factors": view.trust_factors,
            "history": points,
        }

    def _story(
        self, session: Session, fqn: str, views: list[Any], graph: LineageGraph, now: datetime, window: timedelta
    ) -> dict[str, Any]:
        """What the incident covering `fqn` says: its cause for `fqn`, how it healed, the changes it explains."""
        story: dict[str, Any] = {"incident": None, "cause": None, "resolution": None, "spent": set(), "healed": set()}
        for v in views:  # what resolved incidents explained is no longer a cause
            if why_incident.field_of(v, "status") == "resolved":
                story["spent"] |= why_incident.spent_change_ids(v)
        covering = why_incident.covering(views, now, window)
        if covering is None:
            return story
        story["incident"] = why_incident.incident_ref(covering)
        story["cause"] = why_incident.cause_for(fqn, covering, lambda: graph.upstream_paths(fqn, limit=20))
        if story["incident"]["status"] != "resolved":
            return story
        events, links = _history(session, story["incident"]["id"])
        story["spent"] |= why_incident.spent_change_ids(covering, links)
        opened = why_incident.field_of(covering, "opened_at") or (now - window)
        root = story["incident"]["root_fqn"]
        where = {root, (story["cause"] or {}).get("cause_fqn") or root} - {"unknown"}
        around = [c for f in sorted(where) for c in store.timeline(session, f, opened)]
        story["resolution"] = why_incident.healing(covering, events, links, around)
        story["healed"] = {c["id"] for c in (story["resolution"] or {}).get("changes") or ()}
        return story

    def rules_answer(self, fqn: str, question: str) -> dict[str, Any]:
        now, window = self._now(), timedelta(days=self.since_days)
        with self.session_factory() as session:
            g = self.graph_loader(session)
            ups = g.upstream(fqn)[: self.max_items]
            distance = {fqn: 0, **{i.fqn: i.distance for i in ups}}
            views = [(c, d) for f, d in distance.items() for c in store.timeline(session, f, now - window)]
            incident_views = self._incident_views(session, fqn)
            story = self._story(session, fqn, incident_views or [], g, now, window)
            trust = _trust_now(session, fqn, store.dna_at(session, fqn))
        rows = None if incident_views is None else [_incident_dict(v) for v in incident_views]
        ref = story["incident"]
        spent, healed = story["spent"], story["healed"]
        changes = [_change_dict(c, d) | _role(c.id, ref, spent, healed) for c, d in views]
        changes.sort(key=lambda c: (c["detected_at"], c["id"]), reverse=True)
        open_cause = ref is not None and ref["status"] in OPEN_STATUSES and story["cause"] is not None
        if open_cause:  # the incident's own analysis: the same cause, confidence and path as its card
            top = story["cause"]
        else:  # the analyst itself, on what no resolved incident already explained (never the revert)
            live = [(c, d) for c, d in views if c.id not in spent and c.id not in healed]
            if self.analyst is not None:
                top = self.analyst(fqn, [ch for ch in changes if ch["id"] in {c.id for c, _ in live}], g)
            else:
                top = analyst_hypothesis(fqn, [c for c, _ in live], g, now, window)
        if top is not None and not isinstance(top, dict):
            top = top.to_dict()
        return {
            "fqn": fqn,
            "since_days": self.since_days,
            "incidents": [r for r in rows or [] if r["status"] in OPEN_STATUSES],
            "changes": changes[: self.max_items],
            "hypothesis": top,
            "incident": ref,
            "incident_cause": story["cause"],
            "resolution": story["resolution"],
            "trust_score": trust["score"],
            "trust": trust,
            "degraded": [] if rows is not None else ["incident history unavailable"],
        }


def _role(change_id: int, ref: dict[str, Any] | None, spent: set[int], healed: set[int]) -> dict[str, Any]:
    """What a change was to the incident the answer follows: its cause or symptom, or what healed it."""
    if ref is None:
        return {}
    if change_id in healed:
        return {"role": f"healed incident #{ref['id']}"}
    if change_id in spent:
        return {"role": f"explained by incident #{ref['id']}"}
    return {}


def _history(session: Session, incident_id: int) -> tuple[list[Any], list[Any]]:
    """An incident's events and linked changes; empty when the incident store cannot say."""
    try:
        from storage.persistence.incidents import get_incident
    except ImportError:
        return [], []
    detail = get_incident(session, incident_id)
    return list(detail.events), list(detail.links)


def _trust_now(session: Session, fqn: str, view: Any) -> dict[str, Any]:
    """The trust score shown now (`incidents.trust_now`: open incidents take points off), as a dict."""
    try:
        from storage.persistence.incidents import trust_now
    except ImportError:  # no incident storage: the snapshot's score is all there is
        stored = view.trust_score if view is not None else None
        return {"score": stored, "stored": stored, "penalty": 0, "open_incidents": [], "note": ""}
    return trust_now(session, [fqn])[fqn].to_dict()
