"""`dnabot doctor`: check a setup (store, OpenMetadata, Slack, LLM, MCP) and say how to fix what is not right."""

from __future__ import annotations

import typer

from bot.cli.guard import JsonOpt, console
from bot.cli.guard import emit as _emit

STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def register(app: typer.Typer) -> None:
    """Add `doctor` to the `dnabot` command line."""
    app.command()(doctor)


def doctor(as_json: JsonOpt = False) -> None:
    """Check the setup, one line per check with the fix when it fails; exit code 1 when something blocks serving."""
    import logging

    from rich.markup import escape

    from bot.core import doctor as checks
    from bot.core.settings import get_settings

    quiet = logging.NullHandler()  # the report says it all: no stray warnings of the clients beside it
    root = logging.getLogger()
    if not root.handlers:  # (logging that was set up, e.g. for debugging, is left as it is)
        root.addHandler(quiet)
    try:
        settings, results = checks.load_settings(get_settings)
        if settings is not None:
            results = checks.run(settings)
    finally:
        root.removeHandler(quiet)
    if as_json:
        _emit([c.to_dict() for c in results])
    else:
        width = max(len(c.name) for c in results)
        for c in results:
            # details are data, not markup: brackets in them (a URL, an error) print as they are
            fix = f" [dim]→ fix:[/] {escape(c.fix)}" if c.fix and c.status != "ok" else ""
            line = f"[{STYLE[c.status]}]{c.status:<4}[/]  {c.name:<{width}}  {escape(c.detail)}{fix}"
            console.print(line, soft_wrap=True, highlight=False)
        counts = {s: sum(1 for c in results if c.status == s) for s in checks.STATUSES}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        verdict = "something blocks serving" if checks.blocked(results) else "nothing blocks serving"
        console.print(f"{summary}: {verdict}", highlight=False)
    if checks.blocked(results):
        raise typer.Exit(1)
