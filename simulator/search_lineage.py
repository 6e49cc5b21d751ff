"""Search-backed lineage reads of the simulator (1.7+): `getPlatformLineage` and `getLineage`, from the edges.

OpenMetadata answers these from its search index, not its database (`resources/lineage/LineageResource.java`,
`search/elasticsearch/ESLineageGraphBuilder.java` and the OpenSearch twin): every search document carries
`upstreamLineage`, a list of `EsLineageData` (`fromEntity` as a `RelationshipRef {id, type, fullyQualifiedName,
fqnHash}`, the `pipeline` as the whole pipeline document with `pipelineEntityType`, `columns` as ColumnLineage,
`sqlQuery`, `description`, `source`, `docId`, `docUniqueId`); the read turns each into an edge keyed by `docId`
with `toEntity` set to the document's own reference. The simulator builds the same answer from its current edges:

- `getPlatformLineage?view=all`: one search over every lineage-capable entity (`EsUtils.searchEntities`:
  `size(10000)`, no paging, so more than 10,000 documents are cut off silently), `nodes` keyed by FQN
  (`{entity: the search document, paging, nodeDepth: 0}`), `upstreamEdges` keyed by `docId`, `downstreamEdges`
  empty. `view=service` aggregates the entity edges between services (`source: ChildAssets`, `assetEdges`);
  `domain` and `dataProduct` answer empty maps (the simulator keeps no domain entities). `includeDeleted=true`
  returns the deleted documents only (the query is `term deleted = includeDeleted`).
- `getLineage?fqn&type&upstreamDepth&downstreamDepth`: the graph around one entity, breadth first.
- A `view` outside `service|domain|dataProduct|all` is Dropwizard's validation 400 (`{"errors": [...]}`).
- Search down is a 500 from `CatalogGenericExceptionMapper` (`UnhandledServerException`): inject
  `SEARCH_DOWN_FAULT` through the faults admin API.

Not served before 1.7 (`profile.search_lineage`): 404 as for any unknown path. No JSON Schema of
`SearchLineageResult` is among the copied schemas, so these answers are not schema-validated.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from simulator.records import Record, SimError, dumps
from simulator.reply import Reply, bool_param, int_param
from storage.openmetadata import fqn as fqnlib

if TYPE_CHECKING:
    from simulator.app import Simulator
    from simulator.catalog import Catalog

# What `OsUtils/EsUtils.searchEntities` asks the search engine for: one page of at most this many documents.
MAX_HITS = 10_000
SEARCH_TYPES = ("table", "dashboard", "pipeline", "topic", "dashboardDataModel", "chart")
VIEWS = re.compile(r"service|domain|dataProduct|all")
VIEW_ERROR = "query param view Invalid type. Allowed values: service, domain."
# What a real server answers when Elasticsearch/OpenSearch cannot be reached (`UnhandledServerException`).
SEARCH_DOWN_MESSAGE = "An exception with message [Connection refused] was thrown while processing request."
SEARCH_DOWN_FAULT: dict[str, Any] = {
    "path_regex": r"^/api/v1/lineage/get(Platform)?Lineage",
    "status": 500,
    "message": SEARCH_DOWN_MESSAGE,
}


def route(sim: Simulator, name: str, q: Mapping[str, str]) -> Reply:
    """`GET /v1/lineage/getPlatformLineage` or `/v1/lineage/getLineage` (404 before 1.7)."""
    if not sim.profile.search_lineage:
        raise SimError(404, "HTTP 404 Not Found")
    cat = sim.catalog
    with cat.lock:
        if name == "getPlatformLineage":
            view = q.get("view")
            if view is None or not VIEWS.fullmatch(view):  # an absent view: not confirmed, treated as invalid
                return Reply(dumps({"errors": [VIEW_ERROR]}).encode(), 400, validate=False)
            body = platform_lineage(cat, view, deleted=bool_param(q, "includeDeleted"))
        else:
            up = max(0, int_param(q, "upstreamDepth", 0) or 0)
            down = max(0, int_param(q, "downstreamDepth", 0) or 0)
            body = entity_lineage(cat, q.get("fqn") or "", up, down, deleted=bool_param(q, "includeDeleted"))
    return Reply(body, validate=False)


def fqn_hash(fqn: str) -> str:
    """`FullyQualifiedName.buildHash`: the MD5 of each name part, joined by dots."""
    return ".".join(hashlib.md5(part.encode()).hexdigest() for part in fqnlib.split(fqn))


def relationship_ref(rec: Record) -> dict[str, Any]:
    """`RelationshipRef` of a record: what search edges name their ends with."""
    return {"id": rec.id, "type": rec.etype, "fullyQualifiedName": rec.fqn, "fqnHash": fqn_hash(rec.fqn)}


class _Docs:
    """Search documents and edges of one answer, each rendered once."""

    def __init__(self, cat: Catalog) -> None:
        self.cat = cat
        self.view = cat.view
        self.pipelines: dict[str, str | None] = {}

    def edge(self, key: tuple[str, str]) -> tuple[str, str, str] | None:
        """(docId, EsLineageData JSON as stored in the document, the same with `toEntity`) of the edge `key`;
        None when its upstream end is deleted."""
        cat = self.cat
        frm, to = cat.records[key[0]], cat.records[key[1]]
        if frm.deleted:
            return None
        raw = cat.edges.get(key)
        details: dict[str, Any] = json.loads(raw) if raw else {}
        pipe = details.get("pipeline") or {}
        doc_id = f"{frm.fqn}--->{to.fqn}"
        parts = []
        pipeline = self.pipeline(pipe.get("id")) if pipe else None
        if pipeline is not None:
            doc_id = f"{frm.fqn}--->{pipe.get('type', 'pipeline')}:{pipe['id']}--->{to.fqn}"
            parts.append('"pipeline":' + pipeline)
        for name, value in (("sqlQuery", details.get("sqlQuery")), ("columns", details.get("columnsLineage"))):
            if value:
                parts.append(f'"{name}":' + dumps(value))
        if details.get("description"):
            parts.append('"description":' + dumps(details["description"]))
        parts.append('"source":' + dumps(details.get("source") or "Manual"))
        parts.append('"docId":' + dumps(doc_id))
        parts.append('"docUniqueId":' + dumps(f"{frm.id}--->{to.id}"))
        if pipeline is not None:
            parts.append('"pipelineEntityType":' + dumps(pipe.get("type", "pipeline")))
        for name, value in (cat.edge_meta.get(key) or {}).items():
            parts.append(f'"{name}":' + dumps(value))
        head = '{"fromEntity":' + dumps(relationship_ref(frm))
        rest = "," + ",".join(parts) + "}"
        return doc_id, head + rest, head + ',"toEntity":' + dumps(relationship_ref(to)) + rest

    def pipeline(self, pipeline_id: str | None) -> str | None:
        """The pipeline document an edge carries (`getPipelineOrStoredProcedure`: every field, plus fqnHash)."""
        if pipeline_id is None:
            return None
        if pipeline_id not in self.pipelines:
            rec = self.cat.records.get(pipeline_id)
            if rec is None:
                self.pipelines[pipeline_id] = None
            else:
                doc = self.view.render(rec.etype, rec.doc(), self.view.all_fields(rec.etype))
                doc.pop("changeDescription", None)
                doc.pop("incrementalChangeDescription", None)
                doc["fqnHash"] = fqn_hash(rec.fqn)
                self.pipelines[pipeline_id] = dumps(doc)
        return self.pipelines[pipeline_id]

    def document(self, rec: Record, upstream: Iterable[str]) -> str:
        """The search document of an entity: every field, `entityType`, `fqnHash`, and its `upstreamLineage`."""
        raw = rec.render(self.view, self.view.all_fields(rec.etype)).decode()
        extra = {"entityType": rec.etype, "fqnHash": fqn_hash(rec.fqn)}
        lineage = ",".join(upstream)
        return raw[:-1] + "," + dumps(extra)[1:-1] + ',"upstreamLineage":[' + lineage + "]}"


def _node(document: str, depth: int, paging: Mapping[str, int] | None = None) -> str:
    return '{"entity":' + document + ',"paging":' + dumps(dict(paging or {})) + ',"nodeDepth":' + str(depth) + "}"


def _result(nodes: list[tuple[str, str]], up: dict[str, str], down: dict[str, str]) -> bytes:
    def as_map(items: Iterable[tuple[str, str]]) -> str:
        return "{" + ",".join(dumps(k) + ":" + v for k, v in items) + "}"

    body = '{"nodes":' + as_map(nodes) + ',"upstreamEdges":' + as_map(up.items())
    return (body + ',"downstreamEdges":' + as_map(down.items()) + "}").encode()


def _searchable(cat: Catalog, deleted: bool) -> list[Record]:
    """The documents a `deleted = …` term query hits, in index (insertion) order, cut at `MAX_HITS`."""
    out = [r for r in cat.records.values() if r.etype in SEARCH_TYPES and r.deleted == deleted]
    return out[:MAX_HITS]


def platform_lineage(cat: Catalog, view: str, *, deleted: bool = False) -> bytes:
    """The `SearchLineageResult` of `getPlatformLineage?view=…`."""
    if view == "service":
        return _service_lineage(cat, deleted)
    if view != "all":
        return _result([], {}, {})
    docs = _Docs(cat)
    nodes: list[tuple[str, str]] = []
    up: dict[str, str] = {}
    for rec in _searchable(cat, deleted):
        own: list[str] = []
        for source in sorted(cat.upstream.get(rec.id, ())):
            edge = docs.edge((source, rec.id))
            if edge is not None:
                own.append(edge[1])
                up.setdefault(edge[0], edge[2])
        nodes.append((rec.fqn, _node(docs.document(rec, own), 0)))
    return _result(nodes, up, {})


def _service_lineage(cat: Catalog, deleted: bool) -> bytes:
    """Service documents whose `upstreamLineage` counts the entity edges between two services (`ChildAssets`)."""
    if deleted:  # the simulator's services are never deleted
        return _result([], {}, {})
    counts: dict[tuple[str, str], int] = {}
    for from_id, to_id in cat.edges:
        frm, to = cat.records[from_id], cat.records[to_id]
        if frm.deleted or to.deleted or not frm.service or not to.service or frm.service == to.service:
            continue
        counts[(frm.service, to.service)] = counts.get((frm.service, to.service), 0) + 1
    refs = {name: svc["ref"] for name, svc in cat.services.items()}
    nodes: list[tuple[str, str]] = []
    up: dict[str, str] = {}
    for name, svc in cat.services.items():
        ref = refs[name]
        own = []
        for (src, dst), n in sorted(counts.items()):
            if dst != name or src not in refs:
                continue
            edge: dict[str, Any] = {
                "fromEntity": _service_ref(refs[src]),
                "source": "ChildAssets",
                "docId": f"{src}--->{name}",
            }
            edge |= {"docUniqueId": f"{refs[src]['id']}--->{ref['id']}", "assetEdges": n}
            own.append(edge)
            up[edge["docId"]] = dumps({**edge, "toEntity": _service_ref(ref)})
        doc = {**ref, "serviceType": svc["serviceType"], "entityType": svc["kind"], "deleted": False}
        doc |= {"fqnHash": fqn_hash(ref["fullyQualifiedName"]), "upstreamLineage": own}
        nodes.append((ref["fullyQualifiedName"], _node(dumps(doc), 0)))
    return _result(nodes, up, {})


def _service_ref(ref: dict[str, Any]) -> dict[str, Any]:
    fqn = ref["fullyQualifiedName"]
    return {"id": ref["id"], "type": ref["type"], "fullyQualifiedName": fqn, "fqnHash": fqn_hash(fqn)}


def entity_lineage(cat: Catalog, fqn: str, upstream: int, downstream: int, *, deleted: bool = False) -> bytes:
    """The `SearchLineageResult` of `getLineage`: the root, then `upstream` / `downstream` hops breadth first.

    Nodes carry `nodeDepth` (negative upstream) and `paging` with the entity's edge counts; an FQN the index
    does not hold gives empty maps (not confirmed against a real server)."""
    root = next((cat.by_fqn.get((t, fqn)) for t in SEARCH_TYPES if (t, fqn) in cat.by_fqn), None)
    if root is None or root.deleted != deleted:
        return _result([], {}, {})
    docs = _Docs(cat)
    depths = {root.id: 0}
    up = _walk(cat, docs, root, upstream, depths, direction=-1)
    down = _walk(cat, docs, root, downstream, depths, direction=1)
    nodes = []
    for rec_id, depth in depths.items():
        rec = cat.records[rec_id]
        own = [e[1] for s in sorted(cat.upstream.get(rec_id, ())) if (e := docs.edge((s, rec_id)))]
        counts = {"entityUpstreamCount": len(cat.upstream.get(rec_id, ()))}
        counts["entityDownstreamCount"] = len(cat.downstream.get(rec_id, ()))
        nodes.append((rec.fqn, _node(docs.document(rec, own), depth, counts)))
    return _result(nodes, up, down)


def _walk(
    cat: Catalog, docs: _Docs, root: Record, hops: int, depths: dict[str, int], *, direction: int
) -> dict[str, str]:
    adjacency = cat.upstream if direction < 0 else cat.downstream
    edges: dict[str, str] = {}
    queue = deque([(root.id, 0)])
    seen = {root.id}
    while queue:
        node, depth = queue.popleft()
        if depth >= hops:
            continue
        for other in sorted(adjacency.get(node, ())):
            rec = cat.records[other]
            if rec.deleted:
                continue
            key = (other, node) if direction < 0 else (node, other)
            edge = docs.edge(key)
            if edge is not None:
                edges.setdefault(edge[0], edge[2])
            if other not in seen:
                seen.add(other)
                depths.setdefault(other, direction * (depth + 1))
                queue.append((other, depth + 1))
    return edges
