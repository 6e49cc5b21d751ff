"""The transactional outbox: side effects owed to Slack and OpenMetadata, delivered at least once, applied once.

A row is written in the same transaction as the state change that causes it (an incident opened, a status
changed, a write-back owed), with an idempotency `key` (enqueueing twice is a no-op). Any replica may deliver:
`claim` marks the oldest pending row of each *lane* as taken by one holder for a while (PostgreSQL adds
`FOR UPDATE SKIP LOCKED` so claimers never wait on each other), so rows of one lane go out one at a time and
in order. The deliverer then completes the row, or schedules a retry (backoff, `Retry-After`), or parks it as
dead after too many attempts. A claim that runs out (the replica died mid-delivery) makes the row claimable
again with its attempt count kept, which tells the next deliverer to look before it re-posts.

Like the other storage modules these functions flush but never commit, except `claim`, which commits its
own short transaction so the claim is visible to the other replicas before the slow delivery starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session, aliased

from storage.persistence.coordination import insert_ignore
from storage.persistence.db import rowcount, session_factory
from storage.persistence.models import OutboxMessage
from storage.redact import scrub

PENDING, DELIVERED, SKIPPED, DEAD = "pending", "delivered", "skipped", "dead"
FINAL = (DELIVERED, SKIPPED, DEAD)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    key: str
    lane: str
    kind: str
    incident_id: int | None
    payload: dict[str, Any]
    status: str
    attempts: int
    available_at: datetime
    claimed_by: str | None
    claimed_until: datetime | None
    last_error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    delivered_at: datetime | None

    @property
    def retried(self) -> bool:
        """An earlier attempt may have reached the other side: look before re-posting."""
        return self.attempts > 1


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    dead: int
    oldest_pending_age_seconds: float | None
    pending_by_kind: dict[str, int]


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware (UTC), got naive {now!r}")
    return now


def _view(row: OutboxMessage) -> OutboxRow:
    return OutboxRow(
        id=row.id,
        key=row.key,
        lane=row.lane,
        kind=row.kind,
        incident_id=row.incident_id,
        payload=dict(row.payload or {}),
        status=row.status,
        attempts=row.attempts,
        available_at=row.available_at,
        claimed_by=row.claimed_by,
        claimed_until=row.claimed_until,
        last_error=row.last_error,
        result=dict(row.result) if row.result else None,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )


def incident_lane(incident_id: int, target: str = "slack") -> str:
    """Slack messages of one incident go out in order; OpenMetadata write-backs have their own lane."""
    return f"{target}:incident:{incident_id}"


def enqueue(
    session: Session,
    key: str,
    kind: str,
    *,
    lane: str,
    now: datetime,
    incident_id: int | None = None,
    payload: dict[str, Any] | None = None,
    delay_seconds: float = 0.0,
) -> bool:
    """Owe one side effect; True when the row is new (the same `key` twice is one row)."""
    now = _aware(now)
    values = {
        "key": key[:255],
        "lane": lane[:128],
        "kind": kind,
        "incident_id": incident_id,
        "payload": payload or {},
        "status": PENDING,
        "attempts": 0,
        "available_at": now + timedelta(seconds=delay_seconds),
        "created_at": now,
    }
    inserted = insert_ignore(session, OutboxMessage, values)
    session.flush()
    return inserted


def claim(
    engine: Engine,
    holder: str,
    *,
    now: datetime,
    lease_seconds: float,
    limit: int = 50,
    lanes: list[str] | None = None,
) -> list[OutboxRow]:
    """Take the oldest due row of up to `limit` lanes for `holder` until now + lease; committed on return."""
    now = _aware(now)
    earlier = aliased(OutboxMessage)
    blocked = (
        sa.select(earlier.id)
        .where(earlier.lane == OutboxMessage.lane, earlier.id < OutboxMessage.id, earlier.status == PENDING)
        .exists()
    )
    due = (
        OutboxMessage.status == PENDING,
        OutboxMessage.available_at <= now,
        sa.or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
        ~blocked,
    )
    candidates = sa.select(OutboxMessage.id).where(*due).order_by(OutboxMessage.id).limit(limit)
    if lanes is not None:
        candidates = candidates.where(OutboxMessage.lane.in_(lanes))
    if engine.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=OutboxMessage)
    with session_factory(engine).begin() as session:
        ids = list(session.scalars(candidates))
        if not ids:
            return []
        # The UPDATE checks again that each row is still due: SQLite's SELECT locks nothing, so another thread of
        # this process (a listener's drain beside the periodic one) may have claimed some of them meanwhile.
        taken = session.scalars(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids), *due)
            .values(
                claimed_by=holder,
                claimed_until=now + timedelta(seconds=lease_seconds),
                attempts=OutboxMessage.attempts + 1,
            )
            .returning(OutboxMessage),
            execution_options={"populate_existing": True},
        ).all()
        return sorted((_view(row) for row in taken), key=lambda row: row.id)


def extend_claim(engine: Engine, row_id: int, holder: str, *, now: datetime, lease_seconds: float) -> bool:
    """Renew `holder`'s claim on a row just before delivering it (a batch is delivered one row after the other,
    so the later rows' claims must not run out meanwhile); False when the claim already ran out: skip the row,
    another deliverer may have it. Committed on return."""
    with session_factory(engine).begin() as session:
        renewed = session.execute(
            sa.update(OutboxMessage)
            .where(
                OutboxMessage.id == row_id,
                OutboxMessage.status == PENDING,
                OutboxMessage.claimed_by == holder,
                OutboxMessage.claimed_until > _aware(now),
            )
            .values(claimed_until=now + timedelta(seconds=lease_seconds))
            .returning(OutboxMessage.id)
        ).first()
        return renewed is not None


def hand_back(engine: Engine, holder: str, *, attempted: bool = False) -> int:
    """Give back every claim of `holder` on pending rows (a claim token, or a replica's name: all its tokens), so
    another deliverer may take them at once instead of after the claim runs out. Committed on return.

    `attempted=False` is for rows whose delivery never started: the attempt their claim counted is given back.
    With `attempted=True` (a delivery may have been under way) the count stays, so the next deliverer looks for
    what the attempt may have posted before it posts again."""
    owned = sa.or_(
        OutboxMessage.claimed_by == holder, OutboxMessage.claimed_by.startswith(f"{holder}/", autoescape=True)
    )
    values: dict[str, Any] = {"claimed_by": None, "claimed_until": None}
    if not attempted:
        values["attempts"] = sa.case((OutboxMessage.attempts > 0, OutboxMessage.attempts - 1), else_=0)
    with session_factory(engine).begin() as session:
        result = session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.status == PENDING, owned)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result)


def _release(session: Session, row_id: int, holder: str) -> OutboxMessage | None:
    """End `holder`'s claim on the row and return it (locked until commit); None when the claim was lost.

    One conditional UPDATE checks and ends the claim (a claim that ran out and was taken over is not ours):
    on SQLite a SELECT locks nothing, so a check followed by a separate write could overwrite a newer claim."""
    stmt = (
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == row_id, OutboxMessage.status == PENDING, OutboxMessage.claimed_by == holder)
        .values(claimed_by=None, claimed_until=None)
        .returning(OutboxMessage)
    )
    return session.scalars(stmt, execution_options={"populate_existing": True}).first()


def complete(
    session: Session,
    row_id: int,
    holder: str,
    *,
    now: datetime,
    status: str = DELIVERED,
    result: dict[str, Any] | None = None,
    note: str | None = None,
) -> bool:
    """Mark a claimed row delivered (or skipped: nothing to do); False when the claim was lost meanwhile."""
    row = _release(session, row_id, holder)
    if row is None:
        return False
    row.status = status
    row.result = result
    row.delivered_at = _aware(now)
    if note is not None:
        row.last_error = scrub(note)
    session.flush()
    return True


def retry_later(
    session: Session,
    row_id: int,
    holder: str,
    *,
    now: datetime,
    error: str,
    delay_seconds: float,
    max_attempts: int,
    counted: bool = True,
) -> str | None:
    """Give a failed attempt back: pending again after `delay_seconds`, or dead after `max_attempts`.

    `counted=False` is for a row that could not even be tried (no Slack thread yet, no channel configured, the
    bot not invited): nothing reached the other side, so the attempt is given back and the row never dies of it.
    Returns the row's new status (None when the claim was lost)."""
    row = _release(session, row_id, holder)
    if row is None:
        return None
    row.last_error = scrub(error)[:2000]  # token shapes masked: the error may quote what the other side said
    if not counted:
        row.attempts = max(0, row.attempts - 1)
    if counted and row.attempts >= max_attempts:
        row.status = DEAD
        row.delivered_at = _aware(now)
    else:
        row.available_at = _aware(now) + timedelta(seconds=delay_seconds)
    session.flush()
    return row.status


def give_up(session: Session, row_id: int, holder: str, *, now: datetime, error: str) -> bool:
    """Park a row that can never succeed (e.g. Slack says channel_not_found) as dead at once."""
    row = _release(session, row_id, holder)
    if row is None:
        return False
    row.status, row.last_error, row.delivered_at = DEAD, scrub(error)[:2000], _aware(now)
    session.flush()
    return True


def newer_pending(session: Session, row: OutboxRow) -> bool:
    """Another row of the same kind waits behind this one in its lane (e.g. a later card version)."""
    stmt = sa.select(OutboxMessage.id).where(
        OutboxMessage.lane == row.lane,
        OutboxMessage.kind == row.kind,
        OutboxMessage.id > row.id,
        OutboxMessage.status == PENDING,
    )
    return session.scalars(stmt.limit(1)).first() is not None


def failed_before(session: Session, row: OutboxRow) -> bool:
    """An earlier row of the same kind in the lane died: its attempts may have reached the other side."""
    stmt = sa.select(OutboxMessage.id).where(
        OutboxMessage.lane == row.lane,
        OutboxMessage.kind == row.kind,
        OutboxMessage.id < row.id,
        OutboxMessage.status == DEAD,
    )
    return session.scalars(stmt.limit(1)).first() is not None


def delivered_result(session: Session, key: str) -> dict[str, Any] | None:
    """What the delivery of `key` returned (`{}` when it returned nothing), or None until it is delivered."""
    stmt = sa.select(OutboxMessage.result).where(OutboxMessage.key == key, OutboxMessage.status == DELIVERED)
    found = session.execute(stmt).first()
    return None if found is None else dict(found[0] or {})


def has_pending(session: Session, lane: str, kind: str | None = None) -> bool:
    """Something (of `kind`, when given) still waits in the lane."""
    stmt = sa.select(OutboxMessage.id).where(OutboxMessage.lane == lane, OutboxMessage.status == PENDING)
    if kind is not None:
        stmt = stmt.where(OutboxMessage.kind == kind)
    return session.scalars(stmt.limit(1)).first() is not None


def rows(session: Session, *, status: str | None = None, lane: str | None = None, limit: int = 100) -> list[OutboxRow]:
    """The newest rows first (for `dnabot outbox` and the tests)."""
    stmt = sa.select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(OutboxMessage.status == status)
    if lane is not None:
        stmt = stmt.where(OutboxMessage.lane == lane)
    return [_view(r) for r in session.scalars(stmt)]


def requeue(session: Session, ids: list[int] | None, *, now: datetime) -> int:
    """Give dead rows (all, or `ids`) a fresh set of attempts.

    A row that was attempted keeps a count of 1, not 0: its next claim is then `retried`, so the deliverer
    looks for what an earlier attempt may have posted (e.g. one that timed out) before posting again."""
    stmt = sa.update(OutboxMessage).where(OutboxMessage.status == DEAD)
    if ids is not None:
        stmt = stmt.where(OutboxMessage.id.in_(ids))
    attempted = sa.case((OutboxMessage.attempts > 0, 1), else_=0)
    result = session.execute(
        stmt.values(status=PENDING, attempts=attempted, available_at=_aware(now), delivered_at=None).execution_options(
            synchronize_session=False
        )
    )
    return rowcount(result)


def requeue_key(session: Session, key: str, *, now: datetime) -> bool:
    """Revive the dead row of `key` (its cause may be gone: a channel configured, the bot invited)."""
    result = session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.key == key, OutboxMessage.status == DEAD)
        .values(
            status=PENDING,
            attempts=sa.case((OutboxMessage.attempts > 0, 1), else_=0),
            available_at=_aware(now),
            delivered_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(rowcount(result))


def purge(session: Session, older_than: datetime) -> int:
    """Drop delivered and skipped rows finished before `older_than` (dead rows stay until requeued)."""
    result = session.execute(
        sa.delete(OutboxMessage)
        .where(OutboxMessage.status.in_((DELIVERED, SKIPPED)), OutboxMessage.delivered_at < _aware(older_than))
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


def stats(session: Session, now: datetime) -> OutboxStats:
    """Depth, dead letters and the age of the oldest pending row (for /metrics and /dna status)."""
    by_kind = dict(
        session.execute(
            sa.select(OutboxMessage.kind, sa.func.count())
            .where(OutboxMessage.status == PENDING)
            .group_by(OutboxMessage.kind)
        ).all()
    )
    dead = session.scalar(sa.select(sa.func.count()).where(OutboxMessage.status == DEAD)) or 0
    oldest = session.scalar(sa.select(sa.func.min(OutboxMessage.created_at)).where(OutboxMessage.status == PENDING))
    age = round((_aware(now) - oldest).total_seconds(), 3) if oldest is not None else None
    return OutboxStats(sum(by_kind.values()), int(dead), age, {str(k): int(v) for k, v in by_kind.items()})
