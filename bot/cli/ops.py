"""`dnabot outbox` and `dnabot outbox-retry`: what the bot still owes Slack and OpenMetadata, and dead letters."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.guard import JsonOpt, console
from bot.cli.guard import emit as _emit
from bot.cli.guard import fail as _fail
from bot.cli.guard import guard as _guard
from bot.cli.guard import settings as _settings

STATUSES = ("pending", "delivered", "skipped", "dead")


def register(app: typer.Typer) -> None:
    """Add `outbox` and `outbox-retry` to the `dnabot` command line."""
    app.command()(outbox)
    app.command("outbox-retry")(outbox_retry)


def outbox(
    status: Annotated[str | None, typer.Option("--status", help="pending, delivered, skipped or dead.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many rows, newest first.")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """List the newest outbox rows: Slack posts, updates and OpenMetadata write-backs owed, delivered or dead."""
    if status is not None and status not in STATUSES:
        _fail(f"'{status}' is not an outbox status: use one of {', '.join(STATUSES)}", 2)

    def body() -> None:
        from rich.table import Table
        from rich.text import Text

        from bot.cli.terminal_text import Name
        from bot.core import services

        rows = services.outbox_rows(_settings(), status, limit)
        if as_json:
            _emit([services.plain(r) for r in rows])
            return
        table = Table(title=f"Outbox ({status or 'all'}, newest first)")
        for column in ("id", "kind", "key", "status", "attempts", "last error"):
            table.add_column(column, overflow="ellipsis")
        for r in rows:  # keys and errors are data: plain text, wrapped between words
            error = Text((r.last_error or "")[:80])
            table.add_row(str(r.id), Name(r.kind), Name(r.key), r.status, str(r.attempts), error)
        console.print(table)

    _guard(body)


def outbox_retry(
    ids: Annotated[
        list[int] | None, typer.Argument(help="Dead rows to retry (see `dnabot outbox --status dead`).")
    ] = None,
    all_dead: Annotated[bool, typer.Option("--all", help="Retry every dead row.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Give dead outbox rows a fresh set of attempts (after fixing what killed them: a channel, a token, …)."""
    if not ids and not all_dead:
        _fail("name the dead rows to retry, or pass --all", 2)

    def body() -> None:
        from bot.core import services

        count = services.outbox_requeue(_settings(), None if all_dead else list(ids or []))
        if as_json:
            _emit({"requeued": count})
        else:
            console.print(f"{count} dead row(s) queued again")

    _guard(body)
