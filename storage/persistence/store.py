"""Read side of the DNA store: DNA at a point in time, timelines, edges and runs (name lookups: `names.py`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.persistence.models import Change, Entity, LineageEdge, Snapshot, SyncRun


@dataclass(frozen=True, slots=True)
class SnapshotView:
    """The DNA of one entity as it was at some moment."""

    entity_fqn: str
    entity_type: str
    taken_at: datetime
    fingerprint: str
    genes: dict[str, Any]
    trust_score: int | None
    trust_factors: dict[str, Any] | None
    sync_run_id: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class ChangeView:
    """One detected change, as recorded by a sync."""

    id: int
    sync_run_id: int
    entity_fqn: str
    entity_type: str
    kind: str
    subject: str | None
    old_value: Any
    new_value: Any
    confidence: float | None
    details: dict[str, Any]
    detected_at: datetime


@dataclass(frozen=True, slots=True)
class EdgeView:
    """One lineage edge with its lifetime (`removed_at` None while it is live)."""

    from_fqn: str
    from_type: str
    to_fqn: str
    to_type: str
    pipeline_fqn: str | None
    columns: list[Any]
    first_seen: datetime
    removed_at: datetime | None


@dataclass(frozen=True, slots=True)
class RunView:
    """One sync run and its outcome."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    mode: str
    error: str | None
    stats: dict[str, Any]
    events_cursor: int | None
    om_version: str | None
    lineage_refreshed: bool


# ------------------------------------------------------------------------------------------- snapshots


def _aware(at: datetime | None, what: str = "at") -> datetime | None:
    if at is not None and (at.tzinfo is None or at.utcoffset() is None):
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {at!r}")
    return at


def _snapshot_view(snapshot: Snapshot, entity: Entity, at: datetime | None) -> SnapshotView:
    entity_genes = snapshot.genes.get("entity") or {}
    gone = entity.deleted_at is not None and (at is None or entity.deleted_at <= at)
    return SnapshotView(
        entity_fqn=entity.fqn,
        entity_type=entity.entity_type,
        taken_at=snapshot.taken_at,
        fingerprint=snapshot.fingerprint,
        genes=snapshot.genes,
        trust_score=snapshot.trust_score,
        trust_factors=snapshot.trust_factors,
        sync_run_id=snapshot.sync_run_id,
        deleted=bool(entity_genes.get("deleted")) or gone,
    )


def dna_at(session: Session, fqn: str, at: datetime | None = None) -> SnapshotView | None:
    """The snapshot in force at `at` (the latest taken at or before it; None = now), or None."""
    _aware(at)
    stmt = (
        sa.select(Snapshot, Entity)
        .join(Entity, Snapshot.entity_id == Entity.id)
        .where(Entity.fqn == fqn)
        .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
        .limit(1)
    )
    if at is not None:
        stmt = stmt.where(Snapshot.taken_at <= at)
    row = session.execute(stmt).first()
    return None if row is None else _snapshot_view(row[0], row[1], at)


def snapshots_between(session: Session, fqn: str, since: datetime, until: datetime | None = None) -> list[SnapshotView]:
    """The snapshots of `fqn` taken in [since, until] (until None = now), oldest first."""
    _aware(since, "since")
    _aware(until, "until")
    stmt = (
        sa.select(Snapshot, Entity)
        .join(Entity, Snapshot.entity_id == Entity.id)
        .where(Entity.fqn == fqn, Snapshot.taken_at >= since)
        .order_by(Snapshot.taken_at, Snapshot.id)
    )
    if until is not None:
        stmt = stmt.where(Snapshot.taken_at <= until)
    return [_snapshot_view(snap, entity, snap.taken_at) for snap, entity in session.execute(stmt)]


def _snapshots_in_force(at: datetime | None) -> sa.Subquery:
    """Per entity, the id of its latest snapshot taken at or before `at` (window function, both engines)."""
    rank = (
        sa.func.row_number()
        .over(partition_by=Snapshot.entity_id, order_by=(Snapshot.taken_at.desc(), Snapshot.id.desc()))
        .label("rank")
    )
    inner = sa.select(Snapshot.id.label("snapshot_id"), rank)
    if at is not None:
        inner = inner.where(Snapshot.taken_at <= at)
    ranked = inner.subquery()
    return sa.select(ranked.c.snapshot_id).where(ranked.c.rank == 1).subquery()


def entity_types(session: Session, fqns: Iterable[str] | None = None) -> dict[str, str]:
    """FQN → entity type of every entity not deleted (only of `fqns` when given)."""
    stmt = sa.select(Entity.fqn, Entity.entity_type).where(Entity.deleted_at.is_(None))
    if fqns is None:
        return {fqn: entity_type for fqn, entity_type in session.execute(stmt)}
    out: dict[str, str] = {}
    for chunk in in_batches(sorted(set(fqns))):
        out.update((fqn, entity_type) for fqn, entity_type in session.execute(stmt.where(Entity.fqn.in_(chunk))))
    return out


def columns_of(session: Session, fqn: str, at: datetime | None = None) -> list[str]:
    """Top-level column names (in position order) of one entity alive at `at` (None = now); [] otherwise.
    The same answer as `entity_columns(session, at).get(fqn, [])`, from one snapshot instead of all."""
    view = dna_at(session, fqn, at)
    if view is None or view.deleted:
        return []
    schema = view.genes.get("schema") or {}
    return [c["name"] for c in schema.get("columns") or [] if "name" in c]


def entity_columns(session: Session, at: datetime | None = None) -> dict[str, list[str]]:
    """FQN → top-level column names (in position order) of every entity alive at `at` (None = now)."""
    _aware(at)
    in_force = _snapshots_in_force(at)
    stmt = (
        sa.select(Entity.fqn, Entity.deleted_at, Snapshot.genes)
        .join(Snapshot, Snapshot.entity_id == Entity.id)
        .join(in_force, in_force.c.snapshot_id == Snapshot.id)
    )
    columns: dict[str, list[str]] = {}
    for fqn, deleted_at, genes in session.execute(stmt):
        if deleted_at is not None and (at is None or deleted_at <= at):
            continue
        if (genes.get("entity") or {}).get("deleted"):
            continue
        schema = genes.get("schema") or {}
        columns[fqn] = [c["name"] for c in schema.get("columns") or [] if "name" in c]
    return columns


# --------------------------------------------------------------------------------------------- changes


def _change_view(change: Change) -> ChangeView:
    return ChangeView(
        id=change.id,
        sync_run_id=change.sync_run_id,
        entity_fqn=change.entity_fqn,
        entity_type=change.entity_type,
        kind=change.kind,
        subject=change.subject,
        old_value=change.old_value,
        new_value=change.new_value,
        confidence=change.confidence,
        details=change.details or {},
        detected_at=change.detected_at,
    )


def timeline(session: Session, fqn: str, since: datetime, until: datetime | None = None) -> list[ChangeView]:
    """The changes of `fqn` detected in [since, until] (until None = now), in detection order."""
    _aware(since, "since")
    _aware(until, "until")
    stmt = (
        sa.select(Change)
        .where(Change.entity_fqn == fqn, Change.detected_at >= since)
        .order_by(Change.detected_at, Change.id)
    )
    if until is not None:
        stmt = stmt.where(Change.detected_at <= until)
    return [_change_view(c) for c in session.scalars(stmt)]


def recent_changes(
    session: Session, since: datetime, kinds: set[str] | None = None, *, limit: int | None = None
) -> list[ChangeView]:
    """Every change detected since `since` (optionally only of `kinds`), in detection order."""
    _aware(since, "since")
    stmt = sa.select(Change).where(Change.detected_at >= since).order_by(Change.detected_at, Change.id)
    if kinds is not None:
        stmt = stmt.where(Change.kind.in_(sorted(kinds)))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_change_view(c) for c in session.scalars(stmt)]


# ----------------------------------------------------------------------------------------------- edges


IN_BATCH = 500  # values per `IN (…)`: well under SQLite's bound-parameter limit


def in_batches(items: Sequence[str], size: int = IN_BATCH) -> Iterable[Sequence[str]]:
    """`items` in slices of at most `size` (for `IN (…)` lists)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


_EDGE_COLUMNS = (
    LineageEdge.from_fqn,
    LineageEdge.from_type,
    LineageEdge.to_fqn,
    LineageEdge.to_type,
    LineageEdge.pipeline_fqn,
    LineageEdge.columns,
    LineageEdge.first_seen,
    LineageEdge.removed_at,
)


def _live_at(stmt: sa.Select[Any], at: datetime | None) -> sa.Select[Any]:
    if at is None:
        return stmt.where(LineageEdge.removed_at.is_(None))
    return stmt.where(
        LineageEdge.first_seen <= at,
        sa.or_(LineageEdge.removed_at.is_(None), LineageEdge.removed_at > at),
    )


def _by_code_point(session: Session, column: Any) -> Any:
    """`column` ordered by code point, as Python sorts str: PostgreSQL's default collation sorts otherwise."""
    return column.collate("C") if session.get_bind().dialect.name == "postgresql" else column


def _edge_views(rows: Iterable[Any]) -> list[EdgeView]:
    return [EdgeView(a, b, c, d, p, list(cols or []), first, removed) for a, b, c, d, p, cols, first, removed in rows]


def live_edges(session: Session, at: datetime | None = None) -> list[EdgeView]:
    """The lineage edges live at `at` (None = now): seen by then and not yet removed; by (from, to) in code-point
    order. Plain rows (no ORM object per edge): a 100k-node graph reads in a fraction of the time."""
    _aware(at)
    order = (_by_code_point(session, LineageEdge.from_fqn), _by_code_point(session, LineageEdge.to_fqn))
    stmt = _live_at(sa.select(*_EDGE_COLUMNS), at).order_by(*order, LineageEdge.id)
    return _edge_views(session.execute(stmt))


def stream_live_edges(session: Session, at: datetime | None = None, *, batch: int = 5_000) -> Iterator[Any]:
    """`live_edges` as a stream of plain rows (`from_fqn, from_type, to_fqn, to_type, pipeline_fqn, columns`),
    `batch` at a time: what a graph build reads, never held whole."""
    _aware(at)
    order = (_by_code_point(session, LineageEdge.from_fqn), _by_code_point(session, LineageEdge.to_fqn))
    stmt = _live_at(sa.select(*_EDGE_COLUMNS[:6]), at).order_by(*order, LineageEdge.id)
    yield from session.execute(stmt, execution_options={"yield_per": batch})


def edges_touching(
    session: Session, fqns: Iterable[str], at: datetime | None = None, *, side: str = "from"
) -> list[EdgeView]:
    """The edges live at `at` whose `side` end ("from" or "to") is one of `fqns`, unordered."""
    _aware(at)
    end = LineageEdge.from_fqn if side == "from" else LineageEdge.to_fqn
    out: list[EdgeView] = []
    for chunk in in_batches(sorted(set(fqns))):
        out += _edge_views(session.execute(_live_at(sa.select(*_EDGE_COLUMNS), at).where(end.in_(chunk))))
    return out


# ------------------------------------------------------------------------------------------------ runs


def _run_view(run: SyncRun) -> RunView:
    return RunView(
        id=run.id,
        started_at=run.started_at,
        finished_at=run.finished_at,
        status=run.status,
        mode=run.mode,
        error=run.error,
        stats=run.stats or {},
        events_cursor=run.events_cursor,
        om_version=run.om_version,
        lineage_refreshed=run.lineage_refreshed,
    )


def last_runs(session: Session, limit: int = 10) -> list[RunView]:
    """The most recent sync runs, newest first."""
    stmt = sa.select(SyncRun).order_by(SyncRun.started_at.desc(), SyncRun.id.desc()).limit(limit)
    return [_run_view(r) for r in session.scalars(stmt)]


def last_successful_run(session: Session) -> RunView | None:
    """The newest sync run that succeeded, if any."""
    stmt = (
        sa.select(SyncRun)
        .where(SyncRun.status == "succeeded")
        .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
        .limit(1)
    )
    run = session.scalars(stmt).first()
    return None if run is None else _run_view(run)


# ------------------------------------------------------------------------------------------- freshness

RECENT_FAILURES = 5
PARTIAL_MODES = ("targeted",)  # a webhook's re-sync of a few entities does not make the whole store fresh


@dataclass(frozen=True, slots=True)
class FreshnessView:
    """How fresh the store is at `now`: the last run, the last good one, and the failures since it."""

    now: datetime
    last_run: RunView | None
    last_good: RunView | None
    good_at: datetime | None  # when the last good run finished (its start if it has no finish time)
    age_seconds: float | None  # now - good_at: how old the newest good data is
    failures: int  # failed runs since the last good one (all failed runs when none succeeded)
    recent_failures: tuple[RunView, ...]  # the newest of those failures, newest first
    last_error: str | None  # the error of the newest of those failures


def _utc(at: datetime) -> datetime:
    # naive values only come from SQLite (a column read without its type decorator): they are UTC
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def freshness(session: Session, now: datetime, *, recent: int = RECENT_FAILURES) -> FreshnessView:
    """The freshness of the store at `now`: good runs are full or incremental ones that succeeded; runs still
    going are neither good nor failures."""
    _aware(now, "now")
    latest = last_runs(session, 1)
    newest_good = (
        sa.select(SyncRun)
        .where(SyncRun.status == "succeeded", SyncRun.mode.not_in(PARTIAL_MODES))
        .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
        .limit(1)
    )
    good_run = session.scalars(newest_good).first()
    good = _run_view(good_run) if good_run is not None else None
    failed = sa.select(SyncRun).where(SyncRun.status == "failed")
    if good is not None:
        failed = failed.where(
            sa.or_(
                SyncRun.started_at > good.started_at,
                sa.and_(SyncRun.started_at == good.started_at, SyncRun.id > good.id),
            )
        )
    count = session.scalar(sa.select(sa.func.count()).select_from(failed.subquery())) or 0
    newest = failed.order_by(SyncRun.started_at.desc(), SyncRun.id.desc()).limit(recent)
    failures = tuple(_run_view(r) for r in session.scalars(newest))
    good_at = _utc(good.finished_at or good.started_at) if good is not None else None
    return FreshnessView(
        now=now,
        last_run=latest[0] if latest else None,
        last_good=good,
        good_at=good_at,
        age_seconds=(now - good_at).total_seconds() if good_at is not None else None,
        failures=int(count),
        recent_failures=failures,
        last_error=failures[0].error if failures else None,
    )


INCIDENTS_PROCESSED = "incidents_processed"  # sync_runs.stats flag set by the incident pipeline's rules phase


def unprocessed_runs(session: Session, before_id: int, *, since: datetime, limit: int = 10) -> list[int]:
    """Succeeded runs before `before_id` whose changes never went through the incident pipeline (it failed after
    the sync committed), oldest first. Only runs after the newest processed one count, so a store from before
    this flag existed is not replayed."""
    rows = session.execute(
        sa.select(SyncRun.id, SyncRun.stats)
        .where(SyncRun.id < before_id, SyncRun.status == "succeeded", SyncRun.started_at >= since)
        .order_by(SyncRun.id.desc())
        .limit(200)
    ).all()
    missed: list[int] = []
    for run_id, stats in rows:
        if (stats or {}).get(INCIDENTS_PROCESSED):
            return sorted(missed)[-limit:]
        missed.append(run_id)
    return []  # no processed run in view: nothing to catch up (or a store older than the flag)
