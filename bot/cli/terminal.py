"""Terminal rendering (rich) of sync results, DNA snapshots, timelines and blast radii."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from agents.observer_quality import RESULT_CHARS, plain
from bot.cli.terminal_text import Name

KIND_STYLE = {
    "column_removed": "bold red",
    "column_renamed": "bold yellow",
    "column_type_changed": "bold red",
    "lineage_edge_removed": "red",
    "test_newly_failing": "red",
    "pipeline_run_failed": "red",
    "owner_removed": "yellow",
    "entity_deleted": "bold red",
    "trust_dropped": "yellow",
    "test_recovered": "green",
    "pipeline_run_recovered": "green",
    "entity_restored": "green",
}


SHORT_TYPE = {"dashboardDataModel": "data model"}


class SyncProgress:
    """A rich progress display fed by the sync's `(stage, done, total)` callback."""

    def __init__(self, console: Console):
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> SyncProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, stage: str, done: int, total: int | None) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(f"fetch {stage}", total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


_DOMAIN_PREFIX = re.compile(r"^(?:OM[A-Z]\w*|OpenMetadataError|DnaBotError): ")


def sync_error_text(error: str) -> str:
    """A run's stored error as a reader wants it: "cannot reach OpenMetadata at …", without `OMUnavailable: `."""
    return _DOMAIN_PREFIX.sub("", error.strip())


def print_sync_result(console: Console, result: Any) -> None:
    ok = result.status == "succeeded"
    head = f"[bold {'green' if ok else 'red'}]sync run {result.run_id} {result.status}[/] ({result.mode})"
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("OpenMetadata", result.om_version or "?")
    table.add_row("duration", f"{result.duration_seconds:.2f} s, {result.requests} requests, {result.retries} retries")
    table.add_row("entities seen", str(result.entities_seen))
    table.add_row("snapshots written", str(result.snapshots_written))
    table.add_row("entities added / deleted", f"{result.entities_added} / {result.entities_deleted}")
    table.add_row("lineage edges", f"+{result.edges_added} −{result.edges_removed} ~{result.edges_changed}")
    sweep = getattr(result, "lineage_sweep", None)
    if sweep:
        how = f"{sweep.get('read', 0)} entities re-read ({sweep.get('source')})"
        if sweep.get("events") is not None:
            how += f", {sweep['events']} lineage events"
        table.add_row("lineage edits", how)
    if result.skipped_malformed:
        table.add_row("skipped (malformed)", f"[yellow]{result.skipped_malformed}[/]")
    for kind, counts in (getattr(result, "unknown", None) or {}).items():
        names = ", ".join(escape(name) for name in list(counts)[:5]) + (" …" if len(counts) > 5 else "")
        table.add_row(f"unknown {kind.replace('_', ' ')} (ignored)", f"[yellow]{names}[/]")
    console.print(Panel(table, title=head, expand=False))
    if result.error:  # one line under the figures, whole: a URL or a hint folded inside the panel reads badly
        console.print(f"[bold red]error:[/] {escape(sync_error_text(result.error))}", soft_wrap=True, highlight=False)
    if result.changes_by_kind:
        console.print("[bold]What changed since the last sync[/]")
        changes = Table()
        changes.add_column("change")
        changes.add_column("count", justify="right")
        for kind, count in result.changes_by_kind.items():
            changes.add_row(f"[{KIND_STYLE.get(kind, '')}]{kind}[/]", str(count))
        console.print(changes)
    elif ok and result.first_sync:
        console.print(f"First sync: {result.snapshots_written} assets now have a DNA snapshot.")
    elif ok:
        console.print("No changes since the last sync.")
    _print_incident_line(console, result.incidents)


def _print_incident_line(console: Console, incidents: dict[str, Any] | None) -> None:
    """One line on what the incident pipeline did after the sync."""
    if not incidents:
        return
    parts = []
    for key, label in (("opened", "opened"), ("reopened", "reopened"), ("resolved", "resolved"), ("unsnoozed", "woke")):
        if incidents.get(key):
            parts.append(f"{label} " + ", ".join(f"#{i}" for i in incidents[key]))
    for incident_id, change_ids in (incidents.get("attached") or {}).items():
        parts.append(f"#{incident_id} gained {len(change_ids)} symptom(s)")
    if parts:
        console.print("[bold]Incidents:[/] " + "; ".join(parts) + " (dnabot incidents)")
    for note in incidents.get("degraded") or []:
        console.print(f"[yellow]{note}[/]")


def _columns_table(columns: list[dict[str, Any]]) -> Table:
    table = Table(title="schema", title_justify="left")
    for name in ("#", "column", "type", "null", "constraint", "description"):
        table.add_column(name, overflow="ellipsis")
    for col in columns:
        table.add_row(
            str(col.get("position", "")),
            Name(col["name"]),
            Name(col.get("type_display") or col.get("type") or "?"),
            "yes" if col.get("nullable", True) else "no",
            Name(col.get("constraint") or ""),
            Text((col.get("description") or "")[:60]),
        )
    return table


def print_dna(console: Console, view: Any, at: datetime | None) -> None:
    genes = view.genes
    when = f" as of {at.isoformat()}" if at else ""
    state = " [red](deleted)[/]" if view.deleted else ""
    console.print(
        Panel(
            f"[bold]{view.entity_fqn}[/] ({view.entity_type}){state}\n"
            f"snapshot taken {view.taken_at.isoformat()}{when} · fingerprint {view.fingerprint[:12]}",
            title="DNA",
            expand=False,
        )
    )
    trust = Table(title=f"trust score {view.trust_score}/100", title_justify="left")
    for name in ("factor", "weight", "score", "why"):
        trust.add_column(name, overflow="ellipsis")
    for f in view.trust_factors:
        trust.add_row(Name(f["name"]), str(f["weight"]), f"{float(f['score']):.2f}", Text(f["reason"]))
    console.print(trust)
    cols = genes.get("schema", {}).get("columns", [])
    if cols:
        console.print(_columns_table(cols))
    own = genes.get("ownership") or {}
    owners = ", ".join(o["name"] for o in own.get("owners", [])) or "[yellow]nobody[/]"
    console.print(f"owners: {owners} · tier: {own.get('tier') or '-'} · tags: {', '.join(own.get('tags', [])) or '-'}")
    lineage = genes.get("lineage") or {}
    for direction in ("upstream", "downstream"):
        edges = lineage.get(direction, [])
        if edges:
            console.print(
                f"{direction}: " + ", ".join(f"{e['fqn']} ({len(e.get('columns', []))} col maps)" for e in edges)
            )
    tests = (genes.get("quality") or {}).get("tests", [])
    if tests:
        failing = [t for t in tests if t.get("status") == "Failed"]
        console.print(f"tests: {len(tests) - len(failing)} passing, {len(failing)} failing")
        for t in failing:  # names and results are metadata: plain text, never rich markup or terminal codes
            line = Text("  ").append("✗", style="red").append(f" {plain(t['name'], 200)}: ")
            console.print(line.append(plain(t.get("result") or "", RESULT_CHARS)))


def _value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)[:80]
    return str(v)[:80]


def print_timeline(console: Console, fqn: str, since: datetime, changes: list[Any]) -> None:
    if not changes:
        console.print(f"No changes on [bold]{fqn}[/] since {since.isoformat()}.")
        return
    console.print(Text(f"{fqn} since {since.strftime('%Y-%m-%d %H:%M:%S')} UTC", style="italic"))
    table = Table()
    for name in ("when (UTC)", "change", "subject", "old", "new"):
        table.add_column(name, overflow="ellipsis")
    for c in changes:
        kind = c.kind + (f" ({c.confidence:.0%})" if c.confidence is not None else "")
        table.add_row(
            c.detected_at.strftime("%Y-%m-%d %H:%M:%S"),
            Name(kind, style=KIND_STYLE.get(c.kind, "")),
            Name(c.subject or ""),
            Name(_value(c.old_value)),
            Name(_value(c.new_value)),
        )
    console.print(table)


def print_blast(console: Console, radius: Any) -> None:
    root = radius.root + (f".{radius.column}" if radius.column else "")
    if not radius.entities:
        console.print(f"Nothing downstream depends on [bold]{root}[/].")
        return
    console.print(
        f"[bold]{root}[/]: {len(radius.entities)} downstream assets, "
        f"{len(radius.columns)} columns, {len(radius.dashboards)} dashboards, {len(radius.charts)} charts"
    )
    table = Table()
    for name in ("hops", "asset", "type", "via", "certainty"):
        table.add_column(name, overflow="ellipsis")
    for imp in radius.entities:
        via = imp.path[-2] if len(imp.path) >= 2 else radius.root
        kind = SHORT_TYPE.get(imp.type or "", imp.type or "?")
        table.add_row(str(imp.distance), Name(imp.fqn), Name(kind), Name(via), imp.certainty)
    console.print(table)
    if radius.columns:
        cols = Table(title="columns that break", title_justify="left")
        cols.add_column("hops")
        cols.add_column("column", overflow="ellipsis")
        for c in radius.columns:
            cols.add_row(str(c.distance), Name(f"{c.entity_fqn}.{c.column}"))
        console.print(cols)


def print_runs(console: Console, runs: list[Any]) -> None:
    table = Table(title="sync runs", title_justify="left")
    for name in ("id", "started (UTC)", "mode", "status", "seconds", "snapshots", "changes"):
        figure = name in ("seconds", "snapshots", "changes")
        table.add_column(name, overflow="ellipsis", justify="right" if figure else "left")
    for r in runs:
        stats = r.stats or {}
        table.add_row(
            str(r.id),
            r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.mode,
            Text(r.status, style="red" if r.error else ""),
            str(stats.get("duration_seconds", "")),
            str(stats.get("snapshots_written", "")),
            str(sum((stats.get("changes_by_kind") or {}).values())),
        )
    console.print(table)
    for r in runs:  # errors are sentences: under the table, where they wrap at spaces like any text
        if r.error:
            console.print(Text(f"run {r.id}: ").append(plain(r.error, 300), style="red"))
