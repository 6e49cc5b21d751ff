"""The lineage graph as the store knows it (now or at a past time), kept warm per process, and blast radius over it.

A long-lived process (the Slack app) keeps one `GraphCache` per store: each question checks the store's
`GraphVersion` (one small query) and reuses the graph until a sync commits something the graph is built from, then
one thread rebuilds it while the others wait for that build. A one-shot question (`dnabot blast X`) reads only the
edges downstream of X instead (`downstream_graph`), and a question about the past (`at=`) never uses the cache.
"""

from __future__ import annotations

import difflib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from storage.domain.lineage import BlastRadius, LineageGraph, _gc_paused
from storage.errors import ColumnNotFound
from storage.openmetadata.fqn import unquote_name
from storage.persistence import store
from storage.persistence.models import Entity, LineageEdge, Snapshot, SyncRun

log = logging.getLogger(__name__)


def _contains(session: Session, entity_type: str, fqns: Iterable[str] | None, what: str) -> dict[str, list[str]]:
    """FQN → the `what` list of the `contains` genes of current `entity_type` snapshots (only `fqns` when given)."""
    stmt = (
        select(Entity.fqn, Snapshot.genes)
        .join(Snapshot, Snapshot.id == Entity.current_snapshot_id)
        .where(Entity.entity_type == entity_type, Entity.deleted_at.is_(None))
    )
    batches = [stmt] if fqns is None else [stmt.where(Entity.fqn.in_(b)) for b in store.in_batches(sorted(set(fqns)))]
    out: dict[str, list[str]] = {}
    for batch in batches:
        out.update((fqn, list((genes.get("contains") or {}).get(what, []))) for fqn, genes in session.execute(batch))
    return out


def dashboard_charts(session: Session, dashboards: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Dashboard FQN → the charts it holds, from the current dashboard snapshots (only of `dashboards` if given)."""
    return _contains(session, "dashboard", dashboards, "charts")


def _charts_reached(session: Session, types: dict[str, str | None]) -> dict[str, list[str]]:
    """The chart lists a walk over these typed nodes reads: of the dashboards among them, and of the dashboards
    that hold the charts among them (a chart's DNA names its dashboards)."""
    dashboards = {f for f, t in types.items() if t == "dashboard"}
    charts = [f for f, t in types.items() if t == "chart"]
    if charts:
        dashboards.update(d for held in _contains(session, "chart", charts, "dashboards").values() for d in held)
    return dashboard_charts(session, dashboards) if dashboards else {}


def graph_at(session: Session, at: datetime | None = None) -> LineageGraph:
    """The lineage graph live at `at` (None: now), built from the whole store."""
    types, contains = store.entity_types(session), dashboard_charts(session)
    with _gc_paused():
        return LineageGraph.build(store.stream_live_edges(session, at), types, contains)


def downstream_graph(
    session: Session, fqn: str, at: datetime | None = None, *, max_depth: int | None = None
) -> LineageGraph:
    """The part of the graph live at `at` that a walk down from `fqn` can reach: every live edge leaving an entity
    reachable from it (level by level, one query per level), with the types and chart lists of what it reaches.
    Its blast radius of `fqn` (or of any of its columns) is the whole graph's, paths included: the edges keep
    the whole graph's order."""
    edges: list[store.EdgeView] = []
    seen = {fqn}
    frontier = [fqn]
    depth = 0
    with _gc_paused():
        while frontier and (max_depth is None or depth < max_depth):
            found = store.edges_touching(session, frontier, at, side="from")
            edges += found
            frontier = [e.to_fqn for e in found if e.to_fqn not in seen]
            seen.update(frontier)
            depth += 1
        edges.sort(key=lambda e: (e.from_fqn, e.to_fqn))  # live_edges' order: the same BFS ties, the same paths
        types = store.entity_types(session, seen)
        typed: dict[str, str | None] = {fqn: types.get(fqn)}
        for e in edges:
            typed[e.from_fqn] = types.get(e.from_fqn) or e.from_type
            typed[e.to_fqn] = types.get(e.to_fqn) or e.to_type
        return LineageGraph.build(edges, types, _charts_reached(session, typed))


def _mapped_columns(session: Session, fqn: str, at: datetime | None, graph: LineageGraph | None) -> set[str]:
    """Column names of `fqn` that some live column mapping names (a dropped column may live on here)."""
    if graph is not None:
        return graph.mapped_columns(fqn)
    prefix = fqn + "."
    names: set[str] = set()
    for side in ("from", "to"):
        for edge in store.edges_touching(session, [fqn], at, side=side):
            for mapping in edge.columns:
                for col in [*mapping.get("from", []), mapping.get("to") or ""]:
                    if col.startswith(prefix):
                        names.add(unquote_name(col[len(prefix) :]))
    return names


def blast_radius(
    session: Session,
    fqn: str,
    column: str | None = None,
    *,
    max_depth: int | None = None,
    at: datetime | None = None,
    graph: LineageGraph | None = None,
) -> BlastRadius:
    """Everything downstream of `fqn` (or of one of its columns, current or still named by lineage).

    `graph`: the current whole graph when the caller holds one (a warm cache); otherwise, and always for `at`,
    only what is downstream of `fqn` is read."""
    if at is not None:
        graph = None  # a warm graph is the present one
    if column is not None:
        known = store.columns_of(session, fqn, at)
        if column not in known:
            mapped = _mapped_columns(session, fqn, at, graph)
            if column not in mapped:
                candidates = sorted(set(known) | mapped)
                raise ColumnNotFound(fqn, column, difflib.get_close_matches(column, candidates, n=5, cutoff=0.4))
    if graph is None:
        graph = downstream_graph(session, fqn, at, max_depth=max_depth)
    return graph.blast_radius(fqn, column, max_depth=max_depth)


# ------------------------------------------------------------------------------------------------ cache

# Counts in a run's stats that say it wrote something the lineage graph is built from (edges, entities, their DNA).
GRAPH_INPUTS = (
    "edges_added",
    "edges_removed",
    "edges_changed",
    "entities_added",
    "entities_deleted",
    "snapshots_written",
)


@dataclass(frozen=True, slots=True)
class GraphVersion:
    """What a lineage graph was built from, in a few indexed look-ups: the newest committed (succeeded) sync run,
    and the highest edge, snapshot and entity ids (rows written outside a run move these)."""

    run_id: int | None
    run_finished_at: datetime | None
    max_edge_id: int | None
    max_snapshot_id: int | None
    max_entity_id: int | None


def graph_version(session: Session) -> GraphVersion:
    """The store's `GraphVersion` now, in one round trip."""
    newest = select(SyncRun.id).where(SyncRun.status == "succeeded").order_by(SyncRun.id.desc()).limit(1)
    run_id = newest.scalar_subquery()
    finished = select(SyncRun.finished_at).where(SyncRun.id == run_id).scalar_subquery()
    row = session.execute(
        select(
            run_id,
            finished,
            select(func.max(LineageEdge.id)).scalar_subquery(),
            select(func.max(Snapshot.id)).scalar_subquery(),
            select(func.max(Entity.id)).scalar_subquery(),
        )
    ).one()
    return GraphVersion(*row)


def _as_utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite may hand a naive UTC value back


def graph_inputs_unchanged(session: Session, old: GraphVersion, new: GraphVersion) -> bool:
    """Whether a graph built at `old` still holds at `new`: no row was added, the run `old` names is still there
    as it was, and every run committed since says it wrote no edge, entity or snapshot (a quiet tick)."""
    same_rows = (old.max_edge_id, old.max_snapshot_id, old.max_entity_id) == (
        new.max_edge_id,
        new.max_snapshot_id,
        new.max_entity_id,
    )
    if not same_rows or old.run_id is None or new.run_id is None or new.run_id <= old.run_id:
        return False
    kept = select(SyncRun.finished_at).where(SyncRun.id == old.run_id, SyncRun.status == "succeeded")
    still = session.scalar(kept)
    if still is None or _as_utc(still) != _as_utc(old.run_finished_at or still):
        return False
    since = select(SyncRun.stats).where(
        SyncRun.status == "succeeded", SyncRun.id > old.run_id, SyncRun.id <= new.run_id
    )
    return all(all((stats or {}).get(k, 1) == 0 for k in GRAPH_INPUTS) for stats in session.scalars(since))


@dataclass(frozen=True, slots=True)
class _Built:
    version: GraphVersion
    graph: LineageGraph


class GraphCache:
    """The current lineage graph of one store, rebuilt at most once per committed change (thread-safe).

    `graph(session)` checks the store's version; when it moved, the first caller rebuilds (unless the runs since
    wrote nothing the graph is built from) and callers arriving meanwhile wait for that build rather than
    answer from an outdated graph."""

    def __init__(self, loader: Callable[[Session], LineageGraph] = graph_at) -> None:
        self.loader = loader
        self.builds = 0  # how many times the graph was built (a figure for tests and the bench)
        self.keep_warm = False  # a long-lived process: questions use this graph rather than read a part
        self.last_build_seconds: float | None = None
        self._built: _Built | None = None
        self._lock = threading.Lock()  # one builder at a time

    @property
    def holds(self) -> bool:
        """Whether a graph was built here already (it may be outdated)."""
        return self._built is not None

    def graph(self, session: Session) -> LineageGraph:
        """The store's current lineage graph, read through `session` when it has to be (re)built."""
        version = graph_version(session)
        built = self._built
        if built is not None and built.version == version:
            return built.graph
        with self._lock:
            built = self._built
            if built is not None and built.version == version:
                return built.graph  # another thread built it while this one waited
            if built is not None and graph_inputs_unchanged(session, built.version, version):
                self._built = _Built(version, built.graph)
                return built.graph
            began = time.perf_counter()
            graph = self.loader(session)
            self.last_build_seconds = time.perf_counter() - began
            self.builds += 1
            self._built = _Built(version, graph)
            log.debug("lineage graph built: %d nodes in %.2f s", len(graph), self.last_build_seconds)
            return graph

    def clear(self) -> None:
        """Forget the graph (the next question builds it again)."""
        with self._lock:
            self._built = None


_caches: dict[str, GraphCache] = {}
_caches_lock = threading.Lock()


def cache_for(engine: Engine) -> GraphCache:
    """The process's graph cache of the store behind `engine` (one per database URL)."""
    key = engine.url.render_as_string(hide_password=False)
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = GraphCache()
        return cache


def warm(engine: Engine) -> GraphCache:
    """Mark the store's cache as kept warm and bring it up to date now (a no-op when it is current)."""
    cache = cache_for(engine)
    cache.keep_warm = True
    with Session(engine) as session:
        cache.graph(session)
    return cache


def question_graph(engine: Engine, session: Session) -> LineageGraph | None:
    """The warm graph for a question in this process, or None when it keeps no graph (read only what is needed)."""
    cache = cache_for(engine)
    return cache.graph(session) if cache.keep_warm or cache.holds else None
