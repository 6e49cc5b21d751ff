"""Lineage edges as the bot keeps them: OpenMetadata's UUID edges resolved to FQNs, compact and interned."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from storage.om_models import Edge, EntityRef

ColumnPair = tuple[tuple[str, ...], str]  # (fromColumns FQNs, toColumn FQN)


@dataclass(frozen=True, slots=True)
class LineageEdge:
    """One directed edge `from → to` with its pipeline, column mappings (sorted, merged by target) and SQL."""

    from_fqn: str
    from_type: str
    to_fqn: str
    to_type: str
    pipeline_fqn: str | None = None
    columns: tuple[ColumnPair, ...] = ()
    sql: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class LineageProblem:
    """An edge of a lineage answer that could not be used (unresolvable UUID, invalid shape)."""

    ref: str
    error: str


def _intern(value: str | None) -> str | None:
    return sys.intern(value) if value is not None else None


def _node_map(payload: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Map each UUID of `entity` + `nodes` to its (interned FQN, interned type)."""
    refs: list[Any] = [payload.get("entity"), *(payload.get("nodes") or [])]
    nodes: dict[str, tuple[str, str]] = {}
    for raw in refs:
        try:
            ref = EntityRef.model_validate(raw)
        except ValidationError:
            continue
        fqn = ref.fullyQualifiedName or ref.name
        if ref.id and fqn and ref.type:
            nodes[ref.id] = (sys.intern(fqn), sys.intern(ref.type))
    return nodes


def _columns(edge: Edge) -> dict[str, set[str]]:
    merged: dict[str, set[str]] = {}
    details = edge.lineageDetails
    for col in details.columnsLineage if details else []:
        if col.toColumn and col.fromColumns:
            merged.setdefault(col.toColumn, set()).update(col.fromColumns)
    return merged


def _pipeline_fqn(edge: Edge, nodes: dict[str, tuple[str, str]]) -> str | None:
    pipeline = edge.lineageDetails.pipeline if edge.lineageDetails else None
    if pipeline is None:
        return None
    if pipeline.fullyQualifiedName:
        return pipeline.fullyQualifiedName
    if pipeline.id and pipeline.id in nodes:
        return nodes[pipeline.id][0]
    return pipeline.name


def parse_lineage(payload: Any) -> tuple[list[LineageEdge], list[LineageProblem]]:
    """Resolve an `EntityLineage` answer into edges sorted by (from, to); duplicates are merged."""
    if not isinstance(payload, dict):
        return [], [LineageProblem("lineage", f"expected a JSON object, got {type(payload).__name__}")]
    nodes = _node_map(payload)
    problems: list[LineageProblem] = []
    found: dict[tuple[str, str], tuple[LineageEdge, dict[str, set[str]]]] = {}
    raw_edges = [*(payload.get("upstreamEdges") or []), *(payload.get("downstreamEdges") or [])]
    for raw in raw_edges:
        try:
            edge = Edge.model_validate(raw)
        except ValidationError as exc:
            problems.append(LineageProblem("edge", f"invalid edge: {exc.error_count()} validation error(s)"))
            continue
        ends = nodes.get(edge.fromEntity), nodes.get(edge.toEntity)
        if ends[0] is None or ends[1] is None:
            problems.append(LineageProblem(f"{edge.fromEntity}->{edge.toEntity}", "edge UUID not among entity/nodes"))
            continue
        (from_fqn, from_type), (to_fqn, to_type) = ends
        details = edge.lineageDetails
        columns = _columns(edge)
        key = (from_fqn, to_fqn)
        if key in found:
            first_columns = found[key][1]
            for to_col, from_cols in columns.items():
                first_columns.setdefault(to_col, set()).update(from_cols)
            continue
        found[key] = (
            LineageEdge(
                from_fqn=from_fqn,
                from_type=from_type,
                to_fqn=to_fqn,
                to_type=to_type,
                pipeline_fqn=_intern(_pipeline_fqn(edge, nodes)),
                sql=details.sqlQuery if details else None,
                source=_intern(details.source) if details and details.source else None,
            ),
            columns,
        )
    edges = [_with_columns(edge, columns) for edge, columns in found.values()]
    edges.sort(key=lambda e: (e.from_fqn, e.to_fqn))
    return edges, problems


def _with_columns(edge: LineageEdge, columns: dict[str, set[str]]) -> LineageEdge:
    pairs = tuple(
        (tuple(sys.intern(c) for c in sorted(from_cols)), sys.intern(to_col))
        for to_col, from_cols in sorted(columns.items())
    )
    return replace(edge, columns=pairs)
