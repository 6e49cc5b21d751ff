"""One sync run: read OpenMetadata, then rebuild, diff and store the DNA in a single all-or-nothing transaction."""

from __future__ import annotations

import bisect
import gc
import logging
import marshal
import math
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from storage import logctx
from storage.domain import dna
from storage.openmetadata.client import OpenMetadataClient
from storage.openmetadata.models import ENTITY_COLLECTIONS
from storage.persistence.db import fail_dead_runs, session_factory, sync_lock
from storage.persistence.models import SyncRun
from storage.persistence.people import upsert_people
from storage.redact import scrub
from storage.sync.fetch import Fetched, Fetcher, Progress
from storage.sync.lineage import SEARCH_HITS_CAP, LineageSearch
from storage.sync.lineage_read import EdgeState
from storage.sync.write import (
    Candidate,
    Current,
    SyncWriter,
    edges_by_entity,
    load_current,
    load_live_edges,
    load_snapshots,
    merge_edges,
)

log = logging.getLogger(__name__)

FULL_SYNC_CURSOR_MARGIN_MS = 5 * 60 * 1000
LINEAGE_RETRY_MAX = 2000  # entities whose lineage the next run reads again (more wait for the sweep or a full run)


@dataclass
class SyncOptions:
    """How a run behaves: `mode` is auto (incremental when possible), full or incremental.

    `targets` ((entity type, FQN) pairs, e.g. from OpenMetadata webhooks) makes it a "targeted" run that re-reads
    just those entities and leaves the events cursor where it was; with no good run yet it is a full run.
    """

    mode: str = "auto"
    targets: list[tuple[str, str]] | None = None
    full_refresh_seconds: int = 6 * 3600
    trust_drop_threshold: int = 15
    incident_window_days: int = 30
    # The rolling lineage sweep (1.x records no event for a lineage edit): every incremental run re-reads the
    # lineage of the next slice of the catalog, sized so the whole catalog is covered every
    # `lineage_sweep_seconds` at one run per `sync_interval_seconds`, and never less than `lineage_sweep_min`.
    lineage_sweep_seconds: float = 3600
    sync_interval_seconds: float = 900
    lineage_sweep_min: int = 200
    # From 1.7 the whole lineage graph can be read from search in one request instead (`storage.sync.lineage`);
    # the run then re-reads only what that shows changed and what it did not cover. It replaces the slice when it
    # is cheaper (`lineage_search`), one search document costing `lineage_search_cost` per-entity reads: in wall
    # time 0.42 at 1k tables and 0.57-0.74 at 10k (bench/lineage_bench.py, on the simulator). With the defaults
    # that is a catalog of 201-333 entities; 0: whenever the server has the read (one-tick detection, one request
    # instead of a slice, more bytes and time); negative: never.
    lineage_search_cost: float = 0.6
    # Secret values (the bot's tokens, keys, passwords) masked out of the run's stored and logged error, with
    # anything shaped like a token (`storage.redact`); never in the options' repr.
    secrets: tuple[str, ...] = field(default=(), repr=False)
    # Whether a failed run logs its error as a warning; False when the caller reports the result itself (the
    # command line prints it, `serve` logs it with the tick), so the user reads it once.
    log_failure: bool = True


@dataclass
class SyncResult:
    """The machine-readable summary of one run (what `dnabot sync --json` prints)."""

    run_id: int
    status: str
    mode: str
    started_at: str
    finished_at: str
    duration_seconds: float
    fetch_seconds: float = 0.0
    write_seconds: float = 0.0
    om_version: str | None = None
    first_sync: bool = False
    entities_seen: int = 0
    snapshots_written: int = 0
    entities_added: int = 0
    entities_deleted: int = 0
    edges_added: int = 0
    edges_removed: int = 0
    edges_changed: int = 0
    changes_by_kind: dict[str, int] = field(default_factory=dict)
    skipped_malformed: int = 0
    malformed: list[dict[str, Any]] = field(default_factory=list)
    events_seen: int = 0
    change_source: str | None = None  # "events" (the feed), "updatedAt" (feed refused) or "targets" (targeted)
    open_test_incidents: list[str] = field(default_factory=list)  # entities with a failing test open in OM
    incidents: dict[str, Any] | None = None  # what the incident pipeline did after the run (bot layer fills it)
    lineage_sweep: dict[str, Any] | None = None  # incremental: how lineage edits were looked for, and where
    lineage_unknown: int = 0  # entities whose lineage answer was not a clean 200: their stored edges were kept
    # FQN → type of those entities (and, after a targeted run, of earlier ones not read again): the next
    # incremental run reads their lineage again, so an edit hidden behind a flaky answer is not left for a full one
    lineage_retry: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, dict[str, int]] = field(default_factory=dict)  # fields / event types the client did not know
    events_handled_ids: list[str] = field(default_factory=list)  # handled at the cursor: the next run skips them
    requests: int = 0
    retries: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _choose_mode(session: Session, options: SyncOptions, now: datetime) -> tuple[str, SyncRun | None]:
    last_ok = session.scalars(
        select(SyncRun).where(SyncRun.status == "succeeded").order_by(SyncRun.id.desc()).limit(1)
    ).first()
    wanted = "targeted" if options.targets is not None else options.mode
    if wanted == "full" or last_ok is None or last_ok.events_cursor is None:
        return "full", last_ok
    if wanted in ("incremental", "targeted"):
        return wanted, last_ok
    last_full = session.scalars(
        select(SyncRun)
        .where(SyncRun.status == "succeeded", SyncRun.mode == "full")
        .order_by(SyncRun.id.desc())
        .limit(1)
    ).first()
    if last_full is None or now - last_full.started_at >= timedelta(seconds=options.full_refresh_seconds):
        return "full", last_ok
    return "incremental", last_ok


async def run_sync(
    engine: Engine,
    client: OpenMetadataClient,
    options: SyncOptions | None = None,
    *,
    progress: Progress | None = None,
) -> SyncResult:
    """Run one sync under the sync lock; a failure leaves the last good data untouched and is recorded."""
    options = options or SyncOptions()
    factory = session_factory(engine)
    with sync_lock(engine), _gc_frozen(), ExitStack() as context:
        started = datetime.now(UTC)
        clock = time.perf_counter()
        with factory.begin() as session:
            fail_dead_runs(session, now=started)  # we hold the sync lock: any run still `running` is a dead one's
            mode, last_ok = _choose_mode(session, options, started)
            run = SyncRun(started_at=started, status="running", mode=mode, stats={})
            session.add(run)
            session.flush()
            run_id = run.id
            context.enter_context(logctx.bind(sync_id=run_id))  # every log line of the run names it
            cursor = last_ok.events_cursor if last_ok else None
            last_stats = (last_ok.stats or {}) if last_ok else {}
            sweep_cursor = (last_stats.get("lineage_sweep") or {}).get("cursor")
            handled_ids = last_stats.get("events_handled_ids") or []
            retry = dict(last_stats.get("lineage_retry") or {})
            first_sync = last_ok is None
            current = load_current(session)
            known = {c.fqn: c.entity_type for c in current.values() if not c.deleted}
            versions = {c.fqn: (c.om_updated_at, c.om_version) for c in current.values() if not c.deleted}
            fingerprints = {c.fqn: c.fingerprint for c in current.values() if c.fingerprint}
            del current
        result = SyncResult(run_id, "running", mode, started.isoformat(), "", 0.0, first_sync=first_sync)
        fetcher = Fetcher(
            client,
            incident_window_days=options.incident_window_days,
            progress=progress,
            known_fingerprints=fingerprints,
            concurrency=getattr(client, "concurrency", 16),
        )
        try:
            if mode == "full":
                # The events cursor starts from our clock, minus a margin for clock skew with the server:
                # events read twice are harmless (re-fetching an entity is idempotent), missed ones are not.
                fetched = await fetcher.full(int(started.timestamp() * 1000) - FULL_SYNC_CURSOR_MARGIN_MS)
            elif mode == "targeted":
                fetched = await fetcher.targeted(options.targets or [], known, int(cursor or 0))
            else:
                sweep = sweep_slice(known, sweep_cursor, sweep_size(len(known), options))
                search = lineage_search(factory, len(known), len(sweep), options)
                fetched = await fetcher.incremental(
                    int(cursor or 0),
                    known,
                    versions,
                    sweep=sweep,
                    handled_ids=handled_ids,
                    search=search,
                    retry=retry,
                )
            result.om_version = fetched.om_version
            result.lineage_sweep = fetched.sweep
            result.lineage_unknown = len(fetched.lineage_unknown)
            result.lineage_retry = _lineage_retry(fetched, known, retry if mode == "targeted" else {})
            # a targeted run leaves the events cursor where it was, so the next run still skips the same events
            result.events_handled_ids = handled_ids if mode == "targeted" else fetched.handled_ids
            if fetched.sweep is None and mode == "targeted" and sweep_cursor:  # a targeted run keeps the place
                result.lineage_sweep = {"source": "sweep", "read": 0, "cursor": sweep_cursor}
            result.fetch_seconds = round(time.perf_counter() - clock, 3)
            freeze_now()
            with factory.begin() as session:
                run = session.get_one(SyncRun, run_id)
                _apply(session, run, fetched, started, first_sync, options, result)
                _finish(run, result, "succeeded", clock, client, fetched=fetched)
        except Exception as exc:  # the run is recorded as failed; the previous state stays intact
            # masked before it is logged or stored: an error body may echo a token or a password back
            error = scrub(f"{type(exc).__name__}: {exc}", options.secrets)
            level = logging.WARNING if options.log_failure else logging.DEBUG
            log.log(level, "sync run %s failed: %s", run_id, error, exc_info=log.isEnabledFor(logging.DEBUG))
            with factory.begin() as session:
                run = session.get_one(SyncRun, run_id)
                result.error = error
                _finish(run, result, "failed", clock, client, fetched=None)
        return result


def _lineage_retry(fetched: Fetched, known: dict[str, str], earlier: dict[str, str]) -> dict[str, str]:
    """The entities whose lineage the next incremental run reads again: this run's unknown ones, plus (after a
    targeted run, which reads only its targets) the earlier ones it did not read; at most `LINEAGE_RETRY_MAX`."""
    kinds = known | {fqn: fe.entity_type for fqn, fe in fetched.entities.items()}
    read = fetched.lineage_scope | set(fetched.lineage_unknown)
    out = {fqn: t for fqn, t in earlier.items() if fqn not in read and fqn not in fetched.gone}
    out |= {fqn: kinds[fqn] for fqn in fetched.lineage_unknown if fqn in kinds}
    return dict(sorted(out.items())[:LINEAGE_RETRY_MAX])


def sweep_size(catalog: int, options: SyncOptions) -> int:
    """How many entities one incremental run re-reads the lineage of, so the catalog is covered in time."""
    if catalog <= 0 or options.lineage_sweep_seconds <= 0:
        return 0
    share = math.ceil(catalog * options.sync_interval_seconds / options.lineage_sweep_seconds)
    return min(catalog, max(options.lineage_sweep_min, share))


def lineage_search(
    factory: sessionmaker[Session], catalog: int, slice_size: int, options: SyncOptions
) -> LineageSearch | None:
    """Whether an incremental run reads the whole lineage graph from search (when the server has it) instead of
    its slice of `slice_size` per-entity reads: only when the slice cannot cover the catalog in one tick (when it
    can, detection is as fast and every read comes from the database, not the index) and the read costs less,
    counting one document as `lineage_search_cost` reads plus the slice still needed for what one answer cannot
    hold (10,000 documents). The store's live edges, to compare the answer with, are loaded only if it is read."""
    cost = options.lineage_search_cost
    if cost < 0:
        return None
    if cost > 0:
        held = min(catalog, SEARCH_HITS_CAP)
        uncovered = slice_size * (catalog - held) / catalog if catalog else 0
        if slice_size >= catalog or cost * held + uncovered >= slice_size:
            return None

    def stored() -> list[EdgeState]:
        with factory() as session:
            return [state for _, state in load_live_edges(session).values()]

    return LineageSearch(stored)


def sweep_slice(known: dict[str, str], after: str | None, size: int) -> list[tuple[str, str]]:
    """The next `size` entities (type, FQN) after `after` in FQN order, wrapping round to the start."""
    if size <= 0:
        return []
    ordered = sorted(known)
    start = bisect.bisect_right(ordered, after) if after else 0
    chosen = (ordered[start:] + ordered[:start])[:size]
    return [(known[fqn], fqn) for fqn in chosen]


@contextmanager
def _gc_frozen() -> Iterator[None]:
    """Keep the cyclic GC on (httpx and asyncio make cyclic garbage) but stop it rescanning the run's data.

    `freeze_now()` moves everything alive into the permanent generation; it is called between phases.
    """
    try:
        yield
    finally:
        gc.unfreeze()


def freeze_now() -> None:
    gc.collect(0)
    gc.freeze()


def _finish(
    run: SyncRun,
    result: SyncResult,
    status: str,
    clock: float,
    client: OpenMetadataClient,
    fetched: Fetched | None,
) -> None:
    finished = datetime.now(UTC)
    stats = getattr(client, "stats", None)
    result.requests = int(getattr(stats, "requests", 0) or 0)
    result.retries = int(getattr(stats, "retries", 0) or 0)
    result.unknown = {
        kind: dict(counter.most_common(20))
        for kind, counter in (
            ("fields", getattr(client, "unknown_fields", None)),
            ("event_types", getattr(client, "unknown_event_types", None)),
        )
        if counter
    }
    result.status = status
    result.finished_at = finished.isoformat()
    result.duration_seconds = round(time.perf_counter() - clock, 3)
    if fetched is not None:
        result.write_seconds = round(result.duration_seconds - result.fetch_seconds, 3)
    run.status = status
    run.finished_at = finished
    run.error = result.error
    run.om_version = result.om_version
    if fetched is not None:
        run.events_cursor = fetched.events_cursor
        run.lineage_refreshed = bool(fetched.lineage_scope)
    run.stats = {k: v for k, v in result.to_dict().items() if k not in {"run_id", "status", "error"}}


def _apply(
    session: Session,
    run: SyncRun,
    fetched: Fetched,
    now: datetime,
    first_sync: bool,
    options: SyncOptions,
    result: SyncResult,
) -> None:
    current = load_current(session)
    live = load_live_edges(session)
    deleted = _deleted(fetched, current)
    merged = merge_edges(fetched, live, deleted)
    writer = SyncWriter(session, run, now, first_sync=first_sync, trust_drop=options.trust_drop_threshold)
    touched = writer.write_edges(live, merged)
    up, down = edges_by_entity(merged.values())
    if fetched.mode == "full":
        dirty = set(fetched.entities) | deleted
    else:
        dirty = set(fetched.entities) | deleted | fetched.test_targets | _incident_targets(fetched)
        dirty |= {f for f in touched if f in current}
        # a targeted run follows only the pipelines it was asked about, not every pipeline whose run moved
        only = set(fetched.entities) if fetched.mode == "targeted" else None
        dirty |= _fed_by_changed_pipelines(session, fetched, current, merged.values(), only)
    writer.write_entities(_genes_for(session, sorted(dirty), fetched, current, deleted, up, down), current)
    writer.touch_seen(fetched.mode == "full")
    if fetched.people is not None:
        upsert_people(session, fetched.people, now)
    ws = writer.stats
    result.entities_seen = len(fetched.entities)
    result.snapshots_written = ws.snapshots_written
    result.entities_added, result.entities_deleted = ws.entities_added, ws.entities_deleted
    result.edges_added, result.edges_removed, result.edges_changed = (
        ws.edges_added,
        ws.edges_removed,
        ws.edges_changed,
    )
    result.changes_by_kind = dict(sorted(ws.changes_by_kind.items()))
    result.skipped_malformed = len(fetched.malformed)
    result.malformed = fetched.malformed[:20]
    result.events_seen = fetched.events_seen
    result.open_test_incidents = _open_test_incidents(fetched)
    result.change_source = fetched.change_source


def _deleted(fetched: Fetched, current: dict[str, Current]) -> set[str]:
    """Entities this run shows as gone: absent from a full listing, or confirmed gone (events feed, 404)."""
    if fetched.mode == "targeted":
        listed: set[str] = set()  # nothing was listed: only what OpenMetadata answered 404 for is gone
    elif fetched.mode == "full" or fetched.fully_listed:
        listed = set(ENTITY_COLLECTIONS)
    else:
        listed = {"pipeline"}
    listed -= fetched.unsure_types
    out = {f for f in fetched.gone if f in current and not current[f].deleted}
    for fqn, cur in current.items():
        if cur.deleted or cur.entity_type not in listed:
            continue
        if fqn not in fetched.entities and fqn not in fetched.unknown and fqn not in fetched.seen:
            out.add(fqn)
    return out


OPEN_OM_STATES = {"New", "Ack", "Assigned"}


def _open_test_incidents(fetched: Fetched) -> list[str]:
    """Entities with a failing test whose OpenMetadata incident is open (what the first sync takes over)."""
    out = set()
    for fqn, tests in fetched.tests_by_entity.items():
        for t in tests:
            status = t.testCaseStatus or (t.testCaseResult.testCaseStatus if t.testCaseResult else None)
            state = fetched.incidents.get(t.incidentId or "")
            if status == "Failed" and state is not None and state.testCaseResolutionStatusType in OPEN_OM_STATES:
                out.add(fqn)
    return sorted(out)


def _incident_targets(fetched: Fetched) -> set[str]:
    """Entities whose tests carry an incident id: their quality gene may have moved without an event."""
    return {
        fqn
        for fqn, tests in fetched.tests_by_entity.items()
        if any(t.incidentId and t.incidentId in fetched.incidents for t in tests)
    }


def _fed_by_changed_pipelines(
    session: Session, fetched: Fetched, current: dict[str, Current], edges: Any, only: set[str] | None = None
) -> set[str]:
    """Entities loaded by a pipeline (of `only`, when given) whose last run changed since the stored snapshot."""
    runs_read = {p: r for p, r in fetched.pipeline_runs.items() if only is None or p in only}
    ids = [current[p].snapshot_id for p in runs_read if p in current and current[p].snapshot_id]
    stored = load_snapshots(session, ids)
    changed = set()
    for p, run in runs_read.items():
        cur = current.get(p)
        if cur is None or cur.snapshot_id not in stored:
            changed.add(p)
            continue
        runs = stored[cur.snapshot_id][0].get("pipeline", {}).get("runs", [])
        old = next((r for r in runs if r.get("fqn") == p), None)
        if old is None or old.get("status") != run.get("status") or old.get("failed_tasks") != run.get("failed_tasks"):
            changed.add(p)
    return {e.to_fqn for e in edges if e.pipeline_fqn in changed and e.to_fqn in current}


def _genes_for(
    session: Session,
    dirty: list[str],
    fetched: Fetched,
    current: dict[str, Current],
    deleted: set[str],
    up: dict[str, list[Any]],
    down: dict[str, list[Any]],
) -> Iterator[Candidate]:
    """New genes for each dirty entity: fresh from OpenMetadata when re-read, else the stored genes patched."""
    need = [current[f].snapshot_id for f in dirty if f not in fetched.entities and f in current]
    stored = load_snapshots(session, [s for s in need if s])
    retest = fetched.test_targets | _incident_targets(fetched)
    for fqn in dirty:
        fe = fetched.entities.get(fqn)
        if fe is not None and fe.fingerprint is not None:
            # finished while its lineage arrived: genes are kept only when they changed
            yield Candidate(fqn, None, fe, fe.fingerprint, fe.trust, genes_json=fe.genes)
            continue
        if fe is not None and fe.partial_genes is not None:
            genes = marshal.loads(fe.partial_genes)  # its lineage was not read this run
        elif fqn in current and (snapshot_id := current[fqn].snapshot_id) in stored:
            genes = stored[snapshot_id][0]
        else:
            continue
        if fqn in deleted:
            genes["entity"]["deleted"] = True
            yield Candidate(fqn, genes, None)
            continue
        genes = dna.with_lineage(genes, up.get(fqn, ()), down.get(fqn, ()), pipelines=fetched.pipeline_runs)
        if fe is None and fqn in retest:
            genes["quality"] = dna.quality_gene(fetched.tests_by_entity.get(fqn, ()), fetched.incidents)
        yield Candidate(fqn, genes, fe)
