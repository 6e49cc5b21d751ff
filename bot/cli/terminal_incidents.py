"""Terminal rendering (rich) of incidents, one incident's full story, and why-answers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agents.observer_quality import results_of
from bot.cli.terminal_text import Name, mrkdwn

SEVERITY_STYLE = {"SEV1": "bold white on red", "SEV2": "bold red", "SEV3": "yellow", "SEV4": "cyan"}
STATUS_STYLE = {"open": "red", "acknowledged": "yellow", "snoozed": "blue", "resolved": "green"}


def _sev(severity: str) -> str:
    return f"[{SEVERITY_STYLE.get(severity, '')}]{severity}[/]"


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, '')}]{status}[/]"


def print_incidents(console: Console, items: list[Any], which: str) -> None:
    if not items:
        console.print(f"No {which} incidents." if which != "all" else "No incidents yet.")
        return
    table = Table(title=f"{which} incidents", title_justify="left")
    for name in ("id", "sev", "status", "title", "root", "opened (UTC)"):
        table.add_column(name, overflow="ellipsis")
    for i in items:
        root = i.root_fqn + (f".{i.root_column}" if i.root_column else "")
        table.add_row(
            str(i.id),
            _sev(i.severity),
            _status(i.status),
            Name(i.title),
            Name(root),
            i.opened_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
    console.print("Details: dnabot incident <id>")


def _breaks_table(breaks: list[dict[str, Any]], limit: int = 15) -> Table:
    table = Table(title="what breaks downstream", title_justify="left")
    for name in ("hops", "asset", "column", "why"):
        table.add_column(name, overflow="ellipsis")
    for b in breaks[:limit]:
        reason = str(b.get("reason", "")).replace("_", " ")
        table.add_row(str(b.get("distance", "")), Name(b["entity_fqn"]), Name(b.get("column") or ""), Text(reason))
    if len(breaks) > limit:
        table.add_row("", f"…and {len(breaks) - limit} more", "", "")
    return table


def _when(entry: dict[str, Any]) -> str:
    for key, how in (("measured_at", "measured"), ("seen_at", "seen by the sync")):
        try:
            at = datetime.fromisoformat(str(entry.get(key)))
        except ValueError:
            continue
        return f"{at.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')} ({how})"
    return ""


def _results_table(results: list[dict[str, Any]], limit: int = 10) -> Table:
    """Each failing test's latest result; OpenMetadata's text goes in as plain Text, never as rich markup."""
    table = Table(title="test results", title_justify="left")
    for name in ("test", "on", "result", "when (UTC)"):
        table.add_column(name, overflow="ellipsis")
    for e in results[:limit]:
        where = ".".join(str(p) for p in (str(e.get("entity_fqn") or "").rsplit(".", 1)[-1], e.get("column")) if p)
        values = ", ".join(f"{v.get('name')}={v.get('value')}" for v in e.get("values") or [])
        text = " · ".join(str(x) for x in (e.get("text"), values) if x)
        test = str(e.get("test_fqn") or "?").rsplit(".", 1)[-1]
        table.add_row(Name(test), Name(where), Text(text), Text(_when(e)))
    if len(results) > limit:
        table.add_row(f"…and {len(results) - limit} more", "", "", "")
    return table


def _trust_table(trust: dict[str, dict[str, Any]]) -> Table:
    """The trust score now of the incident's assets: the snapshot's less points per open incident (domain/trust.py)."""
    table = Table(title="trust now (open incidents take points off)", title_justify="left")
    for name in ("asset", "now", "snapshot", "open incidents"):
        table.add_column(name)
    for fqn, t in trust.items():
        now, stored = t.get("score"), t.get("stored")
        ids = ", ".join(f"#{i}" for i in t.get("open_incidents") or ())
        table.add_row(Name(fqn), "-" if now is None else str(now), "-" if stored is None else str(stored), ids)
    return table


def print_incident(console: Console, detail: Any) -> None:
    inc = detail.incident
    d = inc.details or {}
    head = Text.from_markup(f"{_sev(inc.severity)} {_status(inc.status)}  ").append(inc.title, style="bold")
    head.append(f"\nincident {inc.id} · {inc.kind} · opened {inc.opened_at.strftime('%Y-%m-%d %H:%M:%S')} UTC")
    head.append(f" · v{inc.version}" + (f" · assigned to {inc.assignee}" if inc.assignee else ""))
    console.print(Panel(head, expand=False))
    text = d.get("explanation") or {}
    if text.get("brief"):
        console.print(Panel(mrkdwn(text["brief"]), title="for stakeholders", expand=False))
    reasons = d.get("severity_reasons") or []
    if reasons:
        console.print(Text("severity: " + "; ".join(reasons)))
    results = results_of(d, detail.links)
    if results:
        console.print(_results_table(results))
    if d.get("breaks"):
        console.print(_breaks_table(d["breaks"]))
    if d.get("dashboards"):
        console.print(Text("dashboards: " + ", ".join(d["dashboards"])))
    for h in (d.get("hypotheses") or [])[:3]:
        console.print(Text(f"cause ({h['confidence']:.0%}): {h['summary']}"))
        if len(h.get("column_path") or ()) > 1:
            console.print(Text("    column path: " + " → ".join(h["column_path"])), soft_wrap=False)
    trust = getattr(detail, "trust", None) or {}
    if trust:
        console.print(_trust_table(trust))
    for f in d.get("fixes") or []:
        resolved, remaining = len(f.get("resolves", [])), len(f.get("remains", []))
        sim = f" — simulated: resolves {resolved} of {resolved + remaining} breaks" if f.get("simulated") else ""
        console.print(Text("fix ", style="bold").append(f"{f['title']}{sim}"))
        if f.get("sql"):  # wrapped at spaces only, so that it still runs when pasted
            console.print(Padding(Text(f["sql"], style="cyan", overflow="ellipsis"), (0, 0, 0, 4)), highlight=False)
    if text.get("technical"):
        source = "LLM, validated" if text.get("source") == "llm" else "template"
        console.print(Panel(mrkdwn(text["technical"]), title=f"for engineers ({source})", expand=False))
    if text.get("fallback_reason"):
        console.print(Text(f"words fell back to the template: {text['fallback_reason']}", style="yellow"))
    for w in d.get("web") or []:
        console.print(Text(f"outside context: {w.get('summary')} ({w.get('url')})"))
    history = Table(title="history", title_justify="left")
    for name in ("when (UTC)", "what", "who", "why"):
        history.add_column(name, overflow="ellipsis")
    for ev in detail.events:
        what = ev.kind.replace("_", " ") + (f" → {ev.status_to}" if getattr(ev, "status_to", None) else "")
        why = ev.reason or ev.note or ""
        history.add_row(ev.at.strftime("%Y-%m-%d %H:%M:%S"), Text(what), Name(ev.actor or ""), mrkdwn(why))
    console.print(history)


def print_why(console: Console, answer: Any) -> None:
    title = f"why: {answer.question}" if answer.question else "why"
    console.print(Panel(mrkdwn(answer.answer), title=Text(title), expand=False))
    if answer.citations:
        console.print(Text("evidence: " + ", ".join(answer.citations)))
    for note in answer.degraded:
        console.print(mrkdwn(note), style="yellow")
    if answer.fallback_reason:
        console.print(Text(f"answered from rules: {answer.fallback_reason}", style="yellow"))
