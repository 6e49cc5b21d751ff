"""Deletes with their children: services, databases, schemas and data assets, soft or hard, as one event.

`DELETE /api/v1/{collection}/{id}?recursive=true&hardDelete=…` removes (or soft-deletes) an entity and everything
it contains: a service's assets, a database's or schema's tables, and the test cases of each asset. A container
with children and no `recursive=true` answers 400 `<type> is not empty` (`CatalogExceptionMessage.entityIsNotEmpty`).
Exactly one ChangeEvent is recorded, for the root (`entitySoftDeleted`, or `entityDeleted` when hard); on 2.0 it
carries `recursive: true` (ChangeEvent.recursive, PR #29260), and the cascaded children record none.

Databases, schemas and services are not stored entities here (tables carry their references), so the root of such
a delete is a container record made on demand from those references.
"""

from __future__ import annotations

from typing import Any

from simulator.entities import SERVICE_KINDS
from simulator.mutations import MutationsMixin
from simulator.quality import QualityMixin
from simulator.records import Record, SimError, not_found

SERVICE_TYPES = frozenset({"databaseService", "dashboardService", "pipelineService", "messagingService"})
CONTAINER_TYPES = SERVICE_TYPES | {"database", "databaseSchema"}
# REST collection → container type, for the DELETE routes of the types the simulator keeps no records of.
CONTAINER_COLLECTIONS = {
    "databases": "database",
    "databaseSchemas": "databaseSchema",
    "services/databaseServices": "databaseService",
    "services/dashboardServices": "dashboardService",
    "services/pipelineServices": "pipelineService",
    "services/messagingServices": "messagingService",
}
_CONTAINER_HREF = {etype: coll for coll, etype in CONTAINER_COLLECTIONS.items()}


class CascadeMixin(MutationsMixin, QualityMixin):
    """Recursive deletes, hard or soft; containers are made on demand (`self.containers`)."""

    def delete_entity(
        self,
        etype: str,
        key: str,
        *,
        by_id: bool = False,
        recursive: bool = False,
        hard: bool = False,
        by: str = "admin",
    ) -> dict[str, Any]:
        """Delete an entity (and, with `recursive`, all it contains); the deleted root as it was last seen."""
        with self.lock:
            root = self._delete_root(etype, key, by_id=by_id, hard=hard)
            children = [c for c in self.descendants(root) if hard or not c.deleted]
            if children and not recursive and etype in CONTAINER_TYPES:
                raise SimError(400, f"{etype} is not empty")
            if not recursive:
                children = []
            if hard:
                return self._hard_delete(root, children, recursive=recursive, by=by)
            for child in children:
                self._soft(child, by=by, event=False)
            return self._soft(root, by=by, event=True, recursive=recursive)

    def descendants(self, root: Record) -> list[Record]:
        """Every stored entity inside `root`, test cases included (not `root` itself)."""
        if root.etype in CONTAINER_TYPES:
            assets = [r for rows in self.by_type.values() for r in rows if _inside(root, r)]
        else:
            assets = []
        out = list(assets)
        for asset in [root, *assets]:
            out += [self.records[cid] for cid, target in self.case_targets.items() if target[0] == asset.fqn]
        return [r for r in dict.fromkeys(out) if r is not root]

    # --- roots ------------------------------------------------------------------------------------------
    def _delete_root(self, etype: str, key: str, *, by_id: bool, hard: bool) -> Record:
        include = "all" if hard else "non-deleted"
        if etype not in CONTAINER_TYPES:
            return self.get(etype, key, by_id=by_id, include=include)
        rec = self._container(etype, key, by_id=by_id)
        if rec is None or (rec.deleted and not hard):
            raise not_found(etype, key)
        return rec

    def _container(self, etype: str, key: str, *, by_id: bool) -> Record | None:
        for (kind, fqn), rec in self.containers.items():
            if kind == etype and (rec.id == key if by_id else fqn == key):
                return rec
        doc = self._container_doc(etype, key, by_id=by_id)
        if doc is None:
            return None
        rec = Record(etype, doc, service=doc["name"] if etype in SERVICE_TYPES else None)
        self.containers[(etype, rec.fqn)] = rec
        return rec

    def _container_doc(self, etype: str, key: str, *, by_id: bool) -> dict[str, Any] | None:
        """A database, schema or service entity from the references the stored assets carry."""
        if etype in SERVICE_TYPES:
            for name, svc in self.services.items():
                ref = svc["ref"]
                if svc["kind"] == etype and (ref["id"] == key if by_id else name == key):
                    return self._shell(etype, ref, {"serviceType": svc["serviceType"]})
            return None
        field = "databaseSchema" if etype == "databaseSchema" else "database"
        for table in self.by_type.get("table", ()):
            doc = table.doc()
            ref = doc.get(field) or {}
            if ref.get("id") == key if by_id else ref.get("fullyQualifiedName") == key:
                extra: dict[str, Any] = {"service": _plain_ref(doc["service"]), "serviceType": doc["serviceType"]}
                if etype == "databaseSchema":
                    extra["database"] = _plain_ref(doc["database"])
                return self._shell(etype, ref, extra)
        return None

    def _shell(self, etype: str, ref: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": ref["id"], "name": ref["name"], "fullyQualifiedName": ref["fullyQualifiedName"]}
        doc.update(extra)
        doc.update(version=0.1, updatedAt=self.seed_time(), updatedBy="ingestion-bot")
        doc["href"] = f"{self.base_url}/api/v1/{_CONTAINER_HREF[etype]}/{ref['id']}"
        doc["deleted"] = False
        return doc

    # --- the two kinds of delete ------------------------------------------------------------------------
    def _soft(self, rec: Record, *, by: str, event: bool, recursive: bool = False) -> dict[str, Any]:
        doc = rec.doc()
        doc["deleted"] = True
        updated = [{"name": "deleted", "oldValue": False, "newValue": True}]
        return self.commit(
            rec, doc, updated=updated, event_type="entitySoftDeleted", by=by, event=event, recursive=recursive
        )

    def _hard_delete(self, root: Record, children: list[Record], *, recursive: bool, by: str) -> dict[str, Any]:
        for child in children:
            self._forget(child)
        doc = root.doc()
        self.emit("entityDeleted", root, None, by=by, recursive=recursive)
        self._forget(root)
        return doc

    def _forget(self, rec: Record) -> None:
        """Drop a hard-deleted entity, with a test case's results and incidents."""
        if rec.etype in CONTAINER_TYPES:
            rec.store({**rec.doc(), "deleted": True})  # a container is gone for good: kept only as deleted
            return
        if rec.etype == "testCase":
            self.results.pop(rec.fqn, None)
            self.case_targets.pop(rec.id, None)
            self.case_status.pop(rec.id, None)
            self.open_incidents.pop(rec.fqn, None)
            self.last_incident.pop(rec.fqn, None)
            self.incidents[:] = [r for r in self.incidents if r["testCaseReference"]["id"] != rec.id]
        self.remove(rec)


def _inside(root: Record, rec: Record) -> bool:
    if root.etype in SERVICE_TYPES:
        return rec.service == root.service and rec.etype != "testCase" and _kind_of(rec) == root.etype
    if root.etype == "database":
        return rec.database == root.fqn
    return rec.schema == root.fqn


def _kind_of(rec: Record) -> str | None:
    return SERVICE_KINDS.get(rec.etype)


def _plain_ref(ref: dict[str, Any]) -> dict[str, Any]:
    return {k: ref[k] for k in ("id", "type", "name", "fullyQualifiedName") if k in ref}
