"""DNA builder: OpenMetadata entities, lineage edges and tests in; genes (plain JSON) and fingerprint out."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from storage.openmetadata.fqn import unquote_name
from storage.openmetadata.models import (
    Chart,
    Column,
    Dashboard,
    DashboardDataModel,
    EntityBase,
    EntityRef,
    Pipeline,
    Table,
    TestCase,
    TestCaseResolutionStatus,
    Topic,
)

_intern = sys.intern
NOT_NULLABLE = frozenset({"PRIMARY_KEY", "NOT_NULL"})
SUBTYPE_FIELDS = ("tableType", "dashboardType", "chartType", "dataModelType")
NO_RUN: dict[str, Any] = {"status": None, "failed_tasks": []}

ColumnMappings = tuple[tuple[tuple[str, ...], str], ...]


class EdgeInput(Protocol):
    """A directed lineage edge as the OM client (`LineageEdge`) and the store hand it over.

    `columns` holds (fromColumns FQNs, toColumn FQN) pairs, or the stored form `[{"from": [...], "to": ...}]`.
    """

    @property
    def from_fqn(self) -> str: ...
    @property
    def from_type(self) -> str: ...
    @property
    def to_fqn(self) -> str: ...
    @property
    def to_type(self) -> str: ...
    @property
    def pipeline_fqn(self) -> str | None: ...
    @property
    def columns(self) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class Edge:
    """A plain lineage edge (an `EdgeInput`); `columns` holds (fromColumns FQNs, toColumn FQN) pairs."""

    from_fqn: str
    from_type: str
    to_fqn: str
    to_type: str
    pipeline_fqn: str | None = None
    columns: Sequence[Any] = ()  # ColumnMappings, or the stored `[{"from", "to"}]` form


def _pairs(mappings: Sequence[Any] | None) -> Sequence[tuple[Sequence[str], str]]:
    """(from, to) pairs of mappings given in either form, without copying the tuple form."""
    if not mappings:
        return ()
    if not isinstance(mappings[0], Mapping):
        return mappings
    return [(m.get("from") or (), m["to"]) for m in mappings if m.get("to")]


def columns_json(columns: Sequence[Any]) -> list[dict[str, Any]]:
    """Column mappings in the genes/DB shape `[{"from": [...], "to": ...}]`, sorted by "to" then "from"."""
    keys = {(t, tuple(f) if len(f) < 2 else tuple(sorted(set(f)))) for f, t in _pairs(columns) if t}
    return [{"from": [_intern(c) for c in from_cols], "to": _intern(to_col)} for to_col, from_cols in sorted(keys)]


def columns_from_json(mappings: Sequence[Any] | None) -> ColumnMappings:
    """Mappings in either form (`[{"from", "to"}]` as stored, or (from, to) pairs) as `Edge.columns` tuples."""
    return tuple((tuple(f), t) for f, t in _pairs(mappings) if t)


def decode(text: str) -> dict[str, Any]:
    """Genes back from their canonical JSON text."""
    genes: dict[str, Any] = json.loads(text)
    return genes


def canonical_json(genes: Mapping[str, Any]) -> str:
    """The canonical JSON text of genes (sorted keys, compact, UTF-8 kept)."""
    return json.dumps(genes, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(genes: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of genes."""
    return hashlib.sha256(canonical_json(genes).encode("utf-8")).hexdigest()


def _text(value: str | None) -> str | None:
    """Descriptions: blank text counts as no text."""
    return value if value and value.strip() else None


def _ref_name(ref: EntityRef | None) -> str | None:
    if ref is None:
        return None
    name = ref.fullyQualifiedName or ref.name
    return _intern(name) if name else None


def _tags(labels: Iterable[Any]) -> list[str]:
    return sorted({_intern(t.tagFQN) for t in labels})


def _column(col: Column, position: int, pk_columns: frozenset[str]) -> dict[str, Any]:
    constraint = col.constraint
    return {
        "name": _intern(col.name),
        "type": _intern(col.dataType) if col.dataType else None,
        "type_display": col.dataTypeDisplay,
        "length": col.dataLength,
        "precision": col.precision,
        "scale": col.scale,
        "constraint": _intern(constraint) if constraint else None,
        "nullable": constraint not in NOT_NULLABLE and col.name not in pk_columns,
        "position": position,
        "description": _text(col.description),
        "tags": _tags(col.tags),
        "children": _columns(col.children, frozenset()),
    }


def _columns(cols: Sequence[Column], pk_columns: frozenset[str]) -> list[dict[str, Any]]:
    """Normalised columns ordered by position (ordinalPosition, else 1-based list order)."""
    built = [_column(c, c.ordinalPosition or i, pk_columns) for i, c in enumerate(cols, start=1)]
    built.sort(key=lambda c: c["position"])  # stable: ties keep list order
    return built


def _schema(entity: EntityBase) -> dict[str, Any]:
    constraints: list[dict[str, Any]] = []
    pk_columns: frozenset[str] = frozenset()
    if isinstance(entity, Table):
        for tc in entity.tableConstraints:
            constraints.append(
                {
                    "type": tc.constraintType,
                    "columns": [_intern(c) for c in tc.columns],
                    "referred": [_intern(c) for c in tc.referredColumns],
                }
            )
            if tc.constraintType == "PRIMARY_KEY":
                pk_columns = pk_columns | frozenset(tc.columns)
        constraints.sort(key=lambda c: (c["type"] or "", c["columns"], c["referred"]))
    if isinstance(entity, Table | DashboardDataModel):
        cols = entity.columns
    elif isinstance(entity, Topic) and entity.messageSchema is not None:
        cols = entity.messageSchema.schemaFields
    else:
        cols = []
    return {"columns": _columns(cols, pk_columns), "constraints": constraints}


def _edge(other_fqn: str, other_type: str, edges: Sequence[EdgeInput]) -> dict[str, Any]:
    """One EDGE gene; several inputs naming the same other end are merged (first pipeline wins)."""
    pipelines = sorted({e.pipeline_fqn for e in edges if e.pipeline_fqn})
    mappings = edges[0].columns if len(edges) == 1 else [m for e in edges for m in _pairs(e.columns)]
    return {
        "fqn": _intern(other_fqn),
        "type": _intern(other_type) if other_type else other_type,
        "pipeline": _intern(pipelines[0]) if pipelines else None,
        "columns": columns_json(mappings),
    }


def _lineage(upstream: Sequence[EdgeInput], downstream: Sequence[EdgeInput]) -> dict[str, Any]:
    def side(edges: Sequence[EdgeInput], upstream_side: bool) -> list[dict[str, Any]]:
        groups: dict[str, list[EdgeInput]] = {}
        for e in edges:
            groups.setdefault(e.from_fqn if upstream_side else e.to_fqn, []).append(e)
        out = []
        for other, group in sorted(groups.items()):
            other_type = group[0].from_type if upstream_side else group[0].to_type
            out.append(_edge(other, other_type, group))
        return out

    return {"upstream": side(upstream, True), "downstream": side(downstream, False)}


def _usage(entity: EntityBase) -> dict[str, Any] | None:
    summary = getattr(entity, "usageSummary", None)
    if summary is None:
        return None
    daily, weekly, monthly = summary.dailyStats, summary.weeklyStats, summary.monthlyStats
    ranks = [s.percentileRank for s in (weekly, daily, monthly) if s and s.percentileRank is not None]
    percentile = ranks[0] if ranks else None
    return {
        "daily": daily.count if daily else 0,
        "weekly": weekly.count if weekly else 0,
        "monthly": monthly.count if monthly else 0,
        "percentile": percentile,
    }


def _ownership(entity: EntityBase) -> dict[str, Any]:
    owners = [
        {
            "name": _intern(o.name or o.fullyQualifiedName or o.id or "?"),
            "type": _intern(o.type or "user"),
            "display_name": o.displayName,
        }
        for o in entity.owners
    ]
    owners.sort(key=lambda o: (o["name"], o["type"]))
    tags = _tags(entity.tags)
    return {
        "owners": owners,
        "description": _text(entity.description),
        "tier": next((t for t in tags if t.startswith("Tier.")), None),
        "tags": tags,
        "domains": sorted({d for d in (_ref_name(r) for r in entity.domains) if d}),
        "followers": len(entity.followers),
    }


def entity_of_test_link(entity_link: str) -> str | None:
    """The entity FQN of a test's entity link `<#E::table::FQN[::columns::col]>` (not `entityFQN`, which is the
    column's FQN for a column test)."""
    parts = entity_link.strip().removeprefix("<#").removesuffix(">").split("::")
    return _intern(parts[2]) if len(parts) >= 3 and parts[0] == "E" and parts[2] else None


def column_of_test_link(entity_link: str) -> str | None:
    """The column named by a test's entity link `<#E::table::FQN::columns::col>`, else None."""
    marker = "::columns::"
    at = entity_link.find(marker)
    if at < 0:
        return None
    col = entity_link[at + len(marker) :].rstrip(">")
    col = col.split("::", 1)[0]
    return _intern(unquote_name(col)) if col else None


def _incident(
    state_id: str | None, status: str | None, incidents: Mapping[str, TestCaseResolutionStatus]
) -> dict[str, Any] | None:
    if not state_id:
        return None
    tcrs = incidents.get(state_id)
    if tcrs is None:
        # The incident feed did not carry this state: a failing test's incident is at least New.
        if status != "Failed":
            return None
        return {"state_id": state_id, "status": "New", "assignee": None, "severity": None}
    assignee = (tcrs.testCaseResolutionStatusDetails or {}).get("assignee") or {}
    return {
        "state_id": state_id,
        "status": tcrs.testCaseResolutionStatusType,
        "assignee": assignee.get("name") or assignee.get("fullyQualifiedName"),
        "severity": tcrs.severity,
    }


def _test(tc: TestCase, incidents: Mapping[str, TestCaseResolutionStatus]) -> dict[str, Any]:
    result = tc.testCaseResult
    status = (result.testCaseStatus if result else None) or tc.testCaseStatus
    state_id = tc.incidentId or (result.incidentId if result else None)
    definition = tc.testDefinition
    return {
        "fqn": _intern(tc.fullyQualifiedName or tc.name),
        "name": tc.name,
        "column": column_of_test_link(tc.entityLink),
        "definition": (definition.name or definition.fullyQualifiedName) if definition else None,
        "status": status,
        "result": result.result if result else None,
        "incident": _incident(state_id, status, incidents),
    }


def quality_gene(
    tests: Iterable[TestCase], incidents: Mapping[str, TestCaseResolutionStatus] | None = None
) -> dict[str, Any]:
    """The quality gene: the entity's test cases (sorted by FQN) with their last result and open incident."""
    incidents = incidents or {}
    return {"tests": sorted((_test(tc, incidents) for tc in tests), key=lambda t: t["fqn"])}


def pipeline_summary(pipeline: Pipeline) -> dict[str, Any]:
    """A pipeline's last run as `{status, failed_tasks}` (sorted names of failed tasks)."""
    run = pipeline.pipelineStatus
    if run is None:
        return {"status": None, "failed_tasks": []}
    failed = sorted({t.name for t in run.taskStatus if t.executionStatus == "Failed"})
    return {"status": run.executionStatus, "failed_tasks": failed}


def _runs(lineage: Mapping[str, Any], pipelines: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The pipelines named on upstream edges, each with its last known run."""
    names = sorted({e["pipeline"] for e in lineage["upstream"] if e["pipeline"]})
    runs = []
    for name in names:
        summary = pipelines.get(name, NO_RUN)
        failed = list(summary.get("failed_tasks", []))
        runs.append({"fqn": name, "status": summary.get("status"), "failed_tasks": failed})
    return runs


def _contains(entity: EntityBase, lineage: Mapping[str, Any]) -> dict[str, list[str]]:
    charts: list[str] = []
    models: list[str] = []
    dashboards: list[str] = []
    if isinstance(entity, Dashboard):
        charts = sorted({n for n in map(_ref_name, entity.charts) if n})
        models = sorted({n for n in map(_ref_name, entity.dataModels) if n})
    elif isinstance(entity, Chart):
        dashboards = sorted({n for n in map(_ref_name, entity.dashboards) if n})
    elif isinstance(entity, DashboardDataModel):
        dashboards = _model_dashboards(lineage)
    return {"charts": charts, "data_models": models, "dashboards": dashboards}


def _model_dashboards(lineage: Mapping[str, Any]) -> list[str]:
    """A data model's dashboards: its downstream lineage ends of type dashboard (OM has no back-reference)."""
    return sorted({e["fqn"] for e in lineage["downstream"] if e["type"] == "dashboard"})


def build_genes(
    entity: EntityBase,
    entity_type: str,
    *,
    upstream: Sequence[EdgeInput],
    downstream: Sequence[EdgeInput],
    tests: Sequence[TestCase] = (),
    incidents: Mapping[str, TestCaseResolutionStatus] | None = None,
    pipelines: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The genes of one entity (see docs/architecture.md); deterministic, nothing volatile."""
    incidents = incidents or {}
    pipelines = pipelines or {}
    fqn = _intern(entity.fullyQualifiedName or entity.name)
    lineage = _lineage(upstream, downstream)
    runs = [{"fqn": fqn, **pipeline_summary(entity)}] if isinstance(entity, Pipeline) else _runs(lineage, pipelines)
    return {
        "entity": {
            "fqn": fqn,
            "type": _intern(entity_type),
            "id": entity.id,
            "name": entity.name,
            "display_name": entity.displayName,
            "service": _ref_name(entity.service),
            "service_type": _intern(entity.serviceType) if entity.serviceType else None,
            "subtype": next((getattr(entity, f) for f in SUBTYPE_FIELDS if getattr(entity, f, None)), None),
            "deleted": bool(entity.deleted),
        },
        "schema": _schema(entity),
        "lineage": lineage,
        "usage": _usage(entity),
        "ownership": _ownership(entity),
        "quality": quality_gene(tests, incidents),
        "pipeline": {"runs": runs},
        "contains": _contains(entity, lineage),
    }


def with_lineage(
    genes: Mapping[str, Any],
    upstream: Sequence[EdgeInput],
    downstream: Sequence[EdgeInput],
    *,
    pipelines: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A copy of genes with a new lineage gene and what derives from it (loader runs, model dashboards).

    Pipelines newly named on upstream edges take their status from `pipelines`, else from the old genes.
    """
    new = dict(genes)  # shallow: only whole top-level genes are replaced below
    lineage = _lineage(upstream, downstream)
    new["lineage"] = lineage
    if new["entity"]["type"] != "pipeline":
        known = {r["fqn"]: r for r in genes.get("pipeline", {}).get("runs", [])}
        known.update(pipelines or {})
        new["pipeline"] = {"runs": _runs(lineage, known)}
    if new["entity"]["type"] == "dashboardDataModel":
        new["contains"] = {**new.get("contains", {}), "dashboards": _model_dashboards(lineage)}
    return new
