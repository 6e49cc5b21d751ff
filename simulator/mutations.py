"""Entity mutations recorded the way OM records them: version bump, changeDescription, history, event."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from simulator.entities import EntitiesMixin
from simulator.lineage import LineageMixin
from simulator.records import (
    Record,
    SimError,
    column_fqns,
    data_type_display,
    dumps,
    find_column,
    normalize_column,
    tag_label,
)
from storage.openmetadata import fqn as fqnlib

Change = list[dict[str, Any]]


def scalar_change(name: str, old: Any, new: Any) -> tuple[Change, Change, Change]:
    """OM's `recordChange`: set from null → added, cleared → deleted, otherwise updated."""
    if old is None:
        return [{"name": name, "newValue": new}], [], []
    if new is None:
        return [], [], [{"name": name, "oldValue": old}]
    return [], [{"name": name, "oldValue": old, "newValue": new}], []


def column_field(column: str, attr: str) -> str:
    """`columns.<quoted column>.<attr>` (EntityUtil.getColumnField)."""
    return f"columns.{fqnlib.quote_name(column)}.{attr}"


class MutationsMixin(EntitiesMixin, LineageMixin):
    """Schema, ownership and lifecycle changes; each returns the entity after the change."""

    def _columns(self, etype: str, fqn: str) -> tuple[Record, dict[str, Any], list[dict[str, Any]]]:
        rec = self.get(etype, fqn)
        doc = rec.doc()
        columns = doc.get("columns")
        if not isinstance(columns, list):
            raise SimError(400, f"{etype} {fqn} has no columns")
        return rec, doc, columns

    def create_table(self, service: str, database: str, schema: str, name: str, **kwargs: Any) -> dict[str, Any]:
        """Create a table after start-up: like `add_table`, plus the `entityCreated` event."""
        with self.lock:
            rec = self.add_table(service, database, schema, name, **kwargs)
            now = self.tick()
            self.seed_patch(rec, lambda d: d.update(updatedAt=now, updatedBy="admin"))
            self.emit("entityCreated", rec, None, timestamp=now, by="admin")
            return rec.doc()

    def add_column(
        self, fqn: str, column: dict[str, Any], *, etype: str = "table", by: str = "admin"
    ) -> dict[str, Any]:
        """Append a column (minor version; `columns` in fieldsAdded as a JSON list)."""
        with self.lock:
            rec, doc, columns = self._columns(etype, fqn)
            if not column.get("name"):
                raise SimError(400, "column name is required")
            if any(c.get("name") == column["name"] for c in columns):
                raise SimError(409, f"column {column['name']} already exists")
            position = max((c.get("ordinalPosition") or 0 for c in columns), default=0) + 1
            new = normalize_column(column, rec.fqn, position)
            columns.append(new)
            return self.commit(rec, doc, added=[{"name": "columns", "newValue": dumps([new])}], by=by)

    def drop_column(self, fqn: str, name: str, *, etype: str = "table", by: str = "admin") -> dict[str, Any]:
        """Remove a column (major version; `columns` in fieldsDeleted)."""
        with self.lock:
            rec, doc, columns = self._columns(etype, fqn)
            old = columns.pop(find_column(columns, name))
            out = self.commit(rec, doc, deleted=[{"name": "columns", "oldValue": dumps([old])}], major=True, by=by)
            self.follow_columns(rec, column_fqns([old]), {})
            return out

    def rename_column(
        self, fqn: str, name: str, new_name: str, *, etype: str = "table", by: str = "admin"
    ) -> dict[str, Any]:
        """Rename a column: OM sees the old column deleted and a new one added (major version)."""
        with self.lock:
            rec, doc, columns = self._columns(etype, fqn)
            index = find_column(columns, name)
            if any(c.get("name") == new_name for c in columns):
                raise SimError(409, f"column {new_name} already exists")
            old = columns[index]
            new = normalize_column({**old, "name": new_name}, rec.fqn, old.get("ordinalPosition"))
            out = self._replace_column(rec, doc, index, new, by)
            old_prefix, new_prefix = old["fullyQualifiedName"], new["fullyQualifiedName"]
            renamed = {f: new_prefix + f[len(old_prefix) :] for f in column_fqns([old])}
            self.follow_columns(rec, set(), renamed)
            return out

    def _replace_column(
        self, rec: Record, doc: dict[str, Any], index: int, new: dict[str, Any], by: str
    ) -> dict[str, Any]:
        """Swap a column for a changed one: OM matches columns by name and type, so it is delete + add (major)."""
        columns = doc["columns"]
        old, columns[index] = columns[index], new
        return self.commit(
            rec,
            doc,
            added=[{"name": "columns", "newValue": dumps([new])}],
            deleted=[{"name": "columns", "oldValue": dumps([old])}],
            major=True,
            by=by,
        )

    def retype_column(
        self,
        fqn: str,
        name: str,
        data_type: str,
        *,
        data_type_display: str | None = None,
        data_length: int | None = None,
        etype: str = "table",
        by: str = "admin",
    ) -> dict[str, Any]:
        """Change a column's type: a new dataType is delete+add (major); a length change is recorded per field."""
        with self.lock:
            rec, doc, columns = self._columns(etype, fqn)
            index = find_column(columns, name)
            old = columns[index]
            display = data_type_display or _display(data_type, data_length)
            if data_type != old.get("dataType"):
                changed = {**old, "dataType": data_type, "dataTypeDisplay": display}
                changed.pop("dataLength", None)
                if data_length is not None:
                    changed["dataLength"] = data_length
                new = normalize_column(changed, rec.fqn, old.get("ordinalPosition"))
                return self._replace_column(rec, doc, index, new, by)
            old_length = old.get("dataLength")
            if data_type_display is None and data_length in (None, old_length):
                display = old.get("dataTypeDisplay") or display
            new = {**old, "dataTypeDisplay": display}
            if data_length is not None:
                new["dataLength"] = data_length
            columns[index] = normalize_column(new, rec.fqn, old.get("ordinalPosition"))
            if data_length is None or data_length == old_length:
                if display != old.get("dataTypeDisplay"):
                    rec.store(doc)  # OM does not version a display-only change
                return doc
            added, updated, deleted = scalar_change(column_field(name, "dataLength"), old_length, data_length)
            major = old_length is None or data_length < old_length
            return self.commit(rec, doc, added=added, updated=updated, deleted=deleted, major=major, by=by)

    def set_column_constraint(
        self, fqn: str, name: str, constraint: str | None, *, etype: str = "table", by: str = "admin"
    ) -> dict[str, Any]:
        """Set or clear a column constraint (minor version, `columns.<col>.constraint`)."""
        return self._column_attr(etype, fqn, name, "constraint", constraint, by)

    def set_column_description(
        self, fqn: str, name: str, description: str | None, *, etype: str = "table", by: str = "admin"
    ) -> dict[str, Any]:
        """Set or clear a column description (minor version, `columns.<col>.description`)."""
        return self._column_attr(etype, fqn, name, "description", description, by)

    def _column_attr(self, etype: str, fqn: str, name: str, attr: str, value: Any, by: str) -> dict[str, Any]:
        with self.lock:
            rec, doc, columns = self._columns(etype, fqn)
            index = find_column(columns, name)
            col = columns[index]
            old = col.get(attr)
            if old == value:
                return doc
            if value is None:
                col.pop(attr, None)
            else:
                col[attr] = value
            columns[index] = normalize_column(col, rec.fqn, col.get("ordinalPosition"))
            added, updated, deleted = scalar_change(column_field(name, attr), old, value)
            return self.commit(rec, doc, added=added, updated=updated, deleted=deleted, by=by)

    def set_description(self, etype: str, fqn: str, description: str | None, *, by: str = "admin") -> dict[str, Any]:
        """Set or clear an entity's description (minor version)."""
        with self.lock:
            rec = self.get(etype, fqn)
            doc = rec.doc()
            old = doc.get("description")
            if old == description:
                return doc
            if description is None:
                doc.pop("description", None)
            else:
                doc["description"] = description
            added, updated, deleted = scalar_change("description", old, description)
            return self.commit(rec, doc, added=added, updated=updated, deleted=deleted, by=by)

    def set_owners(self, etype: str, fqn: str, owners: Sequence[str], *, by: str = "admin") -> dict[str, Any]:
        """Replace the owners with users/teams by name (minor version, `owners` list change)."""
        with self.lock:
            rec = self.get(etype, fqn)
            doc = rec.doc()
            new = self.owner_refs(owners)
            return self._list_change(rec, doc, "owners", new, key="id", by=by)

    def set_tags(
        self, etype: str, fqn: str, tags: Iterable[str | dict[str, Any]], *, by: str = "admin"
    ) -> dict[str, Any]:
        """Replace the entity-level tags, tier included (minor version, `tags` list change)."""
        with self.lock:
            rec = self.get(etype, fqn)
            doc = rec.doc()
            new = [tag_label(t) if isinstance(t, str) else dict(t) for t in tags]
            return self._list_change(rec, doc, "tags", new, key="tagFQN", by=by)

    def _list_change(
        self, rec: Record, doc: dict[str, Any], field: str, new: list[dict[str, Any]], *, key: str, by: str
    ) -> dict[str, Any]:
        old = doc.get(field) or []
        old_keys = {o[key] for o in old}
        new_keys = {n[key] for n in new}
        gained = [n for n in new if n[key] not in old_keys]
        lost = [o for o in old if o[key] not in new_keys]
        if not gained and not lost:
            return doc
        doc[field] = new
        added = [{"name": field, "newValue": dumps(gained)}] if gained else []
        deleted = [{"name": field, "oldValue": dumps(lost)}] if lost else []
        return self.commit(rec, doc, added=added, deleted=deleted, by=by)

    def soft_delete(self, etype: str, fqn: str, *, by: str = "admin") -> dict[str, Any]:
        """Soft-delete an entity (`deleted: true`, minor version, `entitySoftDeleted` event)."""
        with self.lock:
            rec = self.get(etype, fqn)
            doc = rec.doc()
            doc["deleted"] = True
            updated = [{"name": "deleted", "oldValue": False, "newValue": True}]
            return self.commit(rec, doc, updated=updated, event_type="entitySoftDeleted", by=by)

    def restore(self, etype: str, fqn: str, *, by: str = "admin") -> dict[str, Any]:
        """Restore a soft-deleted entity (minor version, `entityRestored` event)."""
        with self.lock:
            rec = self.get(etype, fqn, include="deleted")
            doc = rec.doc()
            doc["deleted"] = False
            updated = [{"name": "deleted", "oldValue": True, "newValue": False}]
            return self.commit(rec, doc, updated=updated, event_type="entityRestored", by=by)


def _display(data_type: str, length: int | None) -> str:
    return data_type_display(data_type, length)
