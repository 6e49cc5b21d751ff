"""How every `dnabot` command fails, and what every command module shares.

A failure is one line and an exit code (2 for bad input, 1 otherwise), with tracebacks only with `--debug`; the
modules share the consoles, `--json` and JSON output. Kept free of heavy imports, like `bot.cli.commands`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from bot.core.timeparse import TimeArgError
from storage.errors import (
    ColumnNotFound,
    DatasetNotFound,
    DnaBotError,
    IncidentNotFound,
    InvalidTransition,
    OMConfigError,
    SettingsInvalid,
    SnapshotNotFound,
)

if TYPE_CHECKING:
    from bot.core.settings import Settings

console = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]

# Errors in what the user typed or configured: exit 2 (README, "Exit codes"). Other DnaBotErrors are the
# store's or a server's: exit 1.
BAD_INPUT: tuple[type[Exception], ...] = (
    DatasetNotFound,
    ColumnNotFound,
    InvalidTransition,
    IncidentNotFound,
    SnapshotNotFound,
    OMConfigError,
    SettingsInvalid,
    TimeArgError,
)
ERROR_CHARS = 500  # an unexpected error's message is cut here: one or two lines, never a page


class State:
    debug = False  # set by `--debug` on every invocation


def emit(data: Any) -> None:
    """Print `data` as indented JSON on stdout (`--json`)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False, markup=True)
    raise typer.Exit(code)


def masked(text: str) -> str:
    """`text` with the configured secrets and every token shape masked (settings that fail to load: shapes only)."""
    from storage.redact import scrub

    try:
        from bot.core.redact import secrets_of

        secrets = secrets_of(settings())
    except Exception:  # the error may be the settings themselves
        secrets = []
    return scrub(text, secrets)


def report(exc: Exception) -> NoReturn:
    """Turn an exception out of a command into one clear line and an exit code (a traceback only with --debug)."""
    from rich.markup import escape

    if isinstance(exc, (typer.Exit, typer.Abort, typer.TyperException)):
        raise exc  # typer's own exits and usage errors: already the right words and code
    if isinstance(exc, BAD_INPUT):
        fail(escape(str(exc)), 2)
    if isinstance(exc, DnaBotError):
        fail(escape(str(exc)), 1)
    if State.debug:
        import traceback

        sys.stderr.write(masked("".join(traceback.format_exception(exc))))
        raise typer.Exit(1)
    message = " ".join(str(exc).split()) or "no message"
    text = masked(f"{type(exc).__name__}: {message}")
    if len(text) > ERROR_CHARS:
        text = text[: ERROR_CHARS - 1] + "…"
    err.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True, highlight=False)
    err.print("(run with --debug for the traceback)", highlight=False)
    raise typer.Exit(1)


def guard(fn: Callable[[], Any]) -> Any:
    """Run a command body and turn any error into one clear line and an exit code."""
    try:
        return fn()
    except Exception as exc:
        report(exc)


class Guarded(TyperGroup):
    """The command group: every command's errors, `guard`ed or not, go through `report`."""

    def invoke(self, ctx: Any) -> Any:  # click's Context (typer vendors click in a private module)
        try:
            return super().invoke(ctx)
        except Exception as exc:
            report(exc)


def settings() -> Settings:
    """The settings, read once; invalid ones become one line naming the variable (exit 2)."""
    from pydantic import ValidationError

    from bot.core.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ())) or "settings"
            problems.append(f"{where}: {e.get('msg')}")  # never the input: it may be a secret
        raise SettingsInvalid("invalid setting " + "; ".join(problems)) from None
