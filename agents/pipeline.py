"""The incident pipeline after a sync: observer → analyst → fixer → explainer, persisted through `storage`.

Phase 1 (one transaction): rules turn the run's changes into incidents (opened, attached, auto-resolved),
the analyst ranks causes, the fixer simulates fixes and the templates write the texts.
Phase 2 (no transaction held): outside context from MCP and better words from the LLM, when configured.
Phase 3 (short transaction): store what phase 2 produced. A slow or failing LLM/MCP never loses phase 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from agents import analyst, explainer, fixer, observer
from agents.config import AgentConfig
from agents.facts import IncidentFacts
from agents.model import CAUSE_INCIDENT_KINDS, Evidence, Explanation, Hypothesis, IncidentDraft
from storage import logctx
from storage.domain.lineage import LineageGraph
from storage.persistence import graph as graph_store
from storage.persistence import incidents, store
from storage.persistence.db import session_factory
from storage.persistence.models import SyncRun

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    """What one pass of the pipeline did (incident ids), and what degraded."""

    run_id: int
    opened: list[int] = field(default_factory=list)
    reopened: list[int] = field(default_factory=list)
    attached: dict[int, list[int]] = field(default_factory=dict)
    resolved: list[int] = field(default_factory=list)
    explained_by_llm: list[int] = field(default_factory=list)
    unsnoozed: list[int] = field(default_factory=list)
    mirrored: list[int] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)
    pipeline_seconds: float = 0.0  # this pass, all phases
    outside_context_seconds: float = 0.0  # of which waiting on MCP (bounded by the toolbox's budget per sync)

    @property
    def touched(self) -> list[int]:
        """Every incident whose card would change."""
        ids = [*self.opened, *self.reopened, *self.attached, *self.resolved, *self.unsnoozed, *self.mirrored]
        return sorted(set(ids))

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "opened": self.opened,
            "reopened": self.reopened,
            "attached": {str(k): v for k, v in self.attached.items()},
            "resolved": self.resolved,
            "explained_by_llm": self.explained_by_llm,
            "unsnoozed": self.unsnoozed,
            "mirrored": self.mirrored,
            "degraded": self.degraded,
            "pipeline_seconds": self.pipeline_seconds,
            "outside_context_seconds": self.outside_context_seconds,
        }


class GenesCache:
    """Current genes by FQN, read once per pass."""

    def __init__(self, session: Session):
        self.session = session
        self.cache: dict[str, dict[str, Any] | None] = {}

    def __call__(self, fqn: str) -> dict[str, Any] | None:
        if fqn not in self.cache:
            view = store.dna_at(self.session, fqn)
            self.cache[fqn] = view.genes if view is not None else None
        return self.cache[fqn]


@dataclass
class _Pending:
    incident_id: int
    facts: IncidentFacts
    queries: list[str]


OM_WORKING = {"Ack", "Assigned"}


def _mirror_openmetadata(
    session: Session, genes_of: Callable[[str], dict[str, Any] | None], now: datetime
) -> list[int]:
    """Ack and Assigned set in OpenMetadata's Incident Manager show on our data-quality incidents (and cards).

    Resolved is the observer's auto-resolve. Only `open` incidents move to acknowledged, so nothing someone did
    in Slack is undone; nothing here writes back to OpenMetadata, so there is no echo.
    """
    moved = []
    for inc in incidents.open_incidents(session):
        details = inc.details or {}
        test_fqn = details.get("test_fqn")
        if inc.kind != "test_failing" or not test_fqn:
            continue
        tests = ((genes_of(inc.root_fqn) or {}).get("quality") or {}).get("tests") or []
        om = next((t.get("incident") for t in tests if t.get("fqn") == test_fqn), None)
        changed = bool(om) and om != details.get("om_incident")
        if not om or not (changed or inc.opened_at == now):  # new this run, or moved in OpenMetadata
            continue
        if changed:
            incidents.update_analysis(session, inc.id, details_patch={"om_incident": om}, now=now)
        if om.get("status") in OM_WORKING and inc.status == "open":
            who = om.get("assignee")
            incidents.set_status(
                session,
                inc.id,
                "acknowledged",
                actor="openmetadata",
                now=now,
                reason=f"{om['status']} in OpenMetadata" + (f", assigned to {who}" if who else ""),
            )
            if who:
                incidents.assign(session, inc.id, who, actor="openmetadata", now=now)
            moved.append(inc.id)
        elif changed:
            moved.append(inc.id)
    return moved


def _first(run: SyncRun) -> bool:
    return bool((run.stats or {}).get("first_sync"))


def run_changes(session: Session, run: SyncRun) -> list[store.ChangeView]:
    """The changes one sync run recorded."""
    return [c for c in store.recent_changes(session, run.started_at) if c.sync_run_id == run.id]


PROCESSED = store.INCIDENTS_PROCESSED


async def process_run(
    engine: Engine,
    run_id: int,
    config: AgentConfig,
    *,
    llm: Any = None,
    toolbox: Any = None,
    now: datetime | None = None,
) -> PipelineResult:
    """Turn one sync run's changes into incidents; safe to run twice on the same run (fingerprints)."""
    began = time.perf_counter()
    with logctx.bind(sync_id=run_id):
        result = await _process_run(engine, run_id, config, llm=llm, toolbox=toolbox, now=now)
    result.pipeline_seconds = round(time.perf_counter() - began, 3)
    result.outside_context_seconds = round(result.outside_context_seconds, 3)
    return result


async def _process_run(
    engine: Engine, run_id: int, config: AgentConfig, *, llm: Any, toolbox: Any, now: datetime | None
) -> PipelineResult:
    now = now or datetime.now(UTC)
    factory = session_factory(engine)
    result = PipelineResult(run_id)
    with factory.begin() as session:
        pending = _phase_rules(engine, session, run_id, config, now, result)
    if pending and (llm is not None or toolbox is not None):
        words = await _phase_words(pending, llm, toolbox, config, result)
        with factory.begin() as session:
            for incident_id, patch, evidence in words:
                incidents.update_analysis(session, incident_id, details_patch=patch, now=datetime.now(UTC))
                if evidence:
                    incidents.add_evidence(session, incident_id, evidence, now=datetime.now(UTC))
    return result


def _phase_rules(
    engine: Engine, session: Session, run_id: int, config: AgentConfig, now: datetime, result: PipelineResult
) -> list[_Pending]:
    run = session.get_one(SyncRun, run_id)
    changes = run_changes(session, run)
    result.unsnoozed = incidents.unsnooze_due(session, now)
    stats = run.stats or {}
    # Marked in the transaction that turns the run's changes into incidents: a run whose pipeline never
    # committed stays unmarked, and the next sync catches it up (`store.unprocessed_runs`).
    run.stats = {**stats, PROCESSED: True}
    if not changes and not stats.get("snapshots_written") and not _first(run):
        return []  # nothing moved in this run: no incident can have opened, grown or healed
    # the process's warm graph when it keeps one (`serve`: one build per changed sync, shared with the questions)
    warm = graph_store.question_graph(engine, session)
    graph = warm if warm is not None else graph_store.graph_at(session)
    genes_of = GenesCache(session)
    open_now = incidents.open_incidents(session)
    # The very first sync records no changes: look at the entities it saw with a test already failing and an
    # incident open in OpenMetadata, so those incidents are taken over.
    scan = list(stats.get("open_test_incidents") or []) if _first(run) else []
    observed = observer.observe(
        changes, open_incidents=open_now, graph=graph, genes_of=genes_of, now=now, config=config, scan_entities=scan
    )
    for incident_id, reason in observed.resolve:
        incidents.auto_resolve(session, incident_id, reason=reason, now=now)
        result.resolved.append(incident_id)
    for incident_id, change_ids in observed.attach:
        if incidents.link_changes(session, incident_id, change_ids, "symptom", now=now):
            result.attached.setdefault(incident_id, []).extend(change_ids)
    for incident_id, patch in observed.refresh:  # a test still failing, with a new result text
        incidents.update_analysis(session, incident_id, details_patch=patch, now=now)
    by_id = {c.id: c for c in changes}
    upstream = store.recent_changes(session, now - config.cause_window)
    symptoms = dict(observed.draft_symptoms)
    pending: list[_Pending] = []
    for draft in observed.drafts:
        facts = observed.details.get(draft.fingerprint, {})
        item = _open(session, draft, facts, by_id, upstream, graph, genes_of, config, run_id, now, result)
        if symptoms.get(draft.fingerprint):
            incidents.link_changes(session, item.incident_id, symptoms[draft.fingerprint], "symptom", now=now)
        pending.append(item)
    result.mirrored = _mirror_openmetadata(session, genes_of, now)
    return pending


def _open(
    session: Session,
    draft: IncidentDraft,
    observed_facts: dict[str, Any],
    by_id: dict[int, store.ChangeView],
    upstream: list[store.ChangeView],
    graph: LineageGraph,
    genes_of: Callable[[str], dict[str, Any] | None],
    config: AgentConfig,
    run_id: int,
    now: datetime,
    result: PipelineResult,
) -> _Pending:
    existed = incidents.find_by_fingerprint(session, draft.fingerprint)
    details = {**_draft_details(draft, by_id), **observed_facts}
    view, created = incidents.open_incident(
        session,
        fingerprint=draft.fingerprint,
        kind=draft.kind,
        severity=draft.severity,
        title=draft.title,
        root_fqn=draft.root_fqn,
        root_column=draft.root_column,
        details=details,
        run_id=run_id,
        now=now,
    )
    if created:
        result.opened.append(view.id)
    elif existed is not None and existed.status == "resolved":
        result.reopened.append(view.id)
    incidents.link_changes(session, view.id, list(draft.cause_change_ids), "cause", now=now)
    cause = by_id.get(draft.cause_change_ids[0]) if draft.cause_change_ids else None
    hypotheses = analyst.analyse(
        kind=draft.kind,
        root_fqn=draft.root_fqn,
        root_column=draft.root_column,
        cause_change_ids=draft.cause_change_ids,
        changes_by_id=by_id,
        upstream_changes=upstream,
        graph=graph,
        now=now,
        window=config.cause_window,
    )
    fixes = fixer.propose(
        **_fix_target(draft, cause, hypotheses, upstream), graph=graph, genes_of=genes_of, breaks=draft.breaks
    )
    facts = IncidentFacts.from_draft(
        draft,
        cause=cause,
        hypotheses=hypotheses,
        fixes=fixes,
        web=[],
        display_names=_display_names(draft, genes_of),
        dashboard_owners=_dashboard_owners(draft, genes_of),
        incident_id=view.id,
    )
    text = explainer.explain_template(facts)
    incidents.update_analysis(
        session,
        view.id,
        details_patch={
            "hypotheses": [h.to_dict() for h in hypotheses],
            "fixes": [f.to_dict() for f in fixes],
            "explanation": text.to_dict(),
        },
        now=now,
        run_id=run_id,
    )
    evidence = [e for h in hypotheses for e in h.evidence]
    if evidence:
        incidents.add_evidence(session, view.id, [_evidence_row(e) for e in evidence], now=now)
    queries = analyst.web_queries(draft.kind, draft.root_fqn, genes_of(draft.root_fqn) or {})
    return _Pending(view.id, facts, queries)


def _fix_target(
    draft: IncidentDraft,
    cause: store.ChangeView | None,
    hypotheses: list[Hypothesis],
    upstream: list[store.ChangeView],
) -> dict[str, Any]:
    target = {"kind": draft.kind, "root_fqn": draft.root_fqn, "root_column": draft.root_column, "change": cause}
    if draft.kind not in {"test_failing", "pipeline_failed", "trust_drop"} or not hypotheses:
        return target
    best = hypotheses[0]
    upstream_change = next((c for c in upstream if c.id == best.change_id), None)
    if upstream_change is None or upstream_change.kind not in CAUSE_INCIDENT_KINDS or best.cause_fqn == draft.root_fqn:
        return target
    return {
        "kind": CAUSE_INCIDENT_KINDS[upstream_change.kind],
        "root_fqn": best.cause_fqn,
        "root_column": best.cause_column,
        "change": upstream_change,
    }


def _draft_details(draft: IncidentDraft, by_id: dict[int, store.ChangeView]) -> dict[str, Any]:
    details = draft.to_dict()
    cause = by_id.get(draft.cause_change_ids[0]) if draft.cause_change_ids else None
    if cause is not None:
        details["cause"] = {
            "change_id": cause.id,
            "kind": cause.kind,
            "entity_fqn": cause.entity_fqn,
            "subject": cause.subject,
            "old_value": cause.old_value,
            "new_value": cause.new_value,
            "confidence": cause.confidence,
            "details": cause.details,
        }
        if draft.kind == "trust_drop":
            details["trust_before"] = cause.old_value
    return details


def _display_names(draft: IncidentDraft, genes_of: Callable[[str], dict[str, Any] | None]) -> dict[str, str]:
    """Human names (OpenMetadata displayName) of the root, dashboards and charts, for the stakeholder brief."""
    names = {}
    for fqn in (draft.root_fqn, *draft.dashboards, *draft.charts):
        genes = genes_of(fqn) or {}
        display = (genes.get("entity") or {}).get("display_name")
        if display:
            names[fqn] = display
    return names


def _dashboard_owners(draft: IncidentDraft, genes_of: Callable[[str], dict[str, Any] | None]) -> dict[str, list[str]]:
    owners = {}
    for fqn in draft.dashboards:
        genes = genes_of(fqn) or {}
        names = [o["name"] for o in (genes.get("ownership") or {}).get("owners", [])]
        if names:
            owners[fqn] = names
    return owners


def _evidence_row(e: Evidence) -> dict[str, Any]:
    return {"kind": e.kind, "ref": e.ref, "summary": e.summary, "url": e.url, "data": e.data}


async def _phase_words(
    pending: list[_Pending], llm: Any, toolbox: Any, config: AgentConfig, result: PipelineResult
) -> list[tuple[int, dict[str, Any], list[dict[str, Any]]]]:
    out = []
    for item in pending:
        web: list[Evidence] = []
        if toolbox is not None:
            for query in item.queries[:2]:
                asked = time.perf_counter()
                hits = await toolbox.search(query)
                result.outside_context_seconds += time.perf_counter() - asked
                for hit in hits:
                    web.append(
                        Evidence(
                            "web",
                            hit.url,
                            hit.title or hit.url,
                            {"title": hit.title, "snippet": hit.snippet, "query": query, "tool": hit.source_tool},
                            url=hit.url,
                        )
                    )
            if not web and getattr(toolbox, "last_degraded", None):
                result.degraded.append(f"outside context unavailable: {toolbox.last_degraded}")
        facts = item.facts.with_web(web) if web else item.facts
        text: Explanation = await explainer.explain(facts, llm=llm)
        if text.source == "llm":
            result.explained_by_llm.append(item.incident_id)
        elif text.fallback_reason:
            result.degraded.append(f"incident {item.incident_id}: {text.fallback_reason}")
        patch: dict[str, Any] = {"explanation": text.to_dict()}
        if web:
            patch["web"] = [e.to_dict() for e in web]
        out.append((item.incident_id, patch, [_evidence_row(e) for e in web]))
    return out
