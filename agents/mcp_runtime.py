"""The process's MCP servers: one toolbox on its own event-loop thread, shared by every question and every sync.

Each caller (the CLI, a Slack listener, the scheduler's tick) runs its own `asyncio.run`, so sessions opened on a
caller's loop would die with it and a new server process would start for every question. The hub keeps one
`MCPToolbox` on a background loop for the life of the process (replaced only when the configuration changes);
callers get a `ToolboxHandle` that forwards to it and keeps its own budget of outside-context seconds, so a
question or a sync never waits on MCP longer than its budget, however slow or black-holed the upstream is.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

from agents.config import AgentConfig
from agents.mcp_config import MCPOptions, ServerSpec, load_servers

if TYPE_CHECKING:  # the MCP SDK itself is imported only once a server is configured
    from agents.mcp import MCPToolbox
    from agents.mcp_results import ToolResult, WebResult

log = logging.getLogger(__name__)
T = TypeVar("T")
_CLOSE_TIMEOUT = 15.0


class _Hub:
    """A background event loop that owns one toolbox (and so every server session) until `close()`."""

    def __init__(self, key: str, toolbox: MCPToolbox, start_timeout: float) -> None:
        self.key, self.toolbox, self.start_timeout = key, toolbox, start_timeout
        self.closed = False
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="mcp-sessions", daemon=True)
        self._thread.start()
        # warm: the servers start now, not at the first question (health says "starting" from here on)
        self.submit(toolbox.start(wait=False)).result(_CLOSE_TIMEOUT)
        self.started = self.submit(toolbox.start(wait=True))  # each server's first start has settled

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coro` on the hub's loop (from any thread); RuntimeError once the hub is closed."""
        if self.closed:
            coro.close()
            raise RuntimeError("the MCP sessions are closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def _drain(self, timeout: float) -> None:
        """Close the toolbox, then cancel what is left on the loop, so no caller waits on a stopped loop."""
        await self.toolbox.aclose()
        left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=timeout)

    def close(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Stop every server, then the loop (bounded)."""
        if self.closed:
            return
        try:
            self.submit(self._drain(timeout)).result(timeout * 2)
        except Exception as exc:  # closing must never fail the caller (a new config, or interpreter exit)
            log.warning("closing the MCP sessions: %s", type(exc).__name__)
        self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


class ToolboxHandle:
    """What one question or one sync gets: the shared toolbox's calls, bounded by this caller's budget.

    `spent_seconds` is the time this caller waited on outside context; once it reaches `budget_seconds`, calls
    return at once with a "budget spent" reason (a call in flight is cut off at the budget). The servers' first
    start (only in a process that did not warm them up) is waited for apart, within the start-up timeout."""

    def __init__(self, hub: _Hub, budget_seconds: float | None = None, per: str = "call") -> None:
        self._hub = hub
        self.budget_seconds = budget_seconds
        self.per = per
        self.spent_seconds = 0.0
        self.last_degraded: str | None = None

    def remaining(self) -> float | None:
        """Seconds left in the budget (None: unbounded)."""
        return None if self.budget_seconds is None else self.budget_seconds - self.spent_seconds

    def health(self) -> dict[str, dict[str, Any]]:
        return self._hub.toolbox.health()

    async def list_tools(self) -> list[dict[str, Any]]:
        return await self._forward(self._hub.toolbox.list_tools, lambda _reason: [])

    async def call(self, name: str, args: Mapping[str, Any] | None = None) -> ToolResult:
        from agents.mcp_results import ToolResult

        return await self._forward(lambda: self._hub.toolbox.call(name, args), ToolResult.failure)

    async def search(self, query: str, *, max_results: int = 5) -> list[WebResult]:
        hits, self.last_degraded = await self._forward(
            lambda: self._hub.toolbox.search_with_reason(query, max_results=max_results), lambda reason: ([], reason)
        )
        return hits

    async def _forward(self, make: Callable[[], Coroutine[Any, Any, T]], fallback: Callable[[str], T]) -> T:
        await self._first_start()
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            return fallback(self._spent())
        started = time.monotonic()
        future: concurrent.futures.Future[T] | None = None
        try:
            future = self._hub.submit(make())
            return await asyncio.wait_for(asyncio.wrap_future(future), remaining)
        except TimeoutError:  # wait_for cancelled the call on the hub's loop too
            return fallback(self._spent())
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future is not None and future.cancelled() and task is not None and not task.cancelling():
                return fallback("the MCP sessions were closed")  # the hub's loop cancelled it, not our caller
            raise
        except Exception as exc:  # outside context is optional: nothing here may fail a question or a sync
            from agents.mcp_session import describe

            log.warning("MCP call failed: %s", describe(exc))
            return fallback(describe(exc))
        finally:
            self.spent_seconds += time.monotonic() - started

    async def _first_start(self) -> None:
        if self._hub.started.done():
            return
        waiting = asyncio.wrap_future(self._hub.started)
        try:
            await asyncio.wait([waiting], timeout=self._hub.start_timeout + 5)
        finally:
            if not waiting.done():
                waiting.cancel()  # (and the hub's wait with it) so nothing calls back into a closed loop

    def _spent(self) -> str:
        return f"outside-context budget of {self.budget_seconds:g}s per {self.per} spent"


_lock = threading.Lock()
_hub: _Hub | None = None


def toolbox_for(
    config: AgentConfig,
    env: Mapping[str, str],
    options: MCPOptions,
    *,
    budget_seconds: float | None = None,
    per: str = "call",
) -> ToolboxHandle | None:
    """A handle on the process's shared toolbox for the servers `config` names; None when there are none.

    Raises `MCPConfigError` for a bad config file (as `load_servers` does)."""
    servers = load_servers(config, env, options)
    if not servers:
        return None
    return shared(servers, config, options, budget_seconds=budget_seconds, per=per)


def shared(
    servers: list[ServerSpec],
    config: AgentConfig,
    options: MCPOptions,
    *,
    budget_seconds: float | None = None,
    per: str = "call",
) -> ToolboxHandle:
    """A handle on the shared toolbox for `servers`, starting it (or replacing one for another configuration)."""
    from agents.mcp import MCPToolbox

    global _hub
    key = _key(servers, config, options)
    old = None
    with _lock:
        if _hub is None or _hub.closed or _hub.key != key:
            toolbox = MCPToolbox(
                servers,
                allowed_tools=config.mcp_allowed_tools,
                call_timeout=config.mcp_call_timeout_seconds,
                max_chars=config.web_text_max_chars,
                connect_timeout=options.start_timeout_seconds,
                extra_env=options.env,
            )
            old, _hub = _hub, _Hub(key, toolbox, options.start_timeout_seconds)
        hub = _hub
    if old is not None:
        old.close()
    return ToolboxHandle(hub, budget_seconds, per)


def health() -> dict[str, dict[str, Any]]:
    """Each MCP server's health for the status view: `{name: {state: up|starting|down, error, since, restarts,
    tools, retry_in_seconds}}`; {} before the first question or sync, or when no server is configured."""
    hub = _hub
    return hub.toolbox.health() if hub is not None and not hub.closed else {}


def close() -> None:
    """Stop the shared servers (at exit; tests call it too)."""
    global _hub
    with _lock:
        hub, _hub = _hub, None
    if hub is not None:
        hub.close()


atexit.register(close)


def _key(servers: list[ServerSpec], config: AgentConfig, options: MCPOptions) -> str:
    """A digest of everything the shared toolbox was built from (secrets included, so only as a hash)."""
    document = {
        "servers": [{**asdict(s), "env": dict(s.env), "headers": dict(s.headers)} for s in servers],
        "tools": sorted(config.mcp_allowed_tools),
        "timeouts": [config.mcp_call_timeout_seconds, options.start_timeout_seconds, config.web_text_max_chars],
        "env": dict(options.env),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()
