"""The facts of one incident that its texts may use: the change, breaks, causes, fixes and web sources."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from agents import untrusted
from agents.model import Break, Evidence, FixProposal, Hypothesis, IncidentDraft


@dataclass(frozen=True)
class ChangeFacts:
    """The change behind an incident, as the texts need it."""

    kind: str
    entity_fqn: str
    subject: str | None = None
    old_value: Any = None
    new_value: Any = None
    change_id: int | None = None
    detected_at: datetime | None = None

    @classmethod
    def from_view(cls, view: Any) -> ChangeFacts:
        """From a `storage.persistence.store.ChangeView` (or anything with the same attributes)."""
        return cls(
            kind=view.kind,
            entity_fqn=view.entity_fqn,
            subject=getattr(view, "subject", None),
            old_value=getattr(view, "old_value", None),
            new_value=getattr(view, "new_value", None),
            change_id=getattr(view, "id", None),
            detected_at=getattr(view, "detected_at", None),
        )


@dataclass(frozen=True)
class IncidentFacts:
    """Everything the words of one incident may rest on; nothing else may be named."""

    kind: str
    severity: str
    title: str
    root_fqn: str
    root_column: str | None = None
    severity_reasons: tuple[str, ...] = ()
    change: ChangeFacts | None = None
    breaks: tuple[Break, ...] = ()
    dashboards: tuple[str, ...] = ()
    charts: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    hypotheses: tuple[Hypothesis, ...] = ()
    fixes: tuple[FixProposal, ...] = ()
    web: tuple[Evidence, ...] = ()
    opened_at: datetime | None = None
    display_names: Mapping[str, str] = field(default_factory=dict, hash=False)
    dashboard_owners: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    incident_id: int | None = None

    @classmethod
    def from_draft(
        cls,
        draft: IncidentDraft,
        *,
        cause: Any = None,
        hypotheses: Iterable[Hypothesis] = (),
        fixes: Iterable[FixProposal] = (),
        web: Iterable[Evidence] = (),
        display_names: Mapping[str, str] | None = None,
        dashboard_owners: Mapping[str, Sequence[str]] | None = None,
        incident_id: int | None = None,
    ) -> IncidentFacts:
        """Facts from an observer draft plus the analyst's hypotheses, the fixer's proposals and web evidence."""
        change = cause if isinstance(cause, ChangeFacts) or cause is None else ChangeFacts.from_view(cause)
        return cls(
            kind=draft.kind,
            severity=draft.severity,
            title=draft.title,
            root_fqn=draft.root_fqn,
            root_column=draft.root_column,
            severity_reasons=tuple(draft.severity_reasons),
            change=change,
            breaks=tuple(draft.breaks),
            dashboards=tuple(draft.dashboards),
            charts=tuple(draft.charts),
            owners=tuple(draft.owners),
            hypotheses=tuple(hypotheses),
            fixes=tuple(fixes),
            web=tuple(web),
            opened_at=draft.opened_at,
            display_names=dict(display_names or {}),
            dashboard_owners={k: tuple(v) for k, v in (dashboard_owners or {}).items()},
            incident_id=incident_id,
        )

    def with_web(self, web: Iterable[Evidence]) -> IncidentFacts:
        """The same facts with this outside context."""
        return replace(self, web=tuple(web))

    def web_evidence(self) -> list[Evidence]:
        """The outside context: `web`, plus web evidence the analyst attached to hypotheses (one per URL)."""
        found: dict[str, Evidence] = {}
        for e in (*self.web, *(e for h in self.hypotheses for e in h.evidence if e.kind == "web")):
            found.setdefault(e.url or e.ref, e)
        return list(found.values())

    def to_prompt_dict(self) -> dict[str, Any]:
        """The facts as JSON for the LLM; web snippets are left out (they travel fenced, separately)."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "severity_reasons": list(self.severity_reasons),
            "title": self.title,
            "root_fqn": self.root_fqn,
            "root_column": self.root_column,
            "change": asdict(self.change) if self.change else None,
            "breaks": [b.to_dict() for b in self.breaks],
            "dashboards": [{"fqn": d, "display_name": self.display_names.get(d)} for d in self.dashboards],
            "charts": list(self.charts),
            "owners": list(self.owners),
            "dashboard_owners": {k: list(v) for k, v in self.dashboard_owners.items()},
            "hypotheses": [_without_web_text(h.to_dict()) for h in self.hypotheses],
            "fixes": [f.to_dict() for f in self.fixes],
            "web_sources": [{"url": e.url or e.ref} for e in self.web_evidence()],
            "opened_at": self.opened_at.isoformat() if self.opened_at else None,
        }

    def grounding(self) -> untrusted.Grounding:
        """Every name, URL and id these facts hold (the web's own text excluded: it is not ours to trust)."""
        g = untrusted.Grounding()
        g.add_json({k: v for k, v in self.to_prompt_dict().items() if k != "web_sources"})
        for name in (self.root_fqn, *self.dashboards, *self.charts, *self.display_names.values()):
            g.add_name(name)
        if self.root_column:
            g.add_name(f"{self.root_fqn}.{self.root_column}")
        for b in self.breaks:
            g.add_name(b.entity_fqn)
            if b.column:
                g.add_name(f"{b.entity_fqn}.{b.column}")
        for e in (*self.web, *(ev for h in self.hypotheses for ev in h.evidence)):
            g.add_url(e.url or (e.ref if e.kind == "web" else None))
        if self.change and self.change.change_id is not None:
            g.change_ids.add(self.change.change_id)
        g.change_ids.update(h.change_id for h in self.hypotheses if h.change_id is not None)
        if self.incident_id is not None:
            g.incident_ids.add(self.incident_id)
        return g


def _without_web_text(hypothesis: dict[str, Any]) -> dict[str, Any]:
    """A hypothesis for the prompt: web evidence keeps its URL only (its text travels fenced)."""
    evidence = [
        {"kind": "web", "url": e["url"] or e["ref"]} if e["kind"] == "web" else e for e in hypothesis["evidence"]
    ]
    return {**hypothesis, "evidence": evidence}
