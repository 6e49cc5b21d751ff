"""Temporal diffs: the genes of one entity at two times in, the `ChangeRecord`s between them out (pure)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Genes = Mapping[str, Any]
ColumnGenes = Mapping[str, Any]

RENAME_MIN_CONFIDENCE = 0.6
NAME_SIMILARITY_MIN = 0.6
MIN_CONTAINED = 3  # "id" inside "paid_amount" is no evidence of a rename
TYPE_KEYS = ("type", "type_display", "length", "precision", "scale")


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One change inside one entity; `subject` is what changed: column, edge end, test, owner, pipeline."""

    kind: str
    subject: str
    old_value: Any = None
    new_value: Any = None
    confidence: float | None = None
    details: dict[str, Any] = field(default_factory=dict, hash=False)

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict (the `changes` row payload)."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "old_value": self.old_value,
            "new_value": self.new_value,
            "confidence": self.confidence,
            "details": self.details,
        }


def type_display(col: ColumnGenes) -> dict[str, Any]:
    """The type of a column as shown to users: dataType, its display text, length, precision, scale."""
    return {k: col.get(k) for k in TYPE_KEYS}


def _type_changed(old: ColumnGenes, new: ColumnGenes) -> bool:
    if any(old.get(k) != new.get(k) for k in ("type", "length", "precision", "scale")):
        return True
    # Display text alone differing only in case or spacing is cosmetic.
    norm = ["".join((c.get("type_display") or "").lower().split()) for c in (old, new)]
    return norm[0] != norm[1]


def _column_summary(col: ColumnGenes) -> dict[str, Any]:
    return {**type_display(col), "position": col.get("position")}


def _neighbours(columns: Sequence[ColumnGenes], kept: set[str]) -> dict[str, tuple[str | None, str | None]]:
    """For each column, the nearest columns before and after it that exist on both sides."""
    out: dict[str, tuple[str | None, str | None]] = {}
    names = [c["name"] for c in columns]
    before: str | None = None
    for name in names:
        out[name] = (before, None)
        before = name if name in kept else before
    after: str | None = None
    for name in reversed(names):
        out[name] = (out[name][0], after)
        after = name if name in kept else after
    return out


def _rename_confidence(
    old: ColumnGenes, new: ColumnGenes, same_position: bool, same_neighbours: bool
) -> tuple[float, str]:
    """How sure we are that `old` was renamed to `new` (0 when not a candidate), and why.

    Same type is required. Being in the same place (same position, or between the same surviving columns) gives
    0.9 or more; a kept description and a similar name add to it. Without the place, a kept description gives
    0.7 and a similar name 0.75–0.85.
    """
    if _type_changed(old, new):
        return 0.0, ""
    a, b = old["name"].lower(), new["name"].lower()
    ratio = difflib.SequenceMatcher(None, a, b).ratio()
    shorter, longer = sorted((a, b), key=len)
    similar = ratio >= NAME_SIMILARITY_MIN or (len(shorter) >= MIN_CONTAINED and shorter in longer)
    same_description = bool(old.get("description")) and old.get("description") == new.get("description")
    evidence = [
        label
        for label, present in (
            ("same type", True),
            ("same position", same_position),
            ("between the same columns", same_neighbours),
            ("same description", same_description),
            ("similar name", similar),
        )
        if present
    ]
    why = ", ".join(evidence)
    if same_position or same_neighbours:
        both = same_position and same_neighbours
        conf = 0.9 + 0.03 * both + 0.04 * same_description + 0.02 * ratio
    elif similar:
        conf = 0.6 + 0.25 * max(ratio, NAME_SIMILARITY_MIN)
    elif same_description:
        conf = 0.7
    else:
        return 0.0, ""
    return round(min(conf, 0.99), 3), why


def _pair_renames(
    old_cols: Sequence[ColumnGenes],
    new_cols: Sequence[ColumnGenes],
    removed: Sequence[ColumnGenes],
    added: Sequence[ColumnGenes],
) -> list[tuple[ColumnGenes, ColumnGenes, float, str]]:
    """Greedy best-first pairing of removed with added columns; only pairs at ≥ RENAME_MIN_CONFIDENCE."""
    kept = {c["name"] for c in old_cols} & {c["name"] for c in new_cols}
    old_near, new_near = _neighbours(old_cols, kept), _neighbours(new_cols, kept)
    candidates = []
    for i, old in enumerate(removed):
        for j, new in enumerate(added):
            near = old_near[old["name"]]
            same_neighbours = near == new_near[new["name"]] and near != (None, None)
            same_position = old.get("position") == new.get("position")
            conf, why = _rename_confidence(old, new, same_position, same_neighbours)
            if conf >= RENAME_MIN_CONFIDENCE:
                candidates.append((-conf, i, j, why))
    candidates.sort()
    used_old: set[int] = set()
    used_new: set[int] = set()
    pairs = []
    for neg_conf, i, j, why in candidates:
        if i in used_old or j in used_new:
            continue
        used_old.add(i)
        used_new.add(j)
        pairs.append((removed[i], added[j], -neg_conf, why))
    return pairs


def _column_attrs(prefix: str, old: ColumnGenes, new: ColumnGenes, out: list[ChangeRecord]) -> None:
    """Changes of one column that exists on both sides (under its new name), children included."""
    subject = prefix + new["name"]
    if _type_changed(old, new):
        out.append(ChangeRecord("column_type_changed", subject, type_display(old), type_display(new)))
    for kind, key in (
        ("column_constraint_changed", "constraint"),
        ("column_nullability_changed", "nullable"),
    ):
        if old.get(key) != new.get(key):
            out.append(ChangeRecord(kind, subject, old.get(key), new.get(key)))
    if old.get("description") and not new.get("description"):
        out.append(ChangeRecord("column_description_removed", subject, old["description"], None))
    _diff_columns(subject + ".", old.get("children") or [], new.get("children") or [], out)


def _diff_columns(
    prefix: str, old_cols: Sequence[ColumnGenes], new_cols: Sequence[ColumnGenes], out: list[ChangeRecord]
) -> None:
    old_by = {c["name"]: c for c in old_cols}
    new_by = {c["name"]: c for c in new_cols}
    removed = [c for c in old_cols if c["name"] not in new_by]
    added = [c for c in new_cols if c["name"] not in old_by]
    renames = _pair_renames(old_cols, new_cols, removed, added)
    renamed_old = {id(o) for o, _, _, _ in renames}
    renamed_new = {id(n) for _, n, _, _ in renames}
    records: list[ChangeRecord] = []
    for col in removed:
        if id(col) not in renamed_old:
            records.append(ChangeRecord("column_removed", prefix + col["name"], _column_summary(col), None))
    for col in added:
        if id(col) not in renamed_new:
            records.append(ChangeRecord("column_added", prefix + col["name"], None, _column_summary(col)))
    for old, new, conf, why in renames:
        details = {
            "old_name": prefix + old["name"],
            "new_name": prefix + new["name"],
            "position": new.get("position"),
            "old_position": old.get("position"),
            "why": why,
        }
        records.append(ChangeRecord("column_renamed", prefix + old["name"], old["name"], new["name"], conf, details))
    records.sort(key=lambda r: (r.subject, r.kind))
    out.extend(records)
    for col in old_cols:
        if col["name"] in new_by:
            _column_attrs(prefix, col, new_by[col["name"]], out)
    for old, new, _, _ in renames:
        _column_attrs(prefix, old, new, out)


def _edge_summary(edge: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": edge.get("type"), "pipeline": edge.get("pipeline"), "columns": edge.get("columns", [])}


def _mapping_key(mapping: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    return mapping["to"], tuple(mapping.get("from") or ())


def _diff_lineage(old: Genes, new: Genes, out: list[ChangeRecord]) -> None:
    for direction in ("upstream", "downstream"):
        old_edges = {e["fqn"]: e for e in old.get("lineage", {}).get(direction, [])}
        new_edges = {e["fqn"]: e for e in new.get("lineage", {}).get(direction, [])}
        for fqn in sorted(old_edges.keys() | new_edges.keys()):
            o, n = old_edges.get(fqn), new_edges.get(fqn)
            details = {"direction": direction}
            if n is None:
                out.append(
                    ChangeRecord("lineage_edge_removed", fqn, _edge_summary(old_edges[fqn]), None, details=details)
                )
            elif o is None:
                out.append(ChangeRecord("lineage_edge_added", fqn, None, _edge_summary(n), details=details))
            else:
                _diff_mappings(fqn, direction, o, n, out)


def _diff_mappings(
    fqn: str, direction: str, old: Mapping[str, Any], new: Mapping[str, Any], out: list[ChangeRecord]
) -> None:
    old_maps = {_mapping_key(m): m for m in old.get("columns", [])}
    new_maps = {_mapping_key(m): m for m in new.get("columns", [])}
    for key in sorted(old_maps.keys() - new_maps.keys()):
        m = old_maps[key]
        details = {"direction": direction, "to": m["to"], "from": list(key[1])}
        out.append(ChangeRecord("column_mapping_removed", fqn, m, None, details=details))
    for key in sorted(new_maps.keys() - old_maps.keys()):
        m = new_maps[key]
        details = {"direction": direction, "to": m["to"], "from": list(key[1])}
        out.append(ChangeRecord("column_mapping_added", fqn, None, m, details=details))


def _diff_ownership(old: Genes, new: Genes, out: list[ChangeRecord]) -> None:
    fqn = new["entity"]["fqn"]
    old_own, new_own = old.get("ownership") or {}, new.get("ownership") or {}
    if old_own.get("description") and not new_own.get("description"):
        out.append(ChangeRecord("description_removed", fqn, old_own["description"], new_own.get("description")))
    old_owners = {o["name"]: o for o in old_own.get("owners", [])}
    new_owners = {o["name"]: o for o in new_own.get("owners", [])}
    gone = sorted(old_owners.keys() - new_owners.keys())
    came = sorted(new_owners.keys() - old_owners.keys())
    if len(old_owners) == 1 and len(new_owners) == 1 and gone and came:
        out.append(ChangeRecord("owner_changed", gone[0], old_owners[gone[0]], new_owners[came[0]]))
    else:
        out.extend(ChangeRecord("owner_removed", name, old_owners[name], None) for name in gone)
        out.extend(ChangeRecord("owner_added", name, None, new_owners[name]) for name in came)
    if old_own.get("tier") != new_own.get("tier"):
        out.append(ChangeRecord("tier_changed", fqn, old_own.get("tier"), new_own.get("tier")))


def _test_summary(test: Mapping[str, Any]) -> dict[str, Any]:
    return {k: test.get(k) for k in ("name", "column", "definition", "status")}


def _diff_quality(old: Genes, new: Genes, out: list[ChangeRecord]) -> None:
    old_tests = {t["fqn"]: t for t in (old.get("quality") or {}).get("tests", [])}
    new_tests = {t["fqn"]: t for t in (new.get("quality") or {}).get("tests", [])}
    for fqn in sorted(old_tests.keys() | new_tests.keys()):
        o, n = old_tests.get(fqn), new_tests.get(fqn)
        if n is None:
            out.append(ChangeRecord("test_removed", fqn, _test_summary(old_tests[fqn]), None))
            continue
        if o is None:
            out.append(ChangeRecord("test_added", fqn, None, _test_summary(n)))
        old_status = o.get("status") if o else None
        details = {"result": n.get("result"), "column": n.get("column"), "incident": n.get("incident")}
        if n.get("status") == "Failed" and old_status != "Failed":
            out.append(ChangeRecord("test_newly_failing", fqn, old_status, "Failed", details=details))
        elif n.get("status") == "Success" and old_status == "Failed":
            out.append(ChangeRecord("test_recovered", fqn, "Failed", "Success", details=details))


def _diff_pipelines(old: Genes, new: Genes, out: list[ChangeRecord]) -> None:
    old_runs = {r["fqn"]: r for r in (old.get("pipeline") or {}).get("runs", [])}
    new_runs = {r["fqn"]: r for r in (new.get("pipeline") or {}).get("runs", [])}
    for fqn in sorted(new_runs):
        n = new_runs[fqn]
        old_status = old_runs[fqn].get("status") if fqn in old_runs else None
        details = {"failed_tasks": list(n.get("failed_tasks") or [])}
        if n.get("status") == "Failed" and old_status != "Failed":
            out.append(ChangeRecord("pipeline_run_failed", fqn, old_status, "Failed", details=details))
        elif old_status == "Failed" and n.get("status") == "Successful":
            out.append(ChangeRecord("pipeline_run_recovered", fqn, "Failed", "Successful", details=details))


def diff_genes(old: Genes | None, new: Genes | None) -> list[ChangeRecord]:
    """Every change from `old` to `new` genes of one entity, in deterministic order (not `trust_dropped`)."""
    if old is None and new is None:
        return []
    if old is None:
        assert new is not None
        entity = new["entity"]
        if entity.get("deleted"):
            return []  # first seen already deleted: nothing happened that anyone could notice
        return [ChangeRecord("entity_added", entity["fqn"], None, {"type": entity["type"], "id": entity["id"]})]
    old_deleted = bool(old["entity"].get("deleted"))
    if new is None or new["entity"].get("deleted"):
        if old_deleted:
            return []
        return [ChangeRecord("entity_deleted", old["entity"]["fqn"], False, True)]
    out: list[ChangeRecord] = []
    if old_deleted:
        out.append(ChangeRecord("entity_restored", new["entity"]["fqn"], True, False))
    old_cols, new_cols = (g.get("schema", {}).get("columns", []) for g in (old, new))
    if old_cols != new_cols:  # equality is C-fast; most re-synced genes differ in one gene at most
        _diff_columns("", old_cols, new_cols, out)
    for gene, differ in GENE_DIFFERS:
        if old.get(gene) != new.get(gene):
            differ(old, new, out)
    return out


GENE_DIFFERS = (
    ("ownership", _diff_ownership),
    ("lineage", _diff_lineage),
    ("quality", _diff_quality),
    ("pipeline", _diff_pipelines),
)
