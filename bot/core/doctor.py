"""`dnabot doctor`: every check of a setup (store, OpenMetadata, Slack, LLM, MCP), each time-boxed, as plain results.

A check never raises: it returns `Check`s whose detail is masked for every configured secret. Only `fail` blocks
serving; optional parts (LLM, MCP, the OpenMetadata webhook) report `skip` when not configured and `warn` when broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.core import doctor_remote
from bot.core.doctor_report import (
    CHECK_SECONDS,
    FAIL,
    MIGRATE,
    OK,
    SKIP,
    STATUSES,
    WARN,
    Check,
    blocked,
    fail,
    ok,
    short,
    skip,
    warn,
)
from bot.core.redact import scrub, secrets_of
from bot.core.settings import Settings

__all__ = ["FAIL", "OK", "SKIP", "STATUSES", "WARN", "Check", "blocked", "load_settings", "run", "run_checks"]

# ---- the settings ---------------------------------------------------------------------------------------------


def load_settings(read: Callable[[], Settings]) -> tuple[Settings | None, list[Check]]:
    """The settings, or the one failing check that names each value the environment or `.env` got wrong (its
    variable and the rule, never the value: it may be a secret)."""
    from pydantic import ValidationError

    try:
        return read(), []
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error.get("loc") else "?"
            alias = Settings.model_fields[field].validation_alias if field in Settings.model_fields else None
            variable = alias if isinstance(alias, str) else field.upper()
            problems.append(f"{variable}: {error['msg']}")
        fix = "correct these in the environment or .env (see the README's Settings)"
        return None, [fail("settings", "; ".join(problems), fix)]


# ---- the store ------------------------------------------------------------------------------------------------


def check_database(settings: Settings, *, timeout: float = CHECK_SECONDS) -> list[Check]:
    """The store: reachable, and its schema at the code's head revision (a missing SQLite file is not created)."""
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    from storage.persistence import db

    url = db.normalise_url(settings.database_url)
    shown = url.render_as_string(hide_password=True)
    sqlite = url.get_backend_name() == "sqlite"
    if sqlite and url.database not in (None, "", ":memory:") and not Path(url.database).exists():
        return [
            warn("database", f"no store yet at {shown}", MIGRATE),
            skip("database schema", "no store to check"),
        ]
    # a plain engine (no WAL pragma, no pool pre-ping): looking must change nothing
    connect_args: dict[str, Any] = {"timeout": timeout} if sqlite else {"connect_timeout": max(1, int(timeout))}
    try:
        engine = create_engine(url, connect_args=connect_args)
    except Exception as exc:  # a URL naming an unknown driver, an unparsable option
        return [
            fail("database", f"DATABASE_URL cannot be used: {short(exc)}", "fix DATABASE_URL"),
            skip("database schema", "no store to check"),
        ]
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current, head = db.current_revision(engine), db.head_revision()
    except (SQLAlchemyError, OSError) as exc:
        reason = short(getattr(exc, "orig", None) or exc)
        return [
            fail("database", f"cannot reach {shown}: {reason}", "check DATABASE_URL and that the database is up"),
            skip("database schema", "no store to check"),
        ]
    finally:
        engine.dispose()
    reached = ok("database", f"{url.get_backend_name()} at {shown}")
    known = {rev.revision for rev in ScriptDirectory.from_config(db.alembic_config()).walk_revisions()}
    if current == head:
        return [reached, ok("database schema", f"at the newest revision {head}")]
    if current is None:
        return [reached, warn("database schema", "the store is empty (never migrated)", MIGRATE)]
    if current not in known:
        detail = f"revision {current} is newer than this DNA Bot (it knows up to {head})"
        return [reached, fail("database schema", detail, "upgrade DNA Bot to the release that migrated this store")]
    return [reached, warn("database schema", f"at revision {current}, the code needs {head}", MIGRATE)]


# ---- LLM ------------------------------------------------------------------------------------------------------


async def check_llm(settings: Settings, *, timeout: float = 10.0) -> list[Check]:
    """The optional LLM: skipped when OPENAI_* is not set, else the model must answer a one-token prompt."""
    from dataclasses import replace

    from agents.llm import LLMClient, LLMError
    from bot.core.settings import agent_config

    config = agent_config(settings).llm
    if config is None:
        return [skip("llm", "not configured (OPENAI_API_KEY / OPENAI_BASE_URL): answers use rules and templates")]
    client = LLMClient(replace(config, timeout_seconds=min(config.timeout_seconds, timeout), max_retries=0))
    where = config.base_url or "api.openai.com"
    fix = "check OPENAI_BASE_URL, OPENAI_API_KEY and DNABOT_LLM_MODEL (answers fall back to rules meanwhile)"
    started = time.monotonic()
    try:
        prompt = [{"role": "user", "content": "Reply with the single word OK."}]
        await client.chat_with_tools(prompt, [], max_tokens=1)
    except LLMError as exc:
        return [warn("llm", f"model {config.model} at {where}: {exc.reason}", fix)]
    finally:
        await client.aclose()
    return [ok("llm", f"model {config.model} at {where} answered in {time.monotonic() - started:.1f} s")]


# ---- MCP ------------------------------------------------------------------------------------------------------


async def check_mcp(settings: Settings, *, timeout: float = 20.0) -> list[Check]:
    """The optional MCP servers: skipped without keys or a config; else each must start and list its tools."""
    from agents.mcp_config import MCPConfigError, load_servers
    from bot.core.settings import agent_config, mcp_options, process_env

    config, options = agent_config(settings), mcp_options(settings)
    try:
        servers = load_servers(config, process_env(), options)
    except MCPConfigError as exc:
        return [warn("mcp", short(exc), "fix DNABOT_MCP_CONFIG (outside context is off meanwhile)")]
    if not servers:
        return [skip("mcp", "no MCP servers (TAVILY_API_KEY, BRIGHTDATA_API_TOKEN or DNABOT_MCP_CONFIG)")]
    from agents.mcp import MCPToolbox

    start = min(options.start_timeout_seconds, timeout)
    toolbox = MCPToolbox.from_config(config, process_env(), options, connect_timeout=start)
    try:
        async with asyncio.timeout(start + 5):
            await toolbox.start(wait=True)
            tools = await toolbox.list_tools()
    except TimeoutError:
        tools = []
    finally:
        health = toolbox.health()
        await toolbox.aclose()
    checks = []
    for spec in servers:
        name, state = f"mcp {spec.name}", health.get(spec.name, {})
        mine = sorted(t["name"] for t in tools if t["server"] == spec.name)
        if state.get("state") == "up" and mine:
            checks.append(ok(name, f"up, allow-listed tools: {', '.join(mine)}"))
        elif state.get("state") == "up":
            allowed = ", ".join(sorted(config.mcp_allowed_tools))
            checks.append(
                warn(name, "up, but it lists none of the allow-listed tools", f"point it at one of {allowed}")
            )
        else:
            reason = spec.problem or state.get("error") or f"did not start within {start:g} s"
            fix = "install the servers (make mcp), check their keys, or fix the server in DNABOT_MCP_CONFIG"
            checks.append(warn(name, f"{state.get('state', 'down')}: {reason}", fix))
    return checks


# ---- running them all -----------------------------------------------------------------------------------------

Group = Callable[[Settings], Awaitable[list[Check]]]


async def _boxed(name: str, group: Group, settings: Settings, seconds: float, optional: bool) -> list[Check]:
    """One group under its time box; a group that overruns or breaks is one line, never a traceback."""
    try:
        async with asyncio.timeout(seconds):
            return await group(settings)
    except TimeoutError:
        detail, fix = f"no answer within {seconds:g} s", "check the addresses in the settings and the network"
    except Exception as exc:  # a check is a report: whatever went wrong is said, not raised
        detail, fix = f"the check failed: {short(exc)}", "run `dnabot doctor` again; report it if it persists"
    return [warn(name, detail, fix) if optional else fail(name, detail, fix)]


def _threaded(fn: Callable[[Settings], list[Check]]) -> Group:
    """A blocking group on a daemon thread of its own: one that overruns its time box is left behind, never waited
    for (`asyncio.to_thread` would hold the exit of `asyncio.run` until it ends)."""

    async def run(settings: Settings) -> list[Check]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Check]] = loop.create_future()

        def settle(result: list[Check] | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result or [])

        def work() -> None:
            try:
                result, error = fn(settings), None
            except Exception as exc:  # handed to the caller, who reports it as one line
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: the report was printed without us
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=work, name=f"dnabot-doctor-{fn.__name__}", daemon=True).start()
        return await future

    return run


def groups() -> list[tuple[str, Group, float, bool]]:
    """(name, checks, time box in seconds, optional) of every group, in the order they are reported."""
    return [
        ("database", _threaded(check_database), 3 * CHECK_SECONDS, False),
        ("openmetadata", doctor_remote.check_openmetadata, 4 * CHECK_SECONDS, False),
        ("slack", _threaded(doctor_remote.check_slack), 4 * CHECK_SECONDS, False),
        ("llm", check_llm, 3 * CHECK_SECONDS, True),
        ("mcp", check_mcp, 30.0, True),
    ]


def check_local_settings(settings: Settings) -> list[Check]:
    """The settings `dnabot serve` checks before it starts, apart from Slack and OpenMetadata (their groups say
    those): the store's URL, the log level, the routing and MCP files — one line each, in serve's words."""
    from bot.core.preflight import local_problems

    problems = local_problems(settings)
    if not problems:
        return [ok("settings", "DATABASE_URL, DNABOT_LOG_LEVEL and the files named by DNABOT_CONFIG/DNABOT_MCP_CONFIG")]
    return [fail(f"settings {p.setting}", p.message, p.fix) for p in problems]


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, groups side by side, each time-boxed; details and fixes masked for the settings' secrets."""
    planned = groups()
    results = [check_local_settings(settings)]
    results += await asyncio.gather(*(_boxed(n, g, settings, s, o) for n, g, s, o in planned))
    secrets = secrets_of(settings)
    return [
        Check(c.name, c.status, scrub(c.detail, secrets), scrub(c.fix, secrets) if c.fix else None)
        for group in results
        for c in group
    ]


def run(settings: Settings) -> list[Check]:
    """`run_checks` from synchronous code (the CLI)."""
    return asyncio.run(run_checks(settings))
