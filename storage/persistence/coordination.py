"""Coordination between replicas through the database: leases, inbound dedup, webhook sync requests, mention threads.

Every function here works the same on SQLite (one process) and PostgreSQL (several replicas): a conditional
UPDATE or an `INSERT … ON CONFLICT DO NOTHING` decides, so two replicas asking at once get one answer each.
Like the other storage modules, they flush but never commit: the caller owns the transaction.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.persistence.db import rowcount
from storage.persistence.models import InboundEvent, Lease, MentionThread, SyncRequest


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware (UTC), got naive {now!r}")
    return now


def insert_ignore(session: Session, model: type[Any], values: dict[str, Any]) -> bool:
    """INSERT the row unless its primary/unique key exists already; True when this call inserted it."""
    dialect = session.get_bind().dialect.name
    table = model.__table__
    stmt = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)).values(**values)
    # RETURNING, not rowcount: psycopg reports a rowcount of 1 for a skipped `ON CONFLICT DO NOTHING`.
    result = session.execute(stmt.on_conflict_do_nothing().returning(*table.primary_key.columns))
    return result.first() is not None


def replica_id(configured: str | None = None) -> str:
    """Who this process is, for leases and outbox claims: the configured name (DNABOT_REPLICA_ID, read by the
    settings), else host:pid."""
    return configured or f"{socket.gethostname()}:{os.getpid()}"


# ---------------------------------------------------------------------------------------------- leases


@dataclass(frozen=True, slots=True)
class LeaseView:
    name: str
    holder: str
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime


def try_lease(session: Session, name: str, holder: str, *, ttl_seconds: float, now: datetime) -> bool:
    """Take or renew the lease `name` for `holder` until now + ttl; False while someone else holds it."""
    now = _aware(now)
    until = now + timedelta(seconds=ttl_seconds)
    renewed = session.execute(
        sa.update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(renewed_at=now, expires_at=until)
        .execution_options(synchronize_session=False)
    )
    if rowcount(renewed):
        return True
    taken = session.execute(
        sa.update(Lease)
        .where(Lease.name == name, Lease.expires_at < now)
        .values(holder=holder, acquired_at=now, renewed_at=now, expires_at=until)
        .execution_options(synchronize_session=False)
    )
    if rowcount(taken):
        return True
    values = {"name": name, "holder": holder, "acquired_at": now, "renewed_at": now, "expires_at": until}
    return insert_ignore(session, Lease, values)


def release_lease(session: Session, name: str, holder: str) -> bool:
    """Give the lease up (on shutdown) so another replica takes over at its next attempt."""
    result = session.execute(
        sa.delete(Lease).where(Lease.name == name, Lease.holder == holder).execution_options(synchronize_session=False)
    )
    return bool(rowcount(result))


SCHEDULER_LEASE = "scheduler"  # held by the replica that runs the sync tick and the daily digest


def holder_of(session: Session, name: str, *, now: datetime) -> str | None:
    """Who holds the lease `name` now (None when nobody does, or the last holder's lease ran out)."""
    lease = lease_of(session, name)
    return lease.holder if lease is not None and lease.expires_at > _aware(now) else None


def lease_of(session: Session, name: str) -> LeaseView | None:
    row = session.get(Lease, name, populate_existing=True)
    if row is None:
        return None
    return LeaseView(row.name, row.holder, row.acquired_at, row.renewed_at, row.expires_at)


# --------------------------------------------------------------------------------------- inbound dedup


def first_delivery(session: Session, key: str, *, source: str, ttl_seconds: float, now: datetime) -> bool:
    """Record an inbound delivery by its id; True the first time, False for a repeat within the expiry.

    An expired record is replaced, so a key is only remembered for `ttl_seconds`."""
    now = _aware(now)
    session.execute(
        sa.delete(InboundEvent)
        .where(InboundEvent.key == key, InboundEvent.expires_at < now)
        .execution_options(synchronize_session=False)
    )
    values = {"key": key, "source": source, "received_at": now, "expires_at": now + timedelta(seconds=ttl_seconds)}
    return insert_ignore(session, InboundEvent, values)


def purge_inbound(session: Session, now: datetime) -> int:
    """Forget inbound ids whose expiry passed."""
    result = session.execute(
        sa.delete(InboundEvent)
        .where(InboundEvent.expires_at < _aware(now))
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


# ------------------------------------------------------------------------------------ webhook requests


def request_sync(session: Session, entity_type: str, fqn: str, *, now: datetime) -> bool:
    """Ask for a targeted re-sync of one entity; True when new. A repeat refreshes `requested_at`, so a run that
    started before the repeat does not clear it (see `done_sync_requests`)."""
    values = {"entity_type": entity_type, "fqn": fqn, "requested_at": _aware(now)}
    if insert_ignore(session, SyncRequest, values):
        return True
    session.execute(
        sa.update(SyncRequest)
        .where(SyncRequest.entity_type == entity_type, SyncRequest.fqn == fqn, SyncRequest.requested_at < now)
        .values(requested_at=now)
        .execution_options(synchronize_session=False)
    )
    return False


def pending_sync_requests(session: Session, limit: int = 500) -> list[tuple[int, str, str]]:
    """(id, entity_type, fqn) of the oldest pending requests."""
    stmt = sa.select(SyncRequest.id, SyncRequest.entity_type, SyncRequest.fqn).order_by(SyncRequest.id).limit(limit)
    return [(row.id, row.entity_type, row.fqn) for row in session.execute(stmt)]


def done_sync_requests(session: Session, ids: list[int], *, requested_before: datetime | None = None) -> int:
    """Remove requests a successful sync has covered: with `requested_before` (the run's start), only those
    not asked for again since (a later change must get its own run)."""
    if not ids:
        return 0
    stmt = sa.delete(SyncRequest).where(SyncRequest.id.in_(ids))
    if requested_before is not None:
        stmt = stmt.where(SyncRequest.requested_at <= _aware(requested_before))
    result = session.execute(stmt.execution_options(synchronize_session=False))
    return rowcount(result)


# ------------------------------------------------------------------------------------- mention threads


def remember_thread(session: Session, channel: str, thread_ts: str, fqn: str, *, now: datetime) -> None:
    """The dataset a Slack thread talks about (a later mention in the thread reuses it); an upsert, so two
    replicas remembering the same new thread at once both succeed."""
    values = {"channel": channel, "thread_ts": thread_ts, "fqn": fqn, "updated_at": _aware(now)}
    if not insert_ignore(session, MentionThread, values):
        session.execute(
            sa.update(MentionThread)
            .where(MentionThread.channel == channel, MentionThread.thread_ts == thread_ts)
            .values(fqn=fqn, updated_at=now)
            .execution_options(synchronize_session=False)
        )


def thread_subject(session: Session, channel: str, thread_ts: str) -> str | None:
    row = session.get(MentionThread, (channel, thread_ts))
    return row.fqn if row is not None else None


def purge_threads(session: Session, older_than: datetime) -> int:
    result = session.execute(
        sa.delete(MentionThread)
        .where(MentionThread.updated_at < _aware(older_than))
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)
