"""Lineage edges as the bot keeps them: OpenMetadata's UUID edges resolved to FQNs, compact and interned."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from storage.errors import OpenMetadataError
from storage.openmetadata.models import Edge, EntityRef

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
        from_end, to_end = nodes.get(edge.fromEntity), nodes.get(edge.toEntity)
        if from_end is None or to_end is None:
            problems.append(LineageProblem(f"{edge.fromEntity}->{edge.toEntity}", "edge UUID not among entity/nodes"))
            continue
        (from_fqn, from_type), (to_fqn, to_type) = from_end, to_end
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


def parse_search_lineage(body: Any, path: str) -> tuple[dict[str, list[LineageEdge]], list[tuple[str, str]]]:
    """A search-backed whole-graph answer (`getPlatformLineage`: `nodes` by FQN, `upstreamEdges` by doc id) as each
    covered document's upstream edges, resolved exactly as `parse_lineage` resolves a per-entity read; plus the
    (FQN, problem) of each document left out because one of its edges could not be resolved."""
    problems: list[tuple[str, str]] = []
    nodes = body.get("nodes") if isinstance(body, dict) else None
    raw_edges = (body.get("upstreamEdges") or {}) if isinstance(body, dict) else None
    if not isinstance(nodes, dict) or not isinstance(raw_edges, dict):
        raise OpenMetadataError(f"OpenMetadata answered GET /{path} without `nodes` and `upstreamEdges` maps")

    def ref(raw: Any, entity_type: str = "type", default: str | None = None) -> dict[str, Any] | None:
        """A search reference as an EntityReference keyed by type and FQN (what `parse_lineage` joins on)."""
        if not isinstance(raw, dict):
            return None
        fqn = raw.get("fullyQualifiedName") or raw.get("fqn")
        etype = raw.get(entity_type) or raw.get("type") or default
        if not isinstance(fqn, str) or not isinstance(etype, str) or not fqn or not etype:
            return None
        return {"id": f"{etype}:{fqn}", "type": etype, "fullyQualifiedName": fqn, "name": raw.get("name")}

    documents: dict[str, tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for key, node in nodes.items():
        own = ref(node.get("entity") if isinstance(node, dict) else None, "entityType")
        if own is not None and own["fullyQualifiedName"] == key:
            documents[key] = (own, [], [])
    unproven: set[str] = {key for key in nodes if key not in documents}
    for doc_id, raw in raw_edges.items():
        to = ref(raw.get("toEntity")) if isinstance(raw, dict) else None
        if to is None or to["fullyQualifiedName"] not in documents:
            continue
        frm = ref(raw.get("fromEntity"))
        _, refs, edges = documents[to["fullyQualifiedName"]]
        if frm is None or (raw.get("columns") is not None and not isinstance(raw.get("columns"), list)):
            unproven.add(to["fullyQualifiedName"])
            problems.append((to["fullyQualifiedName"], f"search edge {doc_id}: unusable"))
            continue
        details: dict[str, Any] = {"columnsLineage": raw.get("columns") or [], "sqlQuery": raw.get("sqlQuery")}
        details["source"] = raw.get("source")
        if raw.get("pipeline"):  # the whole pipeline (or stored procedure) document
            details["pipeline"] = ref(raw["pipeline"], "entityType", raw.get("pipelineEntityType") or "pipeline")
        refs.append(frm)
        edges.append({"fromEntity": frm["id"], "toEntity": to["id"], "lineageDetails": details})
    out: dict[str, list[LineageEdge]] = {}
    for fqn, (own, refs, edges) in documents.items():
        if fqn in unproven:
            continue
        parsed, found = parse_lineage({"entity": own, "nodes": refs, "upstreamEdges": edges})
        if found:
            problems.append((fqn, f"search edge {found[0].ref}: {found[0].error}"))
            continue
        out[fqn] = parsed
    return out, problems
