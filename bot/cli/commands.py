"""The `dnabot` command line: migrate, sync, and offline questions to the DNA store (dna, timeline, blast).

Only typer, rich and tiny modules are imported here, so that `dnabot --help` starts at once: each command
imports the store, the client, the pipeline or Slack inside its body. Every command runs inside
`cli_guard.Guarded`, which turns a domain error into one line and an exit code, and any other error into one
line (`--debug` shows the traceback)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli import doctor as cli_doctor
from bot.cli import ops as cli_ops
from bot.cli.guard import Guarded, JsonOpt, State, console
from bot.cli.guard import emit as _emit
from bot.cli.guard import fail as _fail
from bot.cli.guard import guard as _guard
from bot.cli.guard import settings as _settings
from bot.core.timeparse import TimeArgError, parse_instant, parse_since, parse_span

if TYPE_CHECKING:
    from bot.core.settings import Settings

app = typer.Typer(
    cls=Guarded,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
    rich_markup_mode=None,  # plain help: rendering it with rich costs ~0.2 s of start-up per command
    help="DNA Bot: data incident response on OpenMetadata. Every command that prints data has --json for scripts.",
)


def get_settings() -> Settings:
    """`bot.core.settings.get_settings`, imported only when a command runs (pydantic's errors pass through: most
    commands call `_settings()`, which turns them into one line)."""
    from bot.core.settings import get_settings as read

    return read()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dnabot")
    except PackageNotFoundError:
        return "unknown (not installed: run `make install`)"


def _print_version(value: bool) -> None:
    if value:
        console.print(f"dnabot {_version()}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version of dnabot and exit."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="On an unexpected error, show the full traceback (secrets masked).")
    ] = False,
) -> None:
    """DNA Bot: data incident response on OpenMetadata. Every command that prints data has --json for scripts."""
    State.debug = debug


@app.command()
def migrate(as_json: JsonOpt = False) -> None:
    """Create or upgrade the database schema (Alembic) at DATABASE_URL (default: ./dnabot.db)."""

    def body() -> None:
        from bot.core import services

        revision = services.migrate(_settings())
        if as_json:
            _emit({"revision": revision})
        else:
            console.print(f"database at revision [bold]{revision}[/]")

    _guard(body)


@app.command()
def sync(
    full: Annotated[bool, typer.Option("--full", help="Re-read everything, lineage included.")] = False,
    incremental: Annotated[
        bool, typer.Option("--incremental", help="Only what the change-events feed reports.")
    ] = False,
    no_incidents: Annotated[
        bool, typer.Option("--no-incidents", help="Update the store only; skip the incident pipeline.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Sync OpenMetadata (OPENMETADATA_URL, OPENMETADATA_TOKEN) into the DNA store."""
    if full and incremental:
        _fail("choose one of --full and --incremental", 2)
    mode = "full" if full else "incremental" if incremental else "auto"

    def body() -> None:
        import asyncio

        from bot.cli import terminal
        from bot.core import services

        settings = _settings()
        services.require_openmetadata(settings)  # before the progress display: a config error is its one line
        if as_json:
            result = asyncio.run(services.sync(settings, mode=mode, incidents=not no_incidents))
            _emit(result.to_dict())
        else:
            with terminal.SyncProgress(console) as progress:
                result = asyncio.run(
                    services.sync(settings, mode=mode, progress=progress.update, incidents=not no_incidents)
                )
            terminal.print_sync_result(console, result)
        if not result.ok:
            raise typer.Exit(1)

    _guard(body)


@app.command()
def dna(
    fqn: Annotated[str, typer.Argument(help="Dataset FQN or a unique part of it (e.g. orders).")],
    at: Annotated[str | None, typer.Option("--at", help="Show the DNA as it was at this instant (ISO).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the DNA snapshot of an asset: genes and trust score with its factors."""

    def body() -> None:
        from bot.cli import terminal
        from bot.core import services

        when = parse_instant(at) if at else None
        view = services.dna(_settings(), fqn, when)
        if as_json:
            _emit(services.snapshot_json(view))
        else:
            terminal.print_dna(console, view, when)

    _guard(body)


@app.command()
def timeline(
    fqn: Annotated[str, typer.Argument(help="Dataset FQN or a unique part of it.")],
    since: Annotated[str, typer.Option("--since", help="A span back from now (7d, 12h) or an instant.")] = "7d",
    as_json: JsonOpt = False,
) -> None:
    """List what changed on an asset since a time: schema, lineage, ownership, quality."""

    def body() -> None:
        from bot.cli import terminal
        from bot.core import services

        start = parse_since(since, datetime.now(UTC))
        resolved, changes = services.timeline(_settings(), fqn, start)
        if as_json:
            _emit(
                {
                    "fqn": resolved,
                    "since": start.isoformat(),
                    "changes": [services.change_json(c) for c in changes],
                }
            )
        else:
            terminal.print_timeline(console, resolved, start, changes)

    _guard(body)


@app.command()
def blast(
    fqn: Annotated[str, typer.Argument(help="Dataset FQN or a unique part of it.")],
    column: Annotated[str | None, typer.Option("--column", "-c", help="Start from one column.")] = None,
    depth: Annotated[int | None, typer.Option("--depth", min=1, help="Stop after this many hops.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show everything downstream that depends on an asset (or one of its columns)."""

    def body() -> None:
        from bot.cli import terminal
        from bot.core import services

        radius = services.blast(_settings(), fqn, column, depth)
        if as_json:
            _emit(services.blast_json(radius))
        else:
            terminal.print_blast(console, radius)

    _guard(body)


@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="How many runs, newest first.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """List the last sync runs with their status and figures."""

    def body() -> None:
        from bot.cli import terminal
        from bot.core import services

        items = services.runs(_settings(), limit)
        if as_json:
            _emit([services.run_json(r) for r in items])
        else:
            terminal.print_runs(console, items)

    _guard(body)


@app.command()
def incidents(
    which: Annotated[str, typer.Argument(help="open (default), all, acknowledged, snoozed or resolved.")] = "open",
    as_json: JsonOpt = False,
) -> None:
    """List incidents, most severe first."""
    if which not in {"open", "all", "acknowledged", "snoozed", "resolved"}:
        _fail(f"'{which}' is not a status: use open, all, acknowledged, snoozed or resolved", 2)

    def body() -> None:
        from bot.cli import terminal_incidents
        from bot.core import services

        items = services.incidents_list(_settings(), which)
        if as_json:
            _emit([services.plain(i) for i in items])
        else:
            terminal_incidents.print_incidents(console, items, which)

    _guard(body)


IncidentArg = Annotated[int, typer.Argument(help="The incident id (see `dnabot incidents`).")]


@app.command()
def incident(incident_id: IncidentArg, as_json: JsonOpt = False) -> None:
    """Show one incident: what broke, why, the simulated fix, the texts and the history."""

    def body() -> None:
        from bot.cli import terminal_incidents
        from bot.core import services

        detail = services.incident_detail(_settings(), incident_id)
        if as_json:
            _emit(services.plain(detail))
        else:
            terminal_incidents.print_incident(console, detail)

    _guard(body)


ByOpt = Annotated[str, typer.Option("--by", help="Who is acting (recorded in the incident's history).")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", "-r", help="Why (recorded in the history).")]


def _transition(incident_id: int, status: str, by: str, reason: str | None, as_json: bool, **kw: object) -> None:
    def body() -> None:
        from bot.core import services
        from bot.delivery import writeback

        view = writeback.set_incident_status(_settings(), incident_id, status, actor=by, reason=reason, **kw)
        if as_json:
            _emit(services.plain(view))
        else:
            until = f" until {view.snoozed_until.isoformat()}" if view.snoozed_until else ""
            console.print(f"incident {view.id} is now {view.status}{until} (v{view.version})")

    _guard(body)


@app.command()
def ack(incident_id: IncidentArg, by: ByOpt = "cli", reason: ReasonOpt = None, as_json: JsonOpt = False) -> None:
    """Acknowledge an incident: someone is on it."""
    _transition(incident_id, "acknowledged", by, reason, as_json)


@app.command()
def snooze(
    incident_id: IncidentArg,
    span: Annotated[str, typer.Argument(help="How long: 1h, 1d, 1w…")] = "1d",
    by: ByOpt = "cli",
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Snooze an incident; it opens again by itself when the time is up (on the next sync)."""
    try:
        until = datetime.now(UTC) + parse_span(span)
    except TimeArgError as exc:
        _fail(str(exc), 2)
    _transition(incident_id, "snoozed", by, reason, as_json, snoozed_until=until)


@app.command()
def resolve(incident_id: IncidentArg, by: ByOpt = "cli", reason: ReasonOpt = None, as_json: JsonOpt = False) -> None:
    """Resolve an incident by hand (it reopens if its cause shows up again)."""
    _transition(incident_id, "resolved", by, reason, as_json)


@app.command()
def reopen(incident_id: IncidentArg, by: ByOpt = "cli", reason: ReasonOpt = None, as_json: JsonOpt = False) -> None:
    """Reopen an incident."""
    _transition(incident_id, "open", by, reason, as_json)


@app.command()
def why(
    fqn: Annotated[str, typer.Argument(help="The dataset (FQN or a unique part of it), or a whole question.")],
    question: Annotated[str | None, typer.Argument(help='The question, e.g. "why did it break?"')] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask why a dataset broke: answered from the evidence (with an LLM when OPENAI_* is set)."""

    def body() -> None:
        import asyncio

        from bot.cli import terminal_incidents
        from bot.core import services

        answer = asyncio.run(services.why(_settings(), fqn, question))
        if as_json:
            _emit(services.plain(answer))
        else:
            terminal_incidents.print_why(console, answer)

    _guard(body)


@app.command()
def serve(
    port: Annotated[int, typer.Option("--port", help="HTTP mode: the port for /slack/events.")] = 3000,
    host: Annotated[str, typer.Option("--host", help="HTTP mode: the address to listen on.")] = "0.0.0.0",
    socket_mode: Annotated[
        bool | None, typer.Option("--socket/--http", help="Default: Socket Mode when SLACK_APP_TOKEN is set.")
    ] = None,
) -> None:
    """Run the Slack bot: Socket Mode or HTTP, with scheduled syncs that open and update incident threads."""

    def body() -> None:
        from pydantic import ValidationError
        from rich.markup import escape

        from bot.core import preflight
        from bot.runtime import serve as runtime

        try:
            try:
                settings = get_settings()
            except ValidationError as exc:
                raise preflight.invalid_values(exc) from None
            runtime.serve(settings, host=host, port=port, socket_mode=socket_mode)
        except preflight.SettingsProblems as exc:  # nothing was touched: bad input, exit 2
            _fail(escape(str(exc)), exc.exit_code)

    _guard(body)


@app.command()
def simulator(
    catalog: Annotated[
        str,
        typer.Option("--catalog", help="demo, sample (OpenMetadata's sample data) or a catalog JSON path."),
    ] = "demo",
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to listen on (OpenMetadata's is 8585).")] = 8585,
    token: Annotated[str, typer.Option("--token", help="The bearer token clients must send.")] = "sim-token",
    om_version: Annotated[
        str,
        typer.Option("--om-version", help="The OpenMetadata version to behave as (1.5 to 2.x), e.g. 1.8.12 or 2.0.7."),
    ] = "1.13.6",
) -> None:
    """Serve the OpenMetadata-compatible simulator (for demos and local development)."""

    def body() -> None:
        import gc

        import simulator as sim
        from bot.core import services
        from storage.openmetadata.versions import profile_for

        profile_for(om_version)  # an unsupported version stops here, with the one sentence it raises
        loaded = services.load_catalog(catalog)
        gc.freeze()  # the catalog lives as long as the server: keep the cyclic GC from rescanning it
        sim.serve(loaded, host=host, port=port, token=token, version=om_version)

    _guard(body)


@app.command()
def demo(
    out: Annotated[str, typer.Option("--out", help="Folder for the demo's files.")] = "demo-out",
) -> None:
    """Run the demo on embedded defaults: simulator, sync, a breaking rename upstream, the incident, the revert."""

    def body() -> None:
        from bot.cli import demo as demo_module

        demo_module.run(console, out)

    _guard(body)


def main() -> None:
    """Console-script entry point."""
    app()


cli_doctor.register(app)  # `doctor`, listed after the commands above
cli_ops.register(app)  # `outbox` and `outbox-retry`
