"""The fixer: concrete fix proposals, each simulated on copies of the genes and lineage (it never writes anywhere)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agents import breaks as bk
from agents.model import Break, FixProposal
from storage.domain.diff import TYPE_KEYS
from storage.domain.dna import Edge
from storage.domain.lineage import LineageGraph
from storage.openmetadata.fqn import FQNError, column_fqn, last, split
from storage.persistence.store import ChangeView

GenesOf = Callable[[str], "dict[str, Any] | None"]
NOTE = "This is a proposal: DNA Bot has not run or changed anything."
SCHEMA_KINDS = ("column_renamed", "column_type_changed", "column_removed")
_PLAIN_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]{0,40}(\(\s*\d{1,5}\s*(,\s*\d{1,5}\s*)?\))?$")
RESERVED = frozenset(
    {
        *("all", "and", "as", "asc", "by", "case", "cast", "column", "create", "default", "delete", "desc"),
        *("distinct", "drop", "else", "end", "from", "group", "having", "in", "insert", "is", "join", "key"),
        *("left", "limit", "not", "null", "on", "or", "order", "primary", "right", "select", "set", "table"),
        *("to", "union", "unique", "update", "user", "using", "values", "view", "when", "where", "with"),
    }
)


# ------------------------------------------------------------------------------------------------ SQL text


def quote_ident(name: str) -> str:
    """An SQL identifier: as is when plain, else double-quoted with inner quotes doubled."""
    if _PLAIN_IDENT.match(name) and name.lower() not in RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def sql_type(summary: Mapping[str, Any] | None) -> str | None:
    """The SQL type text of a column summary, or None when it is not a plain `NAME(n[,m])` we can safely write."""
    if not summary:
        return None
    text = summary.get("type_display") or bk.type_signature(summary)
    text = " ".join(str(text or "").split())
    return text if _SAFE_TYPE.match(text) else None


def table_sql_name(fqn: str, suffix: str = "") -> str | None:
    """`schema.table` of a table FQN (service.database.schema.table), quoted as needed; None for odd FQNs."""
    try:
        parts = split(fqn)
    except FQNError:
        return None
    if len(parts) < 2:
        return None
    schema, table = parts[-2], parts[-1] + suffix
    return f"{quote_ident(schema)}.{quote_ident(table)}"


# ------------------------------------------------------------------------------------------------ helpers


def _outcome(before: Sequence[Break], after: Sequence[Break]) -> tuple[tuple[Break, ...], tuple[Break, ...]]:
    still = {bk.break_key(b) for b in after}
    return tuple(b for b in before if bk.break_key(b) not in still), tuple(after)


def _proposal(
    kind: str, title: str, sql: str | None, steps: Sequence[str], before: Sequence[Break], after: Sequence[Break]
) -> FixProposal:
    resolves, remains = _outcome(before, after)
    return FixProposal(kind, title, sql, (*steps, NOTE), True, resolves, remains)


def _models(breaks: Sequence[Break]) -> list[str]:
    """The first assets downstream that read the column: the models to change."""
    return list(dict.fromkeys(b.entity_fqn for b in breaks if b.distance == 1 and b.entity_type not in bk.VISUAL_TYPES))


def _remap_graph(graph: LineageGraph, entity: str, old_col: str, new_col: str | None) -> LineageGraph:
    """A copy of `entity`'s downstream graph where mappings read `new_col` instead of `old_col` (or drop it)."""
    edges = []
    for e in bk.downstream_edges(graph, entity):
        columns = []
        for m in e.columns:
            froms = [new_col if f == old_col else f for f in m["from"] if f != old_col or new_col]
            if froms:
                columns.append({"from": froms, "to": m["to"]})
        edges.append(Edge(e.from_fqn, e.from_type, e.to_fqn, e.to_type, e.pipeline_fqn, columns))
    return bk.rebuild_graph(graph, edges)


def _columns(genes_of: GenesOf, fqn: str) -> list[dict[str, Any]]:
    return copy.deepcopy(((genes_of(fqn) or {}).get("schema") or {}).get("columns") or [])


def _sql_names(genes_of: GenesOf, fqn: str) -> tuple[str | None, str | None]:
    """(table, compatibility view) SQL names; both None unless the entity is a table (no SQL for BI models)."""
    kind = ((genes_of(fqn) or {}).get("entity") or {}).get("type") or "table"
    if kind != "table":
        return None, None
    return table_sql_name(fqn), table_sql_name(fqn, "_compat")


def _with_type(col: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    return {**col, **{k: summary.get(k) for k in TYPE_KEYS}}


# ------------------------------------------------------------------------------------------------ schema


def _rename_fixes(
    change: ChangeView, graph: LineageGraph, genes_of: GenesOf, before: Sequence[Break]
) -> list[FixProposal]:
    entity, d = change.entity_fqn, change.details or {}
    old, new = str(d.get("old_name") or change.subject), str(d.get("new_name") or change.new_value)
    columns = _columns(genes_of, entity)
    new_col = bk.find_column(columns, new) or {"name": new}
    expected = bk.type_signature(new_col)
    before = before or bk.schema_breaks(graph, entity, old, columns, expected, renamed_to=new)
    patched = [*copy.deepcopy(columns), {**new_col, "name": old}]
    after = bk.schema_breaks(graph, entity, old, patched, expected, renamed_to=new)
    table, compat = _sql_names(genes_of, entity)
    sql = None
    if table and compat and "." not in old + new:
        sql = f"CREATE OR REPLACE VIEW {compat} AS SELECT *, {quote_ident(new)} AS {quote_ident(old)} FROM {table};"
    models = _models(before)
    fixes = [
        _proposal(
            "alias_view",
            f"Compatibility view: expose {new} as {old} again",
            sql,
            (
                f"Review the SQL, then run it in the warehouse: it adds {old} back as an alias of {new}.",
                f"Point the downstream models ({', '.join(last(m) for m in models) or 'none listed'}) at the "
                f"compatibility view {compat or last(entity) + '_compat'} until they read {new}.",
                f"Drop the view once every model reads {new}.",
            ),
            before,
            after,
        )
    ]
    repointed = _remap_graph(graph, entity, column_fqn(entity, old), column_fqn(entity, new))
    after_repoint = bk.schema_breaks(repointed, entity, old, columns, expected)
    steps = [f"In {m}, read {last(entity)}.{new} instead of {last(entity)}.{old}." for m in models]
    fixes.append(
        _proposal(
            "repoint_downstream",
            f"Re-point downstream models to {new}",
            None,
            steps or [f"Update whatever reads {old} to read {new}."],
            before,
            after_repoint,
        )
    )
    return fixes


def _retype_fixes(
    change: ChangeView, graph: LineageGraph, genes_of: GenesOf, before: Sequence[Break]
) -> list[FixProposal]:
    entity, name = change.entity_fqn, str(change.subject)
    old_type = change.old_value if isinstance(change.old_value, Mapping) else {}
    expected = bk.type_signature(old_type)
    columns = _columns(genes_of, entity)
    before = before or bk.schema_breaks(graph, entity, name, columns, expected)
    patched = [_with_type(c, old_type) if c.get("name") == name else c for c in columns]
    after = bk.schema_breaks(graph, entity, name, patched, expected)
    (table, compat), type_sql = _sql_names(genes_of, entity), sql_type(old_type)
    sql = None
    if table and compat and type_sql and any(c.get("name") == name for c in columns):
        select = ", ".join(
            f"CAST({quote_ident(name)} AS {type_sql}) AS {quote_ident(name)}"
            if c["name"] == name
            else quote_ident(str(c["name"]))
            for c in columns
        )
        sql = f"CREATE OR REPLACE VIEW {compat} AS SELECT {select} FROM {table};"
    steps = (
        f"Review the SQL: the view casts {name} back to {type_sql or expected} for readers that expect it.",
        "Point the downstream models at the view, or change the column's type back at the source.",
    )
    return [_proposal("cast_view", f"Cast view: {name} as {type_sql or expected} again", sql, steps, before, after)]


def _drop_fixes(
    change: ChangeView, graph: LineageGraph, genes_of: GenesOf, before: Sequence[Break]
) -> list[FixProposal]:
    entity, name = change.entity_fqn, str(change.subject)
    old = change.old_value if isinstance(change.old_value, Mapping) else {}
    expected = bk.type_signature(old)
    columns = _columns(genes_of, entity)
    before = before or bk.schema_breaks(graph, entity, name, columns, expected)
    restored = [*copy.deepcopy(columns), _with_type({"name": name, "children": []}, old)]
    after = bk.schema_breaks(graph, entity, name, restored, expected)
    table, type_sql = _sql_names(genes_of, entity)[0], sql_type(old)
    sql = None
    if table and type_sql and "." not in name:
        sql = f"ALTER TABLE {table} ADD COLUMN {quote_ident(name)} {type_sql};"
    restore = _proposal(
        "restore_column",
        f"Restore {name} ({type_sql or expected or 'its old type'}) on {last(entity)}",
        sql,
        (
            "Review the SQL: it adds the column back with its old type; the data itself has to be reloaded.",
            "Re-run the job that loads the table so the column is filled again.",
        ),
        before,
        after,
    )
    unmapped = _remap_graph(graph, entity, column_fqn(entity, name), None)
    after_repoint = bk.schema_breaks(unmapped, entity, name, columns, expected)
    models = _models(before)
    steps = [f"In {m}, stop reading {last(entity)}.{name} (or read a replacement column)." for m in models]
    repoint = _proposal(
        "repoint_downstream",
        f"Remove {name} from the downstream models",
        None,
        steps or [f"Update whatever reads {name}."],
        before,
        after_repoint,
    )
    return [restore, repoint]


SCHEMA_FIXES = {"column_renamed": _rename_fixes, "column_type_changed": _retype_fixes, "column_removed": _drop_fixes}


# ------------------------------------------------------------------------------------------------ others


def _edge_fix(change: ChangeView, graph: LineageGraph, before: Sequence[Break]) -> FixProposal:
    src, dst = str(change.subject), change.entity_fqn
    old = change.old_value if isinstance(change.old_value, Mapping) else {}
    pipeline = old.get("pipeline")
    before = before or bk.edge_breaks(graph, src, dst, bk.has_edge(graph, src, dst))
    restored_edge = Edge(
        src,
        old.get("type") or graph.type_of(src) or "",
        dst,
        graph.type_of(dst) or "",
        pipeline,
        list(old.get("columns") or ()),
    )
    patched = bk.rebuild_graph(graph, [*bk.downstream_edges(graph, dst), restored_edge])
    after = bk.edge_breaks(patched, src, dst, bk.has_edge(patched, src, dst))
    steps = (
        [f"Re-run {pipeline}, which loads {last(dst)} from {last(src)}; check why its last run dropped the edge."]
        if pipeline
        else [f"Check the job or SQL that builds {last(dst)} from {last(src)} and re-run it."]
    ) + ["Re-run the lineage ingestion so OpenMetadata records the edge again."]
    return _proposal("restore_edge", f"Restore the lineage edge {last(src)} → {last(dst)}", None, steps, before, after)


def _owner_fix(root_fqn: str, change: ChangeView | None, genes_of: GenesOf, before: Sequence[Break]) -> FixProposal:
    genes = copy.deepcopy(genes_of(root_fqn) or {"entity": {"fqn": root_fqn}, "ownership": {"owners": []}})
    old = change.old_value if change is not None and isinstance(change.old_value, Mapping) else {}
    previous = str(old.get("name") or (change.subject if change is not None else "") or "")
    genes.setdefault("ownership", {})["owners"] = [
        {"name": previous or "new-owner", "type": old.get("type") or "user", "display_name": old.get("display_name")}
    ]
    before = before or bk.ownership_breaks(copy.deepcopy(genes_of(root_fqn) or genes))
    after = bk.ownership_breaks(genes)
    title = f"Assign an owner to {last(root_fqn)}" + (f": {previous} (the previous owner)" if previous else "")
    steps = (
        f"In OpenMetadata, set the owner of {root_fqn}" + (f" back to {previous}." if previous else "."),
        "Check whether an ingestion run or a team change removed the owner, so it does not happen again.",
    )
    return _proposal("assign_owner", title, None, steps, before, after)


def _rerun_fix(root_fqn: str, change: ChangeView | None, graph: LineageGraph, before: Sequence[Break]) -> FixProposal:
    tasks = list((change.details or {}).get("failed_tasks") or ()) if change is not None else []
    loads = [b.entity_fqn for b in before if b.distance == 1]
    after = bk.pipeline_breaks(graph, root_fqn, "Successful", loads)
    steps = (
        f"Fix what made {'the tasks ' + ', '.join(tasks) if tasks else 'the run'} fail first (see the upstream "
        "cause, if any).",
        f"Re-run {root_fqn}; the simulation assumes the re-run succeeds.",
    )
    return _proposal("rerun_pipeline", f"Re-run {last(root_fqn)} after fixing the cause", None, steps, before, after)


def _investigate(kind: str, root_fqn: str, root_column: str | None, change: ChangeView | None) -> FixProposal:
    where = f"{root_fqn}.{root_column}" if root_column else root_fqn
    if kind == "trust_drop" and change is not None:
        factors = sorted((change.details or {}).get("factors") or (), key=lambda f: f.get("score", 1))
        steps = [f"{f.get('name')}: {f.get('reason')}" for f in factors[:3]]
        steps.append(f"Look at what changed on {where} in its timeline.")
    else:
        steps = [
            f"Look at the latest data of {where}: no upstream change on a lineage path explains the failure.",
            "Check the source system and the last load of this asset.",
            "If the data is right, review the test definition.",
        ]
    return FixProposal("investigate", f"Investigate {where}", None, (*steps, NOTE), False, (), ())


def propose(
    *,
    kind: str,
    root_fqn: str,
    root_column: str | None,
    change: ChangeView | None,
    graph: LineageGraph,
    genes_of: GenesOf,
    breaks: Sequence[Break],
) -> list[FixProposal]:
    """Fix proposals for an incident, best first, each simulated on copies (resolves / remains) when it can be.

    For a symptom kind (test, pipeline, trust) `change` may be the upstream cause the analyst found: a schema
    change then gets the schema fixes, simulated against its own breaks.
    """
    if change is not None and change.kind in SCHEMA_KINDS:
        own = kind == "breaking_schema_change"
        return SCHEMA_FIXES[change.kind](change, graph, genes_of, breaks if own else ())
    if kind == "lineage_edge_lost" and change is not None and change.kind == "lineage_edge_removed":
        return [_edge_fix(change, graph, breaks)]
    if kind == "ownership_lost":
        return [_owner_fix(root_fqn, change, genes_of, breaks)]
    if kind == "pipeline_failed":
        return [_rerun_fix(root_fqn, change, graph, breaks)]
    return [_investigate(kind, root_fqn, root_column, change)]
