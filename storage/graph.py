"""The lineage graph as the store knows it (now or at a past time), and blast-radius questions over it."""

from __future__ import annotations

import difflib
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import store
from storage.errors import ColumnNotFound
from storage.fqn import unquote_name
from storage.lineage import BlastRadius, LineageGraph
from storage.models import Entity, Snapshot


def dashboard_charts(session: Session) -> dict[str, list[str]]:
    """Dashboard FQN → the charts it holds, from the current dashboard snapshots."""
    rows = session.execute(
        select(Entity.fqn, Snapshot.genes)
        .join(Snapshot, Snapshot.id == Entity.current_snapshot_id)
        .where(Entity.entity_type == "dashboard", Entity.deleted_at.is_(None))
    )
    return {fqn: list((genes.get("contains") or {}).get("charts", [])) for fqn, genes in rows}


def graph_at(session: Session, at: datetime | None = None) -> LineageGraph:
    """The lineage graph live at `at` (None: now)."""
    return LineageGraph.build(store.live_edges(session, at), store.entity_types(session), dashboard_charts(session))


def _mapped_columns(edges: list[store.EdgeView], fqn: str) -> set[str]:
    """Column names of `fqn` that some live column mapping names (a dropped column may live on here)."""
    prefix = fqn + "."
    names: set[str] = set()
    for edge in edges:
        if fqn not in (edge.from_fqn, edge.to_fqn):
            continue
        for mapping in edge.columns:
            for col in [*mapping.get("from", []), mapping.get("to") or ""]:
                if col.startswith(prefix):
                    names.add(unquote_name(col[len(prefix) :]))
    return names


def blast_radius(
    session: Session, fqn: str, column: str | None = None, *, max_depth: int | None = None, at: datetime | None = None
) -> BlastRadius:
    """Everything downstream of `fqn` (or of one of its columns, current or still named by lineage)."""
    edges = store.live_edges(session, at)
    if column is not None:
        known = set(store.entity_columns(session, at).get(fqn, [])) | _mapped_columns(edges, fqn)
        if column not in known:
            raise ColumnNotFound(fqn, column, difflib.get_close_matches(column, sorted(known), n=5, cutoff=0.4))
    graph = LineageGraph.build(edges, store.entity_types(session), dashboard_charts(session))
    return graph.blast_radius(fqn, column, max_depth=max_depth)
