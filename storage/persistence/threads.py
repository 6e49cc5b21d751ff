"""Incident threads in Slack: where each incident's card lives and which incidents still need posting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.persistence import outbox
from storage.persistence.models import Incident, IncidentThread

# Like storage.persistence.incidents, these functions flush but never commit: the caller owns the transaction.


@dataclass(frozen=True, slots=True)
class ThreadView:
    """The Slack thread of one incident: its parent message and what it already shows."""

    incident_id: int
    channel: str
    ts: str
    posted_version: int
    last_event_id: int | None
    created_at: datetime
    updated_at: datetime


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware (UTC), got naive {now!r}")
    return now


def _row(session: Session, incident_id: int) -> IncidentThread | None:
    stmt = (
        sa.select(IncidentThread)
        .where(IncidentThread.incident_id == incident_id)
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).first()


def _view(row: IncidentThread) -> ThreadView:
    return ThreadView(
        incident_id=row.incident_id,
        channel=row.channel,
        ts=row.ts,
        posted_version=row.posted_version,
        last_event_id=row.last_event_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def thread_of(session: Session, incident_id: int) -> ThreadView | None:
    """The incident's thread, or None if it was never posted."""
    row = _row(session, incident_id)
    return _view(row) if row is not None else None


def record_thread(
    session: Session,
    incident_id: int,
    channel: str,
    ts: str,
    *,
    version: int,
    last_event_id: int | None,
    now: datetime,
) -> ThreadView:
    """Remember the card just posted for the incident (the unique incident_id refuses a second thread)."""
    row = IncidentThread(
        incident_id=incident_id,
        channel=channel,
        ts=ts,
        posted_version=version,
        last_event_id=last_event_id,
        created_at=_aware(now),
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return _view(row)


def mark_posted(
    session: Session, incident_id: int, *, version: int, last_event_id: int | None, now: datetime
) -> ThreadView:
    """Record that the card shows `version` and the thread every event up to `last_event_id`."""
    row = _row(session, incident_id)
    if row is None:
        raise LookupError(f"incident {incident_id} has no Slack thread to mark")
    row.posted_version = version
    row.last_event_id = last_event_id
    row.updated_at = _aware(now)
    session.flush()
    return _view(row)


def pending(session: Session) -> list[int]:
    """Incidents Slack is behind on: a newer version than the card shows, or unresolved and never posted."""
    stmt = (
        sa.select(Incident.id)
        .outerjoin(IncidentThread, IncidentThread.incident_id == Incident.id)
        .where(
            sa.or_(
                sa.and_(IncidentThread.id.is_not(None), Incident.version > IncidentThread.posted_version),
                sa.and_(IncidentThread.id.is_(None), Incident.status != "resolved"),
            )
        )
        .order_by(Incident.id)
    )
    return list(session.scalars(stmt))


def owe_missing_cards(session: Session, *, now: datetime) -> int:
    """Owe a card to every incident Slack is behind on that has no card row waiting: a new row, or its dead one
    revived (the cause — a channel, an invitation, a token — may be fixed since). A safety net run by each tick,
    also for incidents stored before the outbox existed. Returns how many rows were owed."""
    owed = 0
    for incident_id in pending(session):
        lane = outbox.incident_lane(incident_id)
        if outbox.has_pending(session, lane, "card"):
            continue
        version = session.scalars(sa.select(Incident.version).where(Incident.id == incident_id)).one()
        key = f"card:{incident_id}:v{version}"
        created = outbox.enqueue(session, key, "card", lane=lane, now=now, incident_id=incident_id)
        owed += created or outbox.requeue_key(session, key, now=now)
    return owed
