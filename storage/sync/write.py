"""The store half of a sync: merge lineage, rebuild the genes that may have changed, diff them, write it all."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from storage.domain import dna, trust
from storage.domain.diff import ChangeRecord, diff_genes
from storage.domain.trust import TrustScore
from storage.persistence.models import Change, Entity, LineageEdge, RawJSON, Snapshot, SyncRun
from storage.sync.fetch import Fetched, FetchedEntity
from storage.sync.lineage_read import EdgeState

BATCH = 500


@dataclass(slots=True)
class Current:
    """What the store holds now for one entity (no genes: those are loaded only when needed)."""

    id: int
    fqn: str
    entity_type: str
    fingerprint: str | None
    deleted: bool
    snapshot_id: int | None
    om_version: float | None = None
    om_updated_at: int | None = None


@dataclass(slots=True)
class Candidate:
    """An entity whose genes may have changed: new genes (None when known unchanged), precomputed bits."""

    fqn: str
    genes: dict[str, Any] | None
    fetched: FetchedEntity | None = None
    fingerprint: str | None = None
    trust: TrustScore | None = None
    genes_json: str | None = None  # the canonical JSON of `genes`, when it is at hand (decoded only if needed)

    def loaded(self) -> dict[str, Any]:
        if self.genes is None:
            if self.genes_json is None:
                raise RuntimeError(f"{self.fqn}: no genes")
            self.genes = json.loads(self.genes_json)
        return self.genes

    def stored(self) -> Any:
        """What goes in `snapshots.genes`: the canonical text as is when we have it."""
        return RawJSON(self.genes_json) if self.genes_json is not None else self.genes

    @property
    def deleted(self) -> bool:
        return bool(self.genes is not None and self.genes["entity"].get("deleted"))


@dataclass
class WriteStats:
    snapshots_written: int = 0
    entities_added: int = 0
    entities_deleted: int = 0
    edges_added: int = 0
    edges_removed: int = 0
    edges_changed: int = 0
    changes_by_kind: Counter[str] = field(default_factory=Counter)


def load_current(session: Session) -> dict[str, Current]:
    rows = session.execute(
        select(
            Entity.id,
            Entity.fqn,
            Entity.entity_type,
            Entity.fingerprint,
            Entity.deleted_at,
            Entity.current_snapshot_id,
            Entity.om_version,
            Entity.om_updated_at,
        )
    )
    return {
        r.fqn: Current(
            r.id,
            r.fqn,
            r.entity_type,
            r.fingerprint,
            r.deleted_at is not None,
            r.current_snapshot_id,
            om_version=r.om_version,
            om_updated_at=r.om_updated_at,
        )
        for r in rows
    }


def load_live_edges(session: Session) -> dict[tuple[str, str], tuple[int, EdgeState]]:
    rows = session.execute(select(LineageEdge).where(LineageEdge.removed_at.is_(None))).scalars()
    return {(e.from_fqn, e.to_fqn): (e.id, EdgeState.of(e)) for e in rows}


def load_snapshots(session: Session, snapshot_ids: Iterable[int | None]) -> dict[int, tuple[dict[str, Any], int]]:
    """Genes and trust score of the given snapshots, read in batches."""
    ids = [i for i in snapshot_ids if i is not None]
    out: dict[int, tuple[dict[str, Any], int]] = {}
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        for sid, genes, score in session.execute(
            select(Snapshot.id, Snapshot.genes, Snapshot.trust_score).where(Snapshot.id.in_(chunk))
        ):
            out[sid] = (genes, score)
    return out


def merge_edges(
    fetched: Fetched, live: dict[tuple[str, str], tuple[int, EdgeState]], deleted: set[str]
) -> dict[tuple[str, str], EdgeState]:
    """The lineage after this run: re-read edges replace every stored edge that touches a re-read entity."""
    scope = fetched.lineage_scope
    merged = {
        key: state
        for key, (_, state) in live.items()
        if state.from_fqn not in scope
        and state.to_fqn not in scope
        and state.from_fqn not in deleted
        and state.to_fqn not in deleted
    }
    merged.update(fetched.edges)
    return merged


def edges_by_entity(
    edges: Iterable[EdgeState],
) -> tuple[dict[str, list[EdgeState]], dict[str, list[EdgeState]]]:
    up: dict[str, list[EdgeState]] = defaultdict(list)
    down: dict[str, list[EdgeState]] = defaultdict(list)
    for e in edges:
        up[e.to_fqn].append(e)
        down[e.from_fqn].append(e)
    return up, down


class SyncWriter:
    """Turns a `Fetched` run into snapshots, lineage rows and change rows inside one session transaction."""

    def __init__(self, session: Session, run: SyncRun, now: datetime, *, first_sync: bool, trust_drop: int):
        self.session = session
        self.run = run
        self.now = now
        self.first_sync = first_sync
        self.trust_drop = trust_drop
        self.stats = WriteStats()
        self._pointers_pending = False

    # -- lineage ---------------------------------------------------------------------------------------
    def write_edges(
        self, live: dict[tuple[str, str], tuple[int, EdgeState]], merged: dict[tuple[str, str], EdgeState]
    ) -> set[str]:
        """Insert new edges, close removed ones, update changed mappings; returns the entities they touch."""
        touched: set[str] = set()
        added = [merged[k] for k in merged.keys() - live.keys()]
        removed_ids = [live[k][0] for k in live.keys() - merged.keys()]
        for k in live.keys() - merged.keys():
            touched.update(k)
        rows = [self._edge_row(e) for e in added]
        for start in range(0, len(rows), BATCH):
            self.session.execute(insert(LineageEdge), rows[start : start + BATCH])
        for e in added:
            touched.update(e.key)
        for start in range(0, len(removed_ids), BATCH):
            self.session.execute(
                update(LineageEdge)
                .where(LineageEdge.id.in_(removed_ids[start : start + BATCH]))
                .values(removed_at=self.now, removed_run_id=self.run.id)
            )
        changed_keys = [k for k in merged.keys() & live.keys() if merged[k] != live[k][1]]
        changed = [
            {"id": live[k][0], "columns": merged[k].columns_json(), "pipeline_fqn": merged[k].pipeline_fqn}
            for k in changed_keys
        ]
        if changed:
            self.session.execute(update(LineageEdge), changed)
        for k in changed_keys:
            touched.update(k)
        self.stats.edges_added, self.stats.edges_removed = len(added), len(removed_ids)
        self.stats.edges_changed = len(changed)
        return touched

    def _edge_row(self, e: EdgeState) -> dict[str, Any]:
        return {
            "from_fqn": e.from_fqn,
            "from_type": e.from_type,
            "to_fqn": e.to_fqn,
            "to_type": e.to_type,
            "pipeline_fqn": e.pipeline_fqn,
            "columns": e.columns_json(),
            "first_seen": self.now,
            "last_seen": self.now,
            "first_run_id": self.run.id,
        }

    # -- snapshots -------------------------------------------------------------------------------------
    def write_entities(self, items: Iterator[Candidate], current: dict[str, Current]) -> None:
        """Write a snapshot (and its changes) for each candidate whose fingerprint moved, in batches."""
        batch: list[Candidate] = []
        for item in items:
            cur = current.get(item.fqn)
            if item.fingerprint is None:
                item.fingerprint = dna.fingerprint(item.loaded())
            if cur is not None and cur.fingerprint == item.fingerprint:
                continue
            if item.genes is None and item.genes_json is None:
                raise RuntimeError(f"{item.fqn}: genes were dropped as unchanged but the store moved meanwhile")
            batch.append(item)
            if len(batch) >= BATCH:
                self._flush(batch, current)
                batch = []
        if batch:
            self._flush(batch, current)
        if self._pointers_pending:
            # one set-based statement instead of one UPDATE per new entity (12k round trips on a first sync)
            self.session.execute(
                update(Entity)
                .where(
                    Entity.id == Snapshot.entity_id,
                    Snapshot.sync_run_id == self.run.id,
                    Entity.current_snapshot_id.is_(None),
                )
                .values(current_snapshot_id=Snapshot.id)
            )

    def _flush(self, batch: list[Candidate], current: dict[str, Current]) -> None:
        old = load_snapshots(self.session, (current[c.fqn].snapshot_id for c in batch if c.fqn in current))
        new_rows = [self._new_entity_row(c) for c in batch if c.fqn not in current]
        created = {row["fqn"] for row in new_rows}
        if new_rows:
            ids = self.session.scalars(
                insert(Entity).returning(Entity.id, sort_by_parameter_order=True), new_rows
            ).all()
            for row, eid in zip(new_rows, ids, strict=True):
                current[row["fqn"]] = Current(eid, row["fqn"], row["entity_type"], None, False, None)
            self.stats.entities_added += len(new_rows)
        snap_rows, change_rows, scores = [], [], []
        for c in batch:
            fqn, fp = c.fqn, c.fingerprint
            cur = current[fqn]
            score = c.trust or trust.trust_score(c.loaded(), now=self.now)
            scores.append(score)
            snap_rows.append(
                {
                    "entity_id": cur.id,
                    "sync_run_id": self.run.id,
                    "taken_at": self.now,
                    "fingerprint": fp,
                    "genes": c.stored(),
                    "trust_score": score.score,
                    "trust_factors": [f.__dict__ for f in score.factors],  # TrustFactor: a dataclass with no slots
                }
            )
            old_genes, old_score = old.get(cur.snapshot_id, (None, None)) if cur.snapshot_id else (None, None)
            # on the very first sync nothing is diffed: every entity would only be "added"
            records = [] if old_genes is None and self.first_sync else diff_genes(old_genes, c.loaded())
            if old_score is not None and old_score - score.score >= self.trust_drop:
                records.append(
                    ChangeRecord(
                        "trust_dropped",
                        fqn,
                        old_score,
                        score.score,
                        None,
                        {"factors": snap_rows[-1]["trust_factors"]},
                    )
                )
            for rec in records:
                if rec.kind == "entity_added" and self.first_sync:
                    continue
                change_rows.append(self._change_row(cur, rec))
        snap_ids = self.session.scalars(
            insert(Snapshot).returning(Snapshot.id, sort_by_parameter_order=True), snap_rows
        ).all()
        updates = []
        for c, sid in zip(batch, snap_ids, strict=True):
            fqn, fetched, fp = c.fqn, c.fetched, c.fingerprint
            cur = current[fqn]
            deleted = c.deleted
            if fqn in created:  # written complete at insert; its snapshot pointer is set in one UPDATE at the end
                cur.fingerprint, cur.snapshot_id = fp, sid
                self._pointers_pending = True
                continue
            row = {
                "id": cur.id,
                "fingerprint": fp,
                "current_snapshot_id": sid,
                "last_seen": self.now,
            }
            row["deleted_at"] = (self.now if not cur.deleted else None) if deleted else None
            if deleted and cur.deleted:
                row.pop("deleted_at")  # already deleted: keep the first deletion time
            if deleted and not cur.deleted:
                self.stats.entities_deleted += 1
            if fetched is not None:
                row.update(om_version=fetched.om_version, om_updated_at=fetched.om_updated_at, om_id=fetched.om_id)
            updates.append(row)
            cur.fingerprint, cur.snapshot_id, cur.deleted = fp, sid, deleted
        if updates:
            self.session.execute(update(Entity), updates)
        if change_rows:
            self.session.execute(insert(Change), change_rows)
        self.stats.snapshots_written += len(snap_rows)
        for change in change_rows:
            self.stats.changes_by_kind[change["kind"]] += 1

    def _new_entity_row(self, c: Candidate) -> dict[str, Any]:
        fe = c.fetched
        if fe is not None:
            kind, om_id, name, service = fe.entity_type, fe.om_id, fe.name, fe.service
        else:
            ent = c.loaded()["entity"]
            kind, om_id, name, service = ent["type"], ent.get("id"), ent.get("name") or c.fqn, ent.get("service")
        return {
            "fqn": c.fqn,
            "entity_type": kind,
            "om_id": om_id,
            "name": name,
            "service": service,
            "first_seen": self.now,
            "last_seen": self.now,
            "om_version": fe.om_version if fe else None,
            "om_updated_at": fe.om_updated_at if fe else None,
            "fingerprint": c.fingerprint,
            "deleted_at": self.now if c.deleted else None,
        }

    def _change_row(self, cur: Current, rec: ChangeRecord) -> dict[str, Any]:
        return {
            "sync_run_id": self.run.id,
            "entity_id": cur.id,
            "entity_fqn": cur.fqn,
            "entity_type": cur.entity_type,
            "kind": rec.kind,
            "subject": rec.subject,
            "old_value": rec.old_value,
            "new_value": rec.new_value,
            "confidence": rec.confidence,
            "details": rec.details or {},
            "detected_at": self.now,
        }

    def touch_seen(self, full: bool) -> None:
        """Full runs confirm every live entity and edge: one UPDATE each, not one per row."""
        if not full:
            return
        self.session.execute(update(Entity).where(Entity.deleted_at.is_(None)).values(last_seen=self.now))
        self.session.execute(update(LineageEdge).where(LineageEdge.removed_at.is_(None)).values(last_seen=self.now))
