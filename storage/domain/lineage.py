"""Lineage graph in memory: table- and column-level blast radius, upstream impacts, root-cause paths."""

from __future__ import annotations

import gc
from array import array
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple

from storage.openmetadata.fqn import column_fqn, unquote_name

PATH_EXPANSION_BUDGET = 20_000  # upstream_paths stops exploring after this many path extensions


class Impact(NamedTuple):
    """An entity reached through lineage; `path` is the entity chain in flow order (upstream first)."""

    fqn: str
    type: str | None
    distance: int
    certainty: str  # "column": column mappings carry the dependency all the way; "table": not everywhere
    path: tuple[str, ...]


class ColumnImpact(NamedTuple):
    """A downstream column fed by the root column; `via` is the column FQN chain from the root column."""

    entity_fqn: str
    column: str
    distance: int
    via: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BlastRadius:
    """Everything downstream of an entity (or one of its columns), each list closest first."""

    root: str
    column: str | None
    entities: list[Impact] = field(default_factory=list)
    columns: list[ColumnImpact] = field(default_factory=list)
    dashboards: list[str] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    pipelines: list[str] = field(default_factory=list)


def _mappings(columns: Any) -> Iterable[tuple[Iterable[str], str]]:
    """(fromColumns, toColumn) pairs from either the tuple form or the stored `[{"from", "to"}]` form."""
    if not columns:
        return ()
    if isinstance(columns[0], Mapping):
        return [(m.get("from") or (), m.get("to") or "") for m in columns]
    pairs: Iterable[tuple[Iterable[str], str]] = columns  # the tuple form already
    return pairs


class _Side:
    """One direction of the graph: node adjacency plus a CSR table of column → column hops."""

    __slots__ = ("col_edge", "col_next", "col_start", "edges", "unmapped")

    def __init__(self, n_nodes: int) -> None:
        self.edges: list[list[int]] = [[] for _ in range(n_nodes)]  # node → edge ids
        self.unmapped: list[list[int]] = [[] for _ in range(n_nodes)]  # node → edge ids with no mapping
        self.col_start = array("i")
        self.col_next = array("i")
        self.col_edge = array("i")

    def index_columns(self, n_cols: int, pairs: tuple[list[int], list[int], list[int]]) -> None:
        """(source column, next column, edge) triples into CSR arrays, grouped by source column."""
        src, nxt, edge = pairs
        counts = [0] * (n_cols + 1)
        for s in src:
            counts[s + 1] += 1
        for i in range(n_cols):
            counts[i + 1] += counts[i]
        self.col_start = array("i", counts)
        order = sorted(range(len(src)), key=src.__getitem__)  # stable: edge order kept within a column
        self.col_next = array("i", [nxt[i] for i in order])
        self.col_edge = array("i", [edge[i] for i in order])


class LineageGraph:
    """An immutable lineage graph with integer node and column ids; build it once per question batch."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._fqns: list[str] = []
        self._types: list[str | None] = []
        self._edge_ends: array[int] = array("i")  # from, to interleaved
        self._edge_pipeline: list[str | None] = []
        self._col_ids: dict[Any, int] = {}  # column FQN (or (node, FQN) on a clash) → column id
        self._col_fqns: list[str] = []
        self._col_node = array("i")
        self._down = _Side(0)
        self._up = _Side(0)
        self._charts_of: dict[str, tuple[str, ...]] = {}
        self._dashboards_of: dict[str, tuple[str, ...]] = {}
        self._node_cols: dict[int, list[int]] | None = None

    # -- building ---------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        edges: Iterable[Any],
        entity_types: Mapping[str, str],
        contains: Mapping[str, Iterable[str]] | None = None,
    ) -> LineageGraph:
        """A graph from edge-likes (`from_fqn, from_type, to_fqn, to_type, pipeline_fqn, columns`).

        One pass: each edge is indexed as it arrives, so `edges` may be a stream of rows that is never held whole
        (at 100k nodes the decoded column mappings outweigh the graph)."""
        g = cls()
        g._charts_of = {d: tuple(sorted(set(cs))) for d, cs in (contains or {}).items()}
        back: dict[str, set[str]] = {}
        for dash, charts in g._charts_of.items():
            for chart in charts:
                back.setdefault(chart, set()).add(dash)
        g._dashboards_of = {c: tuple(sorted(ds)) for c, ds in back.items()}
        g._index(edges, entity_types)
        return g

    def _node(self, fqn: str, entity_type: str | None) -> int:
        node = self._ids.get(fqn)
        if node is None:
            node = self._ids[fqn] = len(self._fqns)
            self._fqns.append(fqn)
            self._types.append(entity_type)
            for side in (self._down, self._up):
                side.edges.append([])
                side.unmapped.append([])
        return node

    def _column(self, col: str, node: int) -> int:
        cid = self._col_ids.get(col)
        if cid is not None and self._col_node[cid] == node:
            return cid
        key: Any = col if cid is None else (node, col)
        found = self._col_ids.get(key)
        if found is not None:
            return found
        cid = self._col_ids[key] = len(self._col_fqns)
        self._col_fqns.append(col)
        self._col_node.append(node)
        return cid

    def _index(self, edges: Iterable[Any], entity_types: Mapping[str, str]) -> None:
        down, up = self._down, self._up
        src: list[int] = []
        dst: list[int] = []
        eids: list[int] = []
        add_src, add_dst, add_eid = src.append, dst.append, eids.append
        fqns, get, col_node, column, node = self._fqns, self._col_ids.get, self._col_node, self._column, self._node
        ends, pipelines, types = self._edge_ends, self._edge_pipeline, entity_types.get
        for eid, e in enumerate(edges):
            a = node(e.from_fqn, types(e.from_fqn) or e.from_type)
            b = node(e.to_fqn, types(e.to_fqn) or e.to_type)
            ends.extend((a, b))
            pipelines.append(e.pipeline_fqn or None)
            down.edges[a].append(eid)
            up.edges[b].append(eid)
            a_prefix, b_prefix = fqns[a] + ".", fqns[b] + "."
            before = len(src)
            for from_cols, to_col in _mappings(e.columns):
                t = get(to_col, -1)
                if t < 0 or col_node[t] != b:
                    if not to_col.startswith(b_prefix):
                        continue  # a mapping naming another entity's column is malformed
                    t = column(to_col, b)
                for fc in from_cols:
                    f = get(fc, -1)
                    if f < 0 or col_node[f] != a:
                        if not fc.startswith(a_prefix):
                            continue
                        f = column(fc, a)
                    add_src(f)
                    add_dst(t)
                    add_eid(eid)
            if len(src) == before:
                down.unmapped[a].append(eid)
                up.unmapped[b].append(eid)
        n_cols = len(self._col_fqns)
        down.index_columns(n_cols, (src, dst, eids))
        up.index_columns(n_cols, (dst, src, eids))

    # -- queries ------------------------------------------------------------------------------------------
    def __contains__(self, fqn: object) -> bool:
        return fqn in self._ids

    def __len__(self) -> int:
        return len(self._fqns)

    @property
    def edge_count(self) -> int:
        """How many edges the graph holds."""
        return len(self._edge_pipeline)

    def mapped_columns(self, fqn: str) -> set[str]:
        """Names of the columns of `fqn` that some column mapping names (a dropped column may live on here)."""
        node = self._ids.get(fqn)
        if node is None:
            return set()
        if self._node_cols is None:  # built on first use: only a question about an unknown column needs it
            by_node: dict[int, list[int]] = {}
            for cid, owner in enumerate(self._col_node):
                by_node.setdefault(owner, []).append(cid)
            self._node_cols = by_node
        cut = len(fqn) + 1
        return {unquote_name(self._col_fqns[cid][cut:]) for cid in self._node_cols.get(node, ())}

    def type_of(self, fqn: str) -> str | None:
        """The entity type of a node, None when unknown."""
        node = self._ids.get(fqn)
        return None if node is None else self._types[node]

    def _start(self, node: int, column: str | None) -> int:
        """The walk's start state: the node, the state of one of its columns, or VIRTUAL (column unmapped)."""
        if column is None:
            return node
        entity = self._fqns[node]
        for candidate in (column_fqn(entity, column), f"{entity}.{column}"):  # plain name, or nested path
            cid = self._col_ids.get(candidate)
            if cid is None or self._col_node[cid] != node:
                cid = self._col_ids.get((node, candidate))
            if cid is not None:
                return len(self._fqns) + cid
        return VIRTUAL

    def _column_name(self, cid: int) -> str:
        rest = self._col_fqns[cid][len(self._fqns[self._col_node[cid]]) + 1 :]
        return unquote_name(rest) if rest.startswith('"') and rest.count('"') == 2 else rest

    def _walk(self, side: _Side, root: int, column: str | None, max_depth: int | None) -> _Walk:
        """BFS over states: node id (table level), n + column id (column level), VIRTUAL (unmapped column)."""
        n = len(self._fqns)
        ends, col_node = self._edge_ends, self._col_node
        col_start, col_next, col_edge = side.col_start, side.col_next, side.col_edge
        far = 1 if side is self._down else 0  # which end of an edge a hop reaches
        start = self._start(root, column)
        dist: dict[int, int] = {start: 0}
        parent: dict[int, int] = {start: -1}
        used: set[int] = set()
        queue = deque((start,))
        limit = -1 if max_depth is None else max_depth
        while queue:
            state = queue.popleft()
            d = dist[state]
            if d == limit:
                continue
            d += 1
            if 0 <= state < n:
                edges = side.edges[state]
                targets: Iterable[int] = [ends[2 * e + far] for e in edges]
            else:
                node = root if state == VIRTUAL else col_node[state - n]
                edges = side.unmapped[node]
                targets = [ends[2 * e + far] for e in edges]
                if state != VIRTUAL:
                    lo, hi = col_start[state - n], col_start[state - n + 1]
                    used.update(col_edge[lo:hi])
                    for c in col_next[lo:hi]:
                        if n + c not in dist:
                            dist[n + c] = d
                            parent[n + c] = state
                            queue.append(n + c)
            used.update(edges)
            for t in targets:
                if t not in dist:
                    dist[t] = d
                    parent[t] = state
                    queue.append(t)
        return _Walk(root, column is not None, dist, parent, used)

    def _path(self, walk: _Walk, state: int, memo: dict[int, tuple[str, ...]]) -> tuple[str, ...]:
        """Entity FQNs from the start to `state` (walk order), consecutive repeats collapsed; memoised."""
        n, fqns, col_node = len(self._fqns), self._fqns, self._col_node
        stack = []
        while state != -1 and state not in memo:
            stack.append(state)
            state = walk.parent[state]
        path = memo.get(state, ())
        for s in reversed(stack):
            fqn = fqns[walk.root if s == VIRTUAL else s if s < n else col_node[s - n]]
            if not path or path[-1] != fqn:
                path = (*path, fqn)
            memo[s] = path
        return path

    def _impacts(self, walk: _Walk, downstream: bool) -> list[Impact]:
        n, root, col_node = len(self._fqns), walk.root, self._col_node
        best: dict[int, int] = {}  # node → representative state (closest; column level preferred on ties)
        by_column: set[int] = set()
        dist = walk.dist
        for state, d in dist.items():  # insertion order is BFS order: non-decreasing distance
            if state < n:
                node = root if state == VIRTUAL else state
            else:
                node = col_node[state - n]
                by_column.add(node)
            if node == root:
                continue
            prev = best.get(node)
            if prev is None or (prev < n <= state and dist[prev] == d):
                best[node] = state
        out = []
        memo: dict[int, tuple[str, ...]] = {}
        for node, state in best.items():
            path = self._path(walk, state, memo)
            if not downstream:
                path = path[::-1]
            certainty = "column" if walk.column_level and node in by_column else "table"
            out.append(Impact(self._fqns[node], self._types[node], dist[state], certainty, path))
        out.sort(key=itemgetter(2, 0))  # (distance, fqn)
        return out

    def _column_impacts(self, walk: _Walk) -> list[ColumnImpact]:
        n = len(self._fqns)
        via: dict[int, tuple[str, ...]] = {}
        out = []
        for state, d in walk.dist.items():
            if state < n:
                continue
            cid = state - n
            before = via.get(walk.parent[state], ())
            via[state] = (*before, self._col_fqns[cid])
            if d == 0:
                continue
            entity = self._fqns[self._col_node[cid]]
            out.append(ColumnImpact(entity, self._column_name(cid), d, via[state]))
        out.sort(key=itemgetter(2, 0, 1))  # (distance, entity_fqn, column)
        return out

    def blast_radius(self, fqn: str, column: str | None = None, *, max_depth: int | None = None) -> BlastRadius:
        """Everything downstream of `fqn` (or of one of its columns), transitive and cycle-safe.

        At column level the walk follows column mappings; an edge without mappings carries the dependency on
        at table level, and what is reached only that way has certainty "table".
        """
        root = self._ids.get(fqn)
        if root is None:
            return BlastRadius(fqn, column)
        with _gc_paused():
            walk = self._walk(self._down, root, column, max_depth)
            entities = self._impacts(walk, downstream=True)
            columns = self._column_impacts(walk) if column is not None else []
        dashboards: dict[str, int] = {}
        charts: dict[str, int] = {}
        pipelines = {self._edge_pipeline[e] for e in walk.used} - {None}
        for imp in entities:
            if imp.type == "dashboard":
                dashboards.setdefault(imp.fqn, imp.distance)
                for chart in self._charts_of.get(imp.fqn, ()):
                    charts.setdefault(chart, imp.distance)
            elif imp.type == "chart":
                charts.setdefault(imp.fqn, imp.distance)
                for dash in self._dashboards_of.get(imp.fqn, ()):
                    dashboards.setdefault(dash, imp.distance)
            elif imp.type == "pipeline":
                pipelines.add(imp.fqn)
        return BlastRadius(
            root=fqn,
            column=column,
            entities=entities,
            columns=columns,
            dashboards=_closest_first(dashboards, exclude=fqn),
            charts=_closest_first(charts, exclude=fqn),
            pipelines=sorted(p for p in pipelines if p),
        )

    def downstream_columns(self, entity_fqn: str, column: str) -> set[tuple[str, str]]:
        """The (entity FQN, column) pairs fed, directly or not, by one column."""
        return {(c.entity_fqn, c.column) for c in self.blast_radius(entity_fqn, column).columns}

    def upstream(self, fqn: str, column: str | None = None, *, max_depth: int | None = None) -> list[Impact]:
        """Everything upstream of `fqn` (or of one of its columns), closest first; paths in flow order."""
        root = self._ids.get(fqn)
        if root is None:
            return []
        with _gc_paused():
            return self._impacts(self._walk(self._up, root, column, max_depth), downstream=False)

    def upstream_paths(
        self, fqn: str, column: str | None = None, *, max_depth: int = 5, limit: int = 50
    ) -> list[tuple[str, ...]]:
        """Lineage paths from root-cause candidates (sources, or as far as `max_depth`) down to `fqn`.

        Each path is in flow order (candidate first, `fqn` last); shortest first, distinct, at most `limit`.
        """
        root = self._ids.get(fqn)
        if root is None or limit <= 0:
            return []
        side, n = self._up, len(self._fqns)
        ends, col_node = self._edge_ends, self._col_node
        start = self._start(root, column)
        found: dict[tuple[str, ...], None] = {}
        queue: deque[tuple[int, ...]] = deque([(start,)])
        budget = PATH_EXPANSION_BUDGET
        while queue and len(found) < limit and budget > 0:
            states = queue.popleft()
            state = states[-1]
            if 0 <= state < n:
                prev = [ends[2 * e] for e in side.edges[state]]
            else:
                node = root if state == VIRTUAL else col_node[state - n]
                prev = [ends[2 * e] for e in side.unmapped[node]]
                if state != VIRTUAL:
                    lo, hi = side.col_start[state - n], side.col_start[state - n + 1]
                    prev += [n + side.col_next[k] for k in range(lo, hi)]
            prev = sorted({p for p in prev if p not in states})
            if len(states) > max_depth or not prev:
                if len(states) > 1:
                    found.setdefault(self._flow_path(root, states), None)
                continue
            for p in prev:
                budget -= 1
                queue.append((*states, p))
        return sorted(found, key=len)[:limit]

    def _flow_path(self, root: int, states: tuple[int, ...]) -> tuple[str, ...]:
        n = len(self._fqns)
        chain: list[str] = []
        for state in reversed(states):
            node = root if state == VIRTUAL else state if state < n else self._col_node[state - n]
            if not chain or chain[-1] != self._fqns[node]:
                chain.append(self._fqns[node])
        return tuple(chain)


VIRTUAL = -2  # the state of a root column that no mapping names


@dataclass(slots=True)
class _Walk:
    root: int
    column_level: bool
    dist: dict[int, int]
    parent: dict[int, int]
    used: set[int]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a walk allocates many small acyclic tuples (it would rescan the heap)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _closest_first(distances: Mapping[str, int], exclude: str) -> list[str]:
    return [f for f, _ in sorted(distances.items(), key=lambda kv: (kv[1], kv[0])) if f != exclude]
