"""Lineage of the simulator: edges with column lineage, OM's EntityLineage view, PUT/DELETE semantics.

1.x records no ChangeEvent for a lineage change (the PUT/DELETE responses carry no entity). On 2.0
(`profile.lineage_events`) an added, changed or removed edge emits `entityLineageAdded` / `entityLineageUpdated` /
`entityLineageDeleted` with `entityType: "lineage"`, `entityFullyQualifiedName = "<from>--upstream--><to>"` and the
edge (references and lineageDetails) as `entity`; a re-PUT that changes nothing emits nothing (LineageResourceIT).
They reach subscriptions on resource `all` and the audit log, never `/v1/events`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from simulator.records import Record, SimError, column_fqns, dumps, not_found, stable_id
from simulator.store import CatalogStore
from storage.openmetadata import fqn as fqnlib

UPSTREAM_ARROW = "--upstream-->"

ColumnSpec = dict[str, Any] | list[Any] | None


class LineageMixin(CatalogStore):
    """Edges keyed by (from id, to id); lineage changes create no entity version (as in OM)."""

    # --- writes -----------------------------------------------------------------------------------------
    def add_edge(
        self,
        from_fqn: str,
        to_fqn: str,
        *,
        from_type: str | None = None,
        to_type: str | None = None,
        columns: ColumnSpec = None,
        pipeline: str | None = None,
        sql_query: str | None = None,
        source: str = "Manual",
        description: str | None = None,
        check_columns: bool = True,
    ) -> dict[str, Any]:
        """Add (or replace) an edge by FQNs; `columns` maps to-column → from-column(s), names or FQNs."""
        with self.lock:
            frm = self.resolve(from_fqn, from_type)
            to = self.resolve(to_fqn, to_type)
            details: dict[str, Any] = {}
            if sql_query:
                details["sqlQuery"] = sql_query
            mappings = self._mappings(frm, to, columns, check=check_columns)
            if mappings:
                details["columnsLineage"] = mappings
            if pipeline:
                details["pipeline"] = self.resolve(pipeline, "pipeline").ref()
            if description:
                details["description"] = description
            details["source"] = source
            self._store_edge(frm, to, details)
            return {"fromEntity": frm.id, "toEntity": to.id, "lineageDetails": details}

    def remove_edge(
        self, from_fqn: str, to_fqn: str, *, from_type: str | None = None, to_type: str | None = None
    ) -> None:
        """Remove an edge by FQNs (404 when there is none)."""
        with self.lock:
            frm = self.resolve(from_fqn, from_type)
            to = self.resolve(to_fqn, to_type)
            self._drop_edge(frm, to)

    def put_lineage(self, body: Any) -> None:
        """`PUT /v1/lineage` with an AddLineage body (`{"edge": {fromEntity, toEntity, lineageDetails}}`)."""
        with self.lock:
            edge = body.get("edge") if isinstance(body, dict) else None
            if not isinstance(edge, dict):
                raise SimError(400, "edge must not be null")
            frm = self._ref_record(edge.get("fromEntity"))
            to = self._ref_record(edge.get("toEntity"))
            details = dict(edge.get("lineageDetails") or {})
            mappings = details.get("columnsLineage")
            if mappings:
                details["columnsLineage"] = self._checked_mappings(frm, to, mappings)
            pipe = details.get("pipeline")
            if pipe:
                details["pipeline"] = self._ref_record(pipe).ref()
            details.setdefault("source", "Manual")
            self._store_edge(frm, to, details)

    def delete_lineage(self, from_type: str, from_key: str, to_type: str, to_key: str, *, by_id: bool) -> None:
        """`DELETE /v1/lineage/{fromType}/name/{fqn}/{toType}/name/{fqn}` (or by ids)."""
        with self.lock:
            frm = self.get(from_type, from_key, by_id=by_id, include="all")
            to = self.get(to_type, to_key, by_id=by_id, include="all")
            self._drop_edge(frm, to)

    def _ref_record(self, ref: Any) -> Record:
        if not isinstance(ref, dict) or not ref.get("id") or not ref.get("type"):
            raise SimError(400, "entity reference must have id and type")
        rec = self.records.get(str(ref["id"]))
        if rec is None or rec.etype != ref["type"]:
            raise not_found(str(ref["type"]), str(ref["id"]))
        return rec

    def _store_edge(self, frm: Record, to: Record, details: dict[str, Any], by: str = "admin") -> None:
        if frm.id == to.id:
            raise SimError(400, "An entity can not have lineage to itself")
        key = (frm.id, to.id)
        raw = dumps(details) if details else None
        existed = key in self.edges
        changed = not existed or self.edges[key] != raw
        self.edges[key] = raw
        self.downstream.setdefault(frm.id, set()).add(to.id)
        self.upstream.setdefault(to.id, set()).add(frm.id)
        if changed:
            self._lineage_event("entityLineageUpdated" if existed else "entityLineageAdded", frm, to, by)

    def _drop_edge(self, frm: Record, to: Record, by: str = "admin") -> None:
        if (frm.id, to.id) not in self.edges:
            raise SimError(404, "Lineage edge not found")
        self._lineage_event("entityLineageDeleted", frm, to, by)  # the edge as it was, before it goes
        del self.edges[(frm.id, to.id)]
        self.edge_meta.pop((frm.id, to.id), None)
        self.downstream[frm.id].discard(to.id)
        self.upstream[to.id].discard(frm.id)

    def _lineage_event(self, kind: str, frm: Record, to: Record, by: str) -> None:
        """A 2.0 lineage ChangeEvent, to `all` subscriptions and the audit log (nothing on 1.x)."""
        if not self.profile.lineage_events:
            return
        ts = self.tick()
        key = (frm.id, to.id)
        meta = self.edge_meta.setdefault(key, {"createdAt": ts, "createdBy": by})
        if kind != "entityLineageDeleted":
            meta.update(updatedAt=ts, updatedBy=by)
        raw = self.edges.get(key)
        details = {**(json.loads(raw) if raw else {}), **meta}
        event = {
            "id": str(uuid.uuid4()),
            "eventType": kind,
            "entityType": "lineage",
            "entityId": stable_id("lineage", f"{frm.id}:{to.id}"),
            "entityFullyQualifiedName": f"{frm.fqn}{UPSTREAM_ARROW}{to.fqn}",
            "userName": by,
            "timestamp": ts,
            "entity": {"fromEntity": _ref(frm), "toEntity": _ref(to), "lineageDetails": details},
        }
        self.lineage_changes.append(event)
        self.audit.record(event, ts)
        self.subscriptions.publish("lineage", dumps(event).encode(), all_only=True)

    # --- column lineage ---------------------------------------------------------------------------------
    def _columns_of(self, rec: Record) -> set[str]:
        doc = rec.doc()
        if rec.etype == "topic":
            return column_fqns((doc.get("messageSchema") or {}).get("schemaFields") or [])
        return column_fqns(doc.get("columns") or [])

    def _mappings(self, frm: Record, to: Record, spec: ColumnSpec, *, check: bool) -> list[dict[str, Any]]:
        if not spec:
            return []
        pairs: list[tuple[Any, Any]]
        if isinstance(spec, dict):
            pairs = [(src, dst) for dst, src in spec.items()]
        else:
            pairs = [(m.get("from", m.get("fromColumns")), m.get("to", m.get("toColumn"))) for m in spec]
        raw = []
        for src, dst in pairs:
            sources = [src] if isinstance(src, str) else list(src or [])
            raw.append(
                {
                    "fromColumns": [_col_fqn(frm, s) for s in sources],
                    "toColumn": _col_fqn(to, str(dst)),
                }
            )
        return self._checked_mappings(frm, to, raw) if check else raw

    def _checked_mappings(self, frm: Record, to: Record, mappings: Any) -> list[dict[str, Any]]:
        if not isinstance(mappings, list):
            raise SimError(400, "columnsLineage must be a list")
        from_cols, to_cols = self._columns_of(frm), self._columns_of(to)
        out = []
        for m in mappings:
            sources = list(m.get("fromColumns") or [])
            target = m.get("toColumn")
            for col in sources:
                if col not in from_cols:
                    raise SimError(400, f"Invalid column name {col}")
            if target is not None and target not in to_cols:
                raise SimError(400, f"Invalid column name {target}")
            item: dict[str, Any] = {"fromColumns": sources}
            if target is not None:
                item["toColumn"] = target
            if m.get("function"):
                item["function"] = m["function"]
            out.append(item)
        return out

    def follow_columns(self, rec: Record, removed: set[str], renamed: dict[str, str]) -> None:
        """Rewrite column lineage after a drop or rename (only with `lineage_follows_columns`)."""
        if not self.lineage_follows_columns:
            return
        keys = [(u, rec.id) for u in self.upstream.get(rec.id, ())]
        keys += [(rec.id, d) for d in self.downstream.get(rec.id, ())]
        for key in keys:
            raw = self.edges.get(key)
            if not raw:
                continue
            details = json.loads(raw)
            result = []
            for m in details.get("columnsLineage") or []:
                target = m.get("toColumn")
                if target in removed:
                    continue
                sources = [renamed.get(c, c) for c in m.get("fromColumns") or [] if c not in removed]
                if sources:
                    result.append({**m, "fromColumns": sources, "toColumn": renamed.get(target, target)})
            details["columnsLineage"] = result
            self.edges[key] = dumps(details)

    # --- reads ------------------------------------------------------------------------------------------
    def lineage_json(self, rec: Record, upstream_depth: int, downstream_depth: int) -> bytes:
        """OM's EntityLineage: root ref, nodes (root excluded), UUID edges; deleted entities are skipped."""
        with self.lock:
            nodes: dict[str, Record] = {}
            up = self._walk(rec, upstream_depth, self.upstream, nodes, upstream=True)
            down = self._walk(rec, downstream_depth, self.downstream, nodes, upstream=False)
            nodes.pop(rec.id, None)
            parts = [
                b'{"entity":',
                dumps(rec.ref()).encode(),
                b',"nodes":',
                dumps([n.ref() for n in nodes.values()]).encode(),
                b',"upstreamEdges":[',
                b",".join(self._edge_json(k) for k in up),
                b'],"downstreamEdges":[',
                b",".join(self._edge_json(k) for k in down),
                b"]}",
            ]
            return b"".join(parts)

    def _walk(
        self,
        root: Record,
        depth: int,
        adjacency: dict[str, set[str]],
        nodes: dict[str, Record],
        *,
        upstream: bool,
    ) -> list[tuple[str, str]]:
        edges: list[tuple[str, str]] = []
        seen = {root.id}
        frontier = [root.id]
        for _ in range(depth):
            nxt = []
            for node in frontier:
                for other in sorted(adjacency.get(node, ())):
                    other_rec = self.records[other]
                    if other_rec.deleted:
                        continue
                    edges.append((other, node) if upstream else (node, other))
                    if other not in seen:
                        seen.add(other)
                        nxt.append(other)
                        nodes[other] = other_rec
            frontier = nxt
        return edges

    def _edge_json(self, key: tuple[str, str]) -> bytes:
        details = self.edges.get(key)
        head = f'{{"fromEntity":"{key[0]}","toEntity":"{key[1]}"'
        if details:
            return f'{head},"lineageDetails":{details}}}'.encode()
        return f"{head}}}".encode()

    def edges_of(self, rec: Record) -> list[dict[str, Any]]:
        """Every edge touching an entity, as plain dicts (for tests and the demo)."""
        with self.lock:
            keys = [(u, rec.id) for u in sorted(self.upstream.get(rec.id, ()))]
            keys += [(rec.id, d) for d in sorted(self.downstream.get(rec.id, ()))]
            return [json.loads(self._edge_json(k)) for k in keys]


def _ref(rec: Record) -> dict[str, Any]:
    out = rec.ref()
    out.pop("deleted", None)
    return out


def _col_fqn(rec: Record, name: str) -> str:
    if name.startswith(rec.fqn + "."):
        return name
    return fqnlib.column_fqn(rec.fqn, name)
