"""What breaks downstream of a cause, evaluated on a lineage graph plus genes (the observer and fixer share it)."""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from agents.model import Break
from storage.domain.dna import Edge
from storage.domain.lineage import BlastRadius, LineageGraph

TABLE_LEVEL = "(table-level lineage)"  # last `via` element when no column mapping connects the break
VISUAL_TYPES = ("dashboard", "chart")
OK_RUN_STATUSES = frozenset({"Successful", "Success"})
Column = Mapping[str, Any]


# ------------------------------------------------------------------------------------------------ columns


def find_column(columns: Sequence[Column], name: str) -> Column | None:
    """The column called `name` (a nested one as `parent.child`), or None."""
    for col in columns:
        if col.get("name") == name:
            return col
    for col in columns:  # a nested path: the parent's name is a prefix
        prefix = f"{col.get('name')}."
        if name.startswith(prefix):
            found = find_column(col.get("children") or (), name[len(prefix) :])
            if found is not None:
                return found
    return None


def type_signature(col: Mapping[str, Any] | None) -> str | None:
    """A comparable type text, e.g. "VARCHAR(32)" or "DECIMAL(18,2)", from column genes or a type summary."""
    if not col:
        return None
    display = col.get("type_display")
    if display:
        return "".join(str(display).upper().split())
    base = col.get("type")
    if not base:
        return None
    args = [col[k] for k in ("precision", "scale") if col.get(k) is not None] or (
        [col["length"]] if col.get("length") is not None else []
    )
    return str(base).upper() + (f"({','.join(str(a) for a in args)})" if args else "")


def type_matches(col: Column, expected: str | None) -> bool:
    """Whether a column has the expected type; a bare expected type ("VARCHAR") compares the base type only."""
    if expected is None:
        return True
    expected = "".join(expected.upper().split())
    if "(" not in expected:
        base = re.split(r"[(<]", type_signature(col) or "", maxsplit=1)[0]
        return str(col.get("type") or base).upper() == expected
    return type_signature(col) == expected


# ------------------------------------------------------------------------------------------------ helpers


def has_edge(graph: LineageGraph, from_fqn: str, to_fqn: str) -> bool:
    """Whether the graph holds a live edge from `from_fqn` to `to_fqn`."""
    return any(i.fqn == from_fqn for i in graph.upstream(to_fqn, max_depth=1))


def _merge(breaks: Iterable[Break]) -> list[Break]:
    """One break per (entity, column), the closest kept; sorted by distance, charts after the rest, then names."""
    best: dict[tuple[str, str | None], Break] = {}
    for b in breaks:
        key = (b.entity_fqn, b.column)
        if key not in best or b.distance < best[key].distance:
            best[key] = b
    return sorted(best.values(), key=lambda b: (b.distance, b.entity_type == "chart", b.entity_fqn, b.column or ""))


def _radius_breaks(
    graph: LineageGraph, radius: BlastRadius, reason: str, *, offset: int = 0, prefix: tuple[str, ...] = ()
) -> list[Break]:
    """A blast radius as breaks: columns first, then assets reached without a column mapping, dashboards, charts.

    `via` is the path from the cause up to (not including) the break: column FQNs for column breaks, entity
    FQNs otherwise. At column level, an asset reached only through table-level lineage (or through such an
    asset) gets `TABLE_LEVEL` as the last element of `via`: it may break, the mappings cannot tell.
    """
    out = [
        Break(c.entity_fqn, c.column, graph.type_of(c.entity_fqn), c.distance + offset, reason, c.via[:-1])
        for c in radius.columns
    ]
    column_certain = {radius.root} | {c.entity_fqn for c in radius.columns}
    column_level = radius.column is not None
    dashboard_at: dict[str, int] = {}
    for imp in radius.entities:
        if imp.fqn in column_certain:
            continue
        via: tuple[str, ...] = (*prefix, *imp.path[:-1])
        uncertain = imp.type not in VISUAL_TYPES or any(p not in column_certain for p in imp.path[:-1])
        if column_level and uncertain:
            via = (*via, TABLE_LEVEL)
        out.append(Break(imp.fqn, None, imp.type, imp.distance + offset, reason, via))
        if imp.type == "dashboard":
            dashboard_at[imp.fqn] = imp.distance + offset
    closest = min(dashboard_at.values(), default=1 + offset)
    for dash in radius.dashboards:
        if dash not in dashboard_at:  # a dashboard reached through one of its charts
            out.append(Break(dash, None, "dashboard", closest, reason, ()))
    listed = {b.entity_fqn for b in out}
    out += [Break(c, None, "chart", closest, reason, ()) for c in radius.charts if c not in listed]
    return out


# ------------------------------------------------------------------------------------------------ predicates


def schema_breaks(
    graph: LineageGraph,
    root_fqn: str,
    old_column: str,
    schema_now: Sequence[Column],
    expected_type: str | None,
    *,
    renamed_to: str | None = None,
) -> list[Break]:
    """What breaks downstream of `root_fqn.old_column` given the root's columns now.

    `missing_column` when the column is gone, `type_mismatch` when it has another type than `expected_type`,
    nothing when it is there as expected. `renamed_to`: when OpenMetadata rewrote the mappings to the new
    name (newer servers do), the walk starts from the new name if the old one feeds nothing any more.
    """
    col = find_column(schema_now, old_column)
    if col is not None and type_matches(col, expected_type):
        return []
    reason = "missing_column" if col is None else "type_mismatch"
    radius = graph.blast_radius(root_fqn, old_column)
    if renamed_to and not radius.columns and renamed_to != old_column:
        moved = graph.blast_radius(root_fqn, renamed_to)
        if moved.columns:
            radius = moved
    return _merge(_radius_breaks(graph, radius, reason))


def edge_breaks(graph: LineageGraph, from_fqn: str, to_fqn: str, live: bool) -> list[Break]:
    """`lost_upstream` for `to_fqn` and everything downstream of it while the edge is not live."""
    if live:
        return []
    own = Break(to_fqn, None, graph.type_of(to_fqn), 1, "lost_upstream", (from_fqn,))
    radius = graph.blast_radius(to_fqn)
    return _merge([own, *_radius_breaks(graph, radius, "lost_upstream", offset=1, prefix=(from_fqn,))])


def deleted_breaks(graph: LineageGraph, fqn: str, genes_of: Callable[[str], Mapping[str, Any] | None]) -> list[Break]:
    """`lost_upstream` for everything downstream of a deleted entity.

    The graph may still hold the entity's edges; a sync drops them, so the direct dependants also come from the
    deleted entity's last genes (`lineage.downstream`), each walked on from there. Dependants deleted too are left out.
    """
    out = _radius_breaks(graph, graph.blast_radius(fqn), "lost_upstream")
    reached = {b.entity_fqn for b in out} | {fqn}
    for e in ((genes_of(fqn) or {}).get("lineage") or {}).get("downstream") or ():
        dst = e.get("fqn")
        if not dst or dst in reached or ((genes_of(dst) or {}).get("entity") or {}).get("deleted"):
            continue
        out.append(Break(dst, None, graph.type_of(dst) or e.get("type"), 1, "lost_upstream", (fqn,)))
        out += _radius_breaks(graph, graph.blast_radius(dst), "lost_upstream", offset=1, prefix=(fqn,))
    return _merge(out)


def test_breaks(
    graph: LineageGraph, entity_fqn: str, column: str | None, test_fqn: str, status: str | None
) -> list[Break]:
    """The tested asset (distance 0) and what it feeds (column level when the test is on a column) while failing."""
    if status != "Failed":
        return []
    own = Break(entity_fqn, column, graph.type_of(entity_fqn), 0, "failing_test", (test_fqn,))
    radius = graph.blast_radius(entity_fqn, column)
    return _merge([own, *_radius_breaks(graph, radius, "failing_test")])


def pipeline_breaks(
    graph: LineageGraph, pipeline_fqn: str, status: str | None, loads: Sequence[str] = ()
) -> list[Break]:
    """The pipeline (distance 0), the assets it loads (1) and what they feed, while its last run is not successful."""
    if status is None or status in OK_RUN_STATUSES:
        return []
    out = [Break(pipeline_fqn, None, "pipeline", 0, "failed_run", ())]
    for fqn in sorted(set(loads) - {pipeline_fqn}):
        out.append(Break(fqn, None, graph.type_of(fqn), 1, "failed_run", (pipeline_fqn,)))
        out += _radius_breaks(graph, graph.blast_radius(fqn), "failed_run", offset=1, prefix=(pipeline_fqn,))
    if pipeline_fqn in graph:
        out += _radius_breaks(graph, graph.blast_radius(pipeline_fqn), "failed_run")
    return _merge(out)


def ownership_breaks(genes: Mapping[str, Any]) -> list[Break]:
    """The entity itself (`no_owner`) when its genes list no owner."""
    entity = genes.get("entity") or {}
    if (genes.get("ownership") or {}).get("owners"):
        return []
    return [Break(str(entity.get("fqn")), None, entity.get("type"), 0, "no_owner", ())]


# ------------------------------------------------------------------------------------------------ graph copies


_EDGES: weakref.WeakKeyDictionary[LineageGraph, list[Edge]] = weakref.WeakKeyDictionary()


def graph_edges(graph: LineageGraph) -> list[Edge]:
    """The edges a graph was built from (mappings in the stored `[{"from", "to"}]` form), in build order.

    LineageGraph keeps no edge objects, so this reads its index back (once per graph: the result is cached);
    the fixer patches these and rebuilds.
    """
    cached = _EDGES.get(graph)
    if cached is None:
        cached = _EDGES[graph] = _read_edges(graph)
    return cached


def downstream_edges(graph: LineageGraph, root: str) -> list[Edge]:
    """The edges of `root`'s downstream closure: all a blast radius from `root` can walk (small, fast copies)."""
    keep = {root, *(i.fqn for i in graph.blast_radius(root).entities)}
    return [e for e in graph_edges(graph) if e.from_fqn in keep]


def _read_edges(graph: LineageGraph) -> list[Edge]:
    fqns, types, ends = graph._fqns, graph._types, graph._edge_ends
    down, col_fqns = graph._down, graph._col_fqns
    maps: list[dict[str, list[str]]] = [{} for _ in graph._edge_pipeline]
    for src in range(len(col_fqns)):
        for k in range(down.col_start[src], down.col_start[src + 1]):
            maps[down.col_edge[k]].setdefault(col_fqns[down.col_next[k]], []).append(col_fqns[src])
    edges = []
    for eid, pipeline in enumerate(graph._edge_pipeline):
        a, b = ends[2 * eid], ends[2 * eid + 1]
        columns = [{"from": sorted(froms), "to": to} for to, froms in sorted(maps[eid].items())]
        edges.append(Edge(fqns[a], types[a] or "", fqns[b], types[b] or "", pipeline, columns))
    return edges


def rebuild_graph(graph: LineageGraph, edges: Iterable[Any]) -> LineageGraph:
    """A new graph over `edges` with the entity types and chart containment of `graph`."""
    types = {f: t for f, t in zip(graph._fqns, graph._types, strict=True) if t}
    return LineageGraph.build(edges, types, graph._charts_of)


# ------------------------------------------------------------------------------------------------ reading


def is_table_level(b: Break) -> bool:
    """Whether the break was reached only through table-level lineage (it may or may not really break)."""
    return bool(b.via) and b.via[-1] == TABLE_LEVEL


def dashboards_of(breaks: Iterable[Break]) -> tuple[str, ...]:
    """The dashboards among the breaks, closest first."""
    return tuple(dict.fromkeys(b.entity_fqn for b in breaks if b.entity_type == "dashboard"))


def charts_of(breaks: Iterable[Break]) -> tuple[str, ...]:
    """The charts among the breaks, closest first."""
    return tuple(dict.fromkeys(b.entity_fqn for b in breaks if b.entity_type == "chart"))


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def impact_text(breaks: Sequence[Break], *, assets: bool = False) -> str:
    """The impact for a title, e.g. `: 3 columns and 2 dashboards impacted` (assets instead of columns), or ""."""
    down = [b for b in breaks if b.distance > 0]
    if assets:
        first = len({b.entity_fqn for b in down if b.entity_type not in VISUAL_TYPES}), "asset"
    else:
        first = sum(1 for b in down if b.column is not None), "column"
    parts = [_plural(n, noun) for n, noun in (first, (len(dashboards_of(breaks)), "dashboard")) if n]
    return f": {' and '.join(parts)} impacted" if parts else ""


def break_key(b: Break | Mapping[str, Any]) -> tuple[str, str | None]:
    """(entity FQN, column) of a break or of its stored dict."""
    if isinstance(b, Break):
        return b.entity_fqn, b.column
    return str(b.get("entity_fqn")), b.get("column")


def break_from_dict(d: Mapping[str, Any]) -> Break:
    """A Break back from its `to_dict()` form (as stored in incident details)."""
    return Break(
        entity_fqn=str(d["entity_fqn"]),
        column=d.get("column"),
        entity_type=d.get("entity_type"),
        distance=int(d.get("distance") or 0),
        reason=str(d.get("reason") or ""),
        via=tuple(d.get("via") or ()),
    )
