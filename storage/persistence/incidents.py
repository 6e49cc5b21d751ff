"""Incidents in the store: open, group, transition, annotate and read them back as frozen views."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import fields, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.domain import trust
from storage.domain.trust import TrustNow
from storage.errors import IncidentNotFound, InvalidTransition
from storage.persistence import outbox, store
from storage.persistence.incident_views import EventView, EvidenceView, IncidentDetailView, IncidentView, LinkView
from storage.persistence.models import Change, Incident, IncidentEvent, IncidentEvidence, IncidentLink

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# The functions below flush but never commit: the caller owns the transaction (one per pipeline run or click).

_V = TypeVar("_V", bound="DataclassInstance")
_OWED_REPLIES = "dnabot_owed_replies"  # session.info: history entries whose thread reply is not owed yet
BOT = "dnabot"
STATUSES = ("open", "acknowledged", "snoozed", "resolved")
ROLES = ("cause", "symptom")
SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
ALLOWED: dict[str, frozenset[str]] = {
    "open": frozenset({"acknowledged", "snoozed", "resolved"}),
    "acknowledged": frozenset({"snoozed", "resolved", "open"}),
    "snoozed": frozenset({"open", "acknowledged", "resolved"}),
    "resolved": frozenset({"open"}),
}


def _aware(at: datetime, what: str = "now") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {at!r}")
    return at


def _as(cls: type[_V], row: object, **extra: Any) -> _V:
    """A view of `row` with the fields `cls` names; copies, so a caller editing a view's dict edits only the view."""
    names = [f.name for f in fields(cls) if f.name not in extra]
    return cls(**{name: copy.deepcopy(getattr(row, name)) for name in names}, **extra)


def _view(incident: Incident) -> IncidentView:
    return _as(IncidentView, incident)


def _incidents() -> sa.Select[Incident]:
    # Reload rows already in the session: its objects outlive commits (expire_on_commit=False), and another
    # process (a Slack replica, the scheduler) may have moved the incident since.
    return sa.select(Incident).execution_options(populate_existing=True)


def _load(session: Session, incident_id: int) -> Incident:
    # FOR UPDATE on PostgreSQL (two Slack replicas clicking at once serialise); SQLite ignores it.
    stmt = _incidents().where(Incident.id == incident_id).with_for_update()
    incident = session.scalars(stmt).first()
    if incident is None:
        raise IncidentNotFound(incident_id)
    return incident


def _event(session: Session, incident: Incident, kind: str, *, actor: str, at: datetime, **columns: Any) -> None:
    """Record a history entry; its thread reply is owed by the `_touch` that follows (after the card update)."""
    columns["data"] = columns.get("data") or {}
    event = IncidentEvent(incident_id=incident.id, at=at, kind=kind, actor=actor, **columns)
    session.add(event)
    if kind != "opened":  # the card itself tells the opening
        session.info.setdefault(_OWED_REPLIES, []).append(event)


def _touch(session: Session, incident: Incident, now: datetime) -> None:
    """A new version of the incident: its card is owed an update, then a reply for each new history entry (the
    outbox rows commit with the change)."""
    incident.version += 1
    incident.updated_at = now
    _owe_card(session, incident, now)
    events = session.info.pop(_OWED_REPLIES, [])
    if events:
        session.flush()
    for event in events:
        lane = outbox.incident_lane(event.incident_id)
        outbox.enqueue(session, f"reply:{event.id}", "reply", lane=lane, now=now, incident_id=event.incident_id)


def _owe_card(session: Session, incident: Incident, now: datetime) -> None:
    key = f"card:{incident.id}:v{incident.version}"
    outbox.enqueue(session, key, "card", lane=outbox.incident_lane(incident.id), now=now, incident_id=incident.id)


def _transition(
    session: Session,
    incident: Incident,
    status: str,
    *,
    actor: str,
    now: datetime,
    event_kind: str = "status_changed",
    snoozed_until: datetime | None = None,
    **event: Any,
) -> None:
    """Set the status (and the timestamps that go with it), record the event, bump the version."""
    status_from, incident.status = incident.status, status
    incident.snoozed_until = snoozed_until if status == "snoozed" else None
    incident.resolved_at = now if status == "resolved" else None
    _event(session, incident, event_kind, actor=actor, at=now, status_from=status_from, status_to=status, **event)
    _touch(session, incident, now)
    session.flush()


def _refusal(incident_id: int, status_from: str, status_to: str, why: str | None = None) -> InvalidTransition:
    if why is not None:
        text = f"incident {incident_id} {why}"
    elif status_to not in STATUSES:
        text = f"{status_to!r} is not an incident status; use one of {', '.join(STATUSES)}"
    elif status_from == "resolved":
        text = f"incident {incident_id} is resolved; it can only be reopened"
    else:
        allowed = ", ".join(sorted(ALLOWED.get(status_from, ())))
        text = f"incident {incident_id} is {status_from}; it can go to {allowed}, not {status_to}"
    return InvalidTransition(text, incident_id=incident_id, status_from=status_from, status_to=status_to)


# ------------------------------------------------------------------------------------------------ writes


def find_by_fingerprint(session: Session, fp: str) -> IncidentView | None:
    """The incident with this fingerprint, whatever its status, or None."""
    incident = session.scalars(_incidents().where(Incident.fingerprint == fp)).first()
    return None if incident is None else _view(incident)


def open_incident(
    session: Session,
    *,
    fingerprint: str,
    kind: str,
    severity: str,
    title: str,
    root_fqn: str,
    root_column: str | None,
    details: Mapping[str, Any],
    run_id: int | None,
    now: datetime,
    actor: str = BOT,
) -> tuple[IncidentView, bool]:
    """Open an incident, or return the existing one (reopened if it was resolved); True only when created."""
    _aware(now)
    stmt = _incidents().where(Incident.fingerprint == fingerprint).with_for_update()
    incident = session.scalars(stmt).first()
    if incident is None:
        incident = Incident(
            fingerprint=fingerprint,
            kind=kind,
            severity=severity,
            status="open",
            title=title,
            root_fqn=root_fqn,
            root_column=root_column,
            opened_at=now,
            updated_at=now,
            opened_run_id=run_id,
            last_run_id=run_id,
            version=1,
            details=copy.deepcopy(dict(details)),
        )
        session.add(incident)
        session.flush()
        data = {"run_id": run_id, "severity": severity}
        _event(session, incident, "opened", actor=actor, at=now, status_to="open", data=data)
        _owe_card(session, incident, now)  # the thread's details follow once the card is posted
        session.flush()
        return _view(incident), True
    if run_id is not None:
        incident.last_run_id = run_id
    if incident.status == "resolved":
        # The cause came back: same incident, fresh analysis, its history kept.
        incident.severity = severity
        incident.title = title
        incident.details = copy.deepcopy(dict(details))
        _transition(session, incident, "open", actor=actor, now=now, event_kind="reopened", data={"run_id": run_id})
    session.flush()
    return _view(incident), False


def update_analysis(
    session: Session,
    incident_id: int,
    *,
    severity: str | None = None,
    title: str | None = None,
    details_patch: Mapping[str, Any],
    now: datetime,
    run_id: int | None = None,
) -> IncidentView:
    """Merge `details_patch` into the details (top-level keys) and set severity/title; a no-op if nothing differs."""
    _aware(now)
    incident = _load(session, incident_id)
    if run_id is not None:
        incident.last_run_id = run_id
    details = dict(incident.details or {})
    changed_keys = sorted(k for k, v in details_patch.items() if k not in details or details[k] != v)
    data: dict[str, Any] = {"keys": changed_keys}
    if severity is not None and severity != incident.severity:
        data["severity"] = {"from": incident.severity, "to": severity}
        incident.severity = severity
    if title is not None and title != incident.title:
        data["title"] = {"from": incident.title, "to": title}
        incident.title = title
    if changed_keys or set(data) != {"keys"}:
        details.update(copy.deepcopy(dict(details_patch)))
        incident.details = details  # a new dict: the JSON column notices reassignment, not mutation
        _event(session, incident, "analysis_updated", actor=BOT, at=now, data=data)
        _touch(session, incident, now)
    session.flush()
    return _view(incident)


def link_changes(
    session: Session, incident_id: int, change_ids: Iterable[int], role: str, *, now: datetime, actor: str = BOT
) -> int:
    """Link changes to the incident as `cause` or `symptom`, skipping links that exist; how many are new."""
    if role not in ROLES:
        raise ValueError(f"link role must be one of {ROLES}, got {role!r}")
    _aware(now)
    incident = _load(session, incident_id)
    wanted = list(dict.fromkeys(change_ids))
    if not wanted:
        return 0
    existing = set(
        session.scalars(
            sa.select(IncidentLink.change_id).where(
                IncidentLink.incident_id == incident_id, IncidentLink.change_id.in_(wanted)
            )
        )
    )
    new = [cid for cid in wanted if cid not in existing]
    session.add_all(IncidentLink(incident_id=incident_id, change_id=cid, role=role) for cid in new)
    if new and role == "symptom":
        _event(session, incident, "symptom_attached", actor=actor, at=now, data={"change_ids": new})
        _touch(session, incident, now)
    session.flush()
    return len(new)


def set_status(
    session: Session,
    incident_id: int,
    status: str,
    *,
    actor: str,
    now: datetime,
    reason: str | None = None,
    note: str | None = None,
    snoozed_until: datetime | None = None,
    assignee: str | None = None,
) -> IncidentView:
    """Move the incident to `status` if the lifecycle allows it (`InvalidTransition` otherwise)."""
    _aware(now)
    incident = _load(session, incident_id)
    if status == incident.status:
        return _view(incident)
    if status not in ALLOWED.get(incident.status, ()):
        raise _refusal(incident_id, incident.status, status)
    data: dict[str, Any] = {}
    if status == "snoozed":
        if snoozed_until is None or _aware(snoozed_until, "snoozed_until") <= now:
            raise _refusal(incident_id, incident.status, status, "can only be snoozed until a time in the future")
        data["snoozed_until"] = snoozed_until.isoformat()
    if assignee is not None and assignee != incident.assignee:
        incident.assignee = assignee
        data["assignee"] = assignee
    event: dict[str, Any] = {"reason": reason, "note": note, "data": data}
    _transition(session, incident, status, actor=actor, now=now, snoozed_until=snoozed_until, **event)
    return _view(incident)


def assign(session: Session, incident_id: int, assignee: str | None, *, actor: str, now: datetime) -> IncidentView:
    """Give the incident to `assignee` (None clears it), recorded as a note; a no-op if unchanged."""
    _aware(now)
    incident = _load(session, incident_id)
    if assignee == incident.assignee:
        return _view(incident)
    incident.assignee = assignee
    _event(session, incident, "note", actor=actor, at=now, data={"assignee": assignee})
    _touch(session, incident, now)
    session.flush()
    return _view(incident)


def auto_resolve(session: Session, incident_id: int, *, reason: str, now: datetime) -> IncidentView:
    """Resolve the incident on DNA Bot's own authority (the cause went away); a no-op if already resolved."""
    _aware(now)
    incident = _load(session, incident_id)
    if incident.status != "resolved":
        _transition(session, incident, "resolved", actor=BOT, now=now, event_kind="auto_resolved", reason=reason)
    return _view(incident)


def _evidence_at(value: Any, now: datetime) -> datetime:
    if value is None:
        return now
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return _aware(at, "evidence at")


def add_evidence(session: Session, incident_id: int, items: Iterable[Mapping[str, Any]], *, now: datetime) -> int:
    """Add evidence items (`Evidence.to_dict()` shapes), skipping any (kind, ref) already there; how many are new."""
    _aware(now)
    incident = _load(session, incident_id)
    seen: set[tuple[str, str]] = set(
        session.execute(
            sa.select(IncidentEvidence.kind, IncidentEvidence.ref).where(IncidentEvidence.incident_id == incident_id)
        )
    )
    added = 0
    for item in items:
        key = (str(item["kind"]), str(item["ref"]))
        if key in seen:
            continue
        seen.add(key)
        session.add(
            IncidentEvidence(
                incident_id=incident_id,
                kind=key[0],
                ref=key[1],
                summary=str(item.get("summary") or ""),
                url=item.get("url"),
                data=copy.deepcopy(dict(item.get("data") or {})),
                at=_evidence_at(item.get("at"), now),
            )
        )
        added += 1
    if added:
        _touch(session, incident, now)
    session.flush()
    return added


def add_note(session: Session, incident_id: int, *, actor: str, note: str, now: datetime) -> IncidentView:
    """Write a free-text note into the incident's history."""
    _aware(now)
    incident = _load(session, incident_id)
    _event(session, incident, "note", actor=actor, at=now, note=note)
    _touch(session, incident, now)
    session.flush()
    return _view(incident)


def unsnooze_due(session: Session, now: datetime) -> list[int]:
    """Reopen every snoozed incident whose snooze has ended; their ids."""
    _aware(now)
    stmt = (
        _incidents()
        .where(Incident.status == "snoozed", Incident.snoozed_until <= now)
        .order_by(Incident.id)
        .with_for_update()
    )
    woken = list(session.scalars(stmt))
    for incident in woken:
        _transition(session, incident, "open", actor=BOT, now=now, reason="snooze ended")
    return [incident.id for incident in woken]


# ------------------------------------------------------------------------------------------------- reads


def get_incident(session: Session, incident_id: int) -> IncidentDetailView:
    """The incident with its events, linked changes and evidence (`IncidentNotFound` if absent)."""
    incident = session.get(Incident, incident_id, populate_existing=True)
    if incident is None:
        raise IncidentNotFound(incident_id)
    events = session.scalars(
        sa.select(IncidentEvent)
        .where(IncidentEvent.incident_id == incident_id)
        .order_by(IncidentEvent.at, IncidentEvent.id)
    )
    links = session.execute(
        sa.select(IncidentLink, Change)
        .join(Change, IncidentLink.change_id == Change.id)
        .where(IncidentLink.incident_id == incident_id)
        .order_by(IncidentLink.id)
    )
    evidence = session.scalars(
        sa.select(IncidentEvidence).where(IncidentEvidence.incident_id == incident_id).order_by(IncidentEvidence.id)
    )
    return IncidentDetailView(
        incident=_view(incident),
        events=[_as(EventView, e) for e in events],
        links=[
            _as(LinkView, change, incident_id=incident_id, change_id=ln.change_id, role=ln.role) for ln, change in links
        ],
        evidence=[_as(EvidenceView, ev) for ev in evidence],
    )


def _ordered(stmt: sa.Select[Incident]) -> sa.Select[Incident]:
    # SEV1 first by an explicit rank (unknown severities last), then the newest.
    rank = sa.case({sev: i for i, sev in enumerate(SEVERITIES)}, value=Incident.severity, else_=len(SEVERITIES))
    return stmt.order_by(rank, Incident.opened_at.desc(), Incident.id.desc())


def list_incidents(
    session: Session,
    *,
    status: str | set[str] | None = None,
    since: datetime | None = None,
    root_fqn: str | None = None,
    limit: int | None = 100,
) -> list[IncidentView]:
    """Incidents by severity (SEV1 first), then newest opened first; filtered by status, opened since, root."""
    stmt = _incidents()
    if isinstance(status, str):
        stmt = stmt.where(Incident.status == status)
    elif status is not None:
        stmt = stmt.where(Incident.status.in_(sorted(status)))
    if since is not None:
        stmt = stmt.where(Incident.opened_at >= _aware(since, "since"))
    if root_fqn is not None:
        stmt = stmt.where(Incident.root_fqn == root_fqn)
    stmt = _ordered(stmt)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_view(i) for i in session.scalars(stmt)]


def open_incidents(session: Session) -> list[IncidentView]:
    """Every incident not resolved (open, acknowledged or snoozed), most severe first."""
    return [_view(i) for i in session.scalars(_ordered(_incidents().where(Incident.status != "resolved")))]


def _mentions(details: Mapping[str, Any], fqn: str) -> bool:
    for brk in details.get("breaks") or ():
        if (brk.get("entity_fqn") if isinstance(brk, Mapping) else brk) == fqn:
            return True
    return any(fqn in (details.get(key) or ()) for key in ("dashboards", "charts"))


def covers(incident: IncidentView | Incident, fqn: str) -> bool:
    """Whether the incident is rooted at `fqn` or breaks it (details.breaks, dashboards, charts)."""
    return incident.root_fqn == fqn or _mentions(incident.details or {}, fqn)


def incidents_for(session: Session, fqn: str) -> list[IncidentView]:
    """Incidents rooted at `fqn` or that break it (details.breaks, dashboards, charts), most severe first."""
    # Filtered in Python: JSON containment differs between SQLite and PostgreSQL, and incidents are few.
    rows = session.scalars(_ordered(_incidents()))
    return [_view(i) for i in rows if covers(i, fqn)]


def trust_now(session: Session, fqns: Iterable[str]) -> dict[str, TrustNow]:
    """The trust score shown now of each asset: its snapshot's, less the points of the open incidents on it
    (`storage.domain.trust.trust_now`); the why answer and the incident view both read it here."""
    # the rows themselves, not views: a view deep-copies the incident's details, and only id and severity count
    open_rows = list(session.scalars(_ordered(_incidents().where(Incident.status != "resolved"))))
    out: dict[str, TrustNow] = {}
    for fqn in dict.fromkeys(fqns):
        view = store.dna_at(session, fqn)
        found = [(i.id, i.severity) for i in open_rows if covers(i, fqn)]
        out[fqn] = trust.trust_now(view.trust_score if view is not None else None, found)
    return out


TRUST_SHOWN = 20  # assets of one incident whose trust score the incident view shows


def with_trust(session: Session, detail: IncidentDetailView) -> IncidentDetailView:
    """The detail with the trust score now (`trust_now`) of its root and of the first assets it breaks."""
    details = detail.incident.details or {}
    broken = [b.get("entity_fqn") if isinstance(b, Mapping) else b for b in details.get("breaks") or ()]
    fqns = [detail.incident.root_fqn, *broken, *(details.get("dashboards") or ())]
    shown = list(dict.fromkeys(f for f in fqns if isinstance(f, str)))[:TRUST_SHOWN]
    return replace(detail, trust={fqn: t.to_dict() for fqn, t in trust_now(session, shown).items()})
