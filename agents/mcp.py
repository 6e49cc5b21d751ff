"""Outside context over MCP: a long-lived, allow-listed, time-boxed toolbox of web search and scrape tools."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx2
import mcp.types as types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from agents import metrics
from agents.config import AgentConfig
from agents.mcp_config import MCPConfigError, ServerSpec, load_servers
from agents.mcp_results import ToolResult, WebResult, cap, content_text, extract_urls, parse_web_results

__all__ = ["MCPConfigError", "MCPToolbox", "ServerSpec", "ToolResult", "WebResult", "load_servers"]

log = logging.getLogger(__name__)

# Codes after which the session is not trusted any more (the transport is gone or a reply never came).
_BROKEN_CODES = frozenset({types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT, types.INTERNAL_ERROR})
# Preferred first: the hyphenated spelling is what tavily-mcp used up to 0.2.12.
_SEARCH_TOOLS = ("tavily_search", "tavily-search", "search_engine")
_CLOSE_TIMEOUT = 10.0


def _canonical(name: str) -> str:
    return name.replace("-", "_")


def _describe(exc: BaseException, spec: ServerSpec | None = None) -> str:
    """A short reason for `exc` (the first cause inside groups), without the secrets a quoted URL could carry."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        text = f"MCP error {exc.code}: {exc.message}"
    else:
        detail = str(exc).strip()
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return spec.redact(text) if spec is not None else text


@dataclass(eq=False)
class _Connection:
    """One server's live session, held open by a background task that owns its transport."""

    spec: ServerSpec
    client: Client | None = None
    tools: dict[str, types.Tool] = field(default_factory=dict)
    state: str = "new"  # new | ok | broken | unavailable
    reason: str | None = None
    reconnect_pending: bool = False  # a reconnect happened and no call has succeeded since
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stop: asyncio.Event | None = None


class MCPToolbox:
    """Created once and reused: `async with MCPToolbox(servers, allowed_tools=…) as tb: await tb.call(…)`.

    Every server connects at enter (concurrently, each within `connect_timeout`); one that fails is marked
    unavailable with its reason and the others keep working. Sessions stay open and are reused for every call.
    A call that times out or whose transport dies marks the session broken; the next call reconnects once, and a
    server that breaks again before any call has succeeded is marked unavailable for good.

    Tool names are routed to the first server, in configuration order, that lists them and is not unavailable;
    a later server exposing the same name is shadowed (logged) rather than renamed, so names stay the ones the
    tool authors documented. Only allow-listed tools are ever listed or called (`tavily-search` and
    `tavily_search` count as the same name). Tool output is returned as data only: nothing in it is parsed for
    instructions, and the toolbox never calls a tool that its caller did not ask for.
    """

    def __init__(
        self,
        servers: Iterable[ServerSpec],
        *,
        allowed_tools: Iterable[str],
        call_timeout: float = 15.0,
        max_chars: int = 4_000,
        connect_timeout: float = 20.0,
    ) -> None:
        self._connections = [_Connection(spec) for spec in servers]
        names = [c.spec.name for c in self._connections]
        if len(set(names)) != len(names):
            raise ValueError(f"MCP server names must be unique: {names}")
        self._allowed = frozenset(_canonical(name) for name in allowed_tools)
        self._call_timeout = call_timeout
        self._max_chars = max_chars
        self._connect_timeout = connect_timeout
        self._holders: set[asyncio.Task[None]] = set()
        self._stack: AsyncExitStack | None = None
        self._startup: asyncio.Future[list[None]] | None = None
        self._closed = False
        self._shadowed: set[tuple[str, str]] = set()
        self.last_degraded: str | None = None

    @classmethod
    def from_config(cls, config: AgentConfig, env: Mapping[str, str], **kwargs: Any) -> MCPToolbox:
        """A toolbox for the servers `config` names (see `load_servers`), with its allow-list, timeout and cap."""
        return cls(
            load_servers(config, env),
            allowed_tools=config.mcp_allowed_tools,
            call_timeout=config.mcp_call_timeout_seconds,
            max_chars=config.web_text_max_chars,
            **kwargs,
        )

    async def __aenter__(self) -> MCPToolbox:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Connect every server (idempotent, safe to call concurrently); failures only mark that server unavailable."""
        if self._closed:
            return
        if self._startup is None:
            self._stack = AsyncExitStack()
            self._stack.push_async_callback(self._stop_holders)
            self._startup = asyncio.ensure_future(asyncio.gather(*(self._connect(c) for c in self._connections)))
        # asyncio.wait, not await: a caller that is cancelled while waiting must not abort everyone's connects.
        await asyncio.wait([self._startup])

    async def aclose(self) -> None:
        """Close every session and wait (bounded) for the server processes to exit."""
        self._closed = True
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
            await asyncio.wait([self._startup])
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    def status(self) -> dict[str, str]:
        """Each server's health: "ok" or "unavailable: <reason>"."""
        report: dict[str, str] = {}
        for conn in self._connections:
            if conn.state == "ok":
                report[conn.spec.name] = "ok"
            elif conn.state == "broken":
                report[conn.spec.name] = f"unavailable: {conn.reason} (reconnects on the next call)"
            elif conn.state == "new":
                report[conn.spec.name] = "unavailable: not connected yet"
            else:
                report[conn.spec.name] = f"unavailable: {conn.reason}"
        return report

    async def list_tools(self) -> list[dict[str, Any]]:
        """The allow-listed tools: `{name, description, input_schema, server}` each."""
        await self.start()
        listed = []
        for name, conn in self._routes().items():
            tool = conn.tools[name]
            listed.append(
                {
                    "name": name,
                    "description": tool.description or "",
                    "input_schema": copy.deepcopy(tool.input_schema),
                    "server": conn.spec.name,
                }
            )
        return listed

    async def call(self, name: str, args: Mapping[str, Any] | None = None) -> ToolResult:
        """Call one allow-listed tool; every failure comes back as `ok=False` with a reason, never as an exception."""
        result, _ = await self._call(name, args)
        return result

    async def search(self, query: str, *, max_results: int = 5) -> list[WebResult]:
        """Web search with `tavily_search`, else `search_engine`; [] with `last_degraded` set when neither works."""
        self.last_degraded = None
        await self.start()
        routes = self._routes()
        candidates = [tool for tool in _SEARCH_TOOLS if tool in routes]
        if not candidates:
            self.last_degraded = f"no web search tool available ({self._status_line()})"
            return []
        failures: list[str] = []
        for tool in candidates:
            args: dict[str, Any] = {"query": query}
            if tool != "search_engine":
                args["max_results"] = min(20, max(5, max_results))  # tavily_search's schema has minimum 5
            result, full_text = await self._call(tool, args)
            if not result.ok:
                failures.append(f"{tool} failed: {result.error}")
                continue
            hits = parse_web_results(full_text, tool, snippet_chars=min(500, self._max_chars))
            if failures:
                self.last_degraded = "; ".join(failures) + f"; used {tool}"
            return hits[:max_results]
        self.last_degraded = "; ".join(failures)
        return []

    # -- internals ------------------------------------------------------------------------------------------------

    def _routes(self) -> dict[str, _Connection]:
        """Allowed tool name → the server that answers it (first in configuration order wins)."""
        routes: dict[str, _Connection] = {}
        for conn in self._connections:
            if conn.state not in ("ok", "broken"):
                continue
            for name in conn.tools:
                if _canonical(name) not in self._allowed:
                    continue
                if name in routes:
                    if (name, conn.spec.name) not in self._shadowed:
                        self._shadowed.add((name, conn.spec.name))
                        log.warning("MCP tool %s of %s is shadowed by %s", name, conn.spec.name, routes[name].spec.name)
                    continue
                routes[name] = conn
        return routes

    def _status_line(self) -> str:
        return ", ".join(f"{name}: {state}" for name, state in self.status().items()) or "no MCP servers configured"

    async def _call(self, name: str, args: Mapping[str, Any] | None) -> tuple[ToolResult, str]:
        if not isinstance(name, str) or _canonical(name) not in self._allowed:
            return ToolResult.failure("tool not allowed"), ""
        if args is not None and not isinstance(args, Mapping):
            return ToolResult.failure("arguments must be an object"), ""
        await self.start()
        conn = self._routes().get(name)
        if conn is None:
            metrics.mcp_failed(name, "unavailable")
            return ToolResult.failure(f"no available server provides {name!r} ({self._status_line()})"), ""
        client = await self._usable_client(conn)
        server = conn.spec.name
        if client is None:
            metrics.mcp_failed(name, "unavailable")
            return ToolResult.failure(f"server {server} unavailable: {conn.reason}", server=server), ""
        started, failure = time.monotonic(), "cancelled"  # stays "cancelled" when a caller's deadline cuts in
        try:
            async with asyncio.timeout(self._call_timeout):
                raw = await client.call_tool(name, dict(args or {}))
            failure = "tool_error" if raw.is_error else ""
        except TimeoutError:
            failure = "timeout"
            reason = f"timed out after {self._call_timeout:g}s"
            self._mark_broken(conn, client, reason)
            return ToolResult.failure(reason, server=server), ""
        except MCPError as exc:
            failure = "mcp_error"
            if exc.code in _BROKEN_CODES:
                self._mark_broken(conn, client, _describe(exc, conn.spec))
            return ToolResult.failure(_describe(exc, conn.spec), server=server), ""
        except Exception as exc:  # a dead transport surfaces as many exception types; none may escape
            failure = "transport"
            self._mark_broken(conn, client, _describe(exc, conn.spec))
            return ToolResult.failure(_describe(exc, conn.spec), server=server), ""
        finally:
            metrics.MCP_CALL_SECONDS.labels(tool=name).observe(time.monotonic() - started)
            if failure:
                metrics.mcp_failed(name, failure)
        conn.reconnect_pending = False
        full_text, links = content_text(raw)
        text = cap(full_text, self._max_chars)
        urls = extract_urls(full_text, links)
        if raw.is_error:
            return ToolResult(
                ok=False, text=text, urls=urls, error=cap(full_text, 500) or "tool error", server=server
            ), ""
        return ToolResult(ok=True, text=text, urls=urls, server=server), full_text

    async def _usable_client(self, conn: _Connection) -> Client | None:
        """The live client, reconnecting a broken session once; None when the server is unavailable."""
        async with conn.lock:
            if conn.state == "ok":
                return conn.client
            if conn.state == "broken":
                if conn.reconnect_pending:
                    conn.state = "unavailable"
                    conn.reason = f"failed again after a reconnect: {conn.reason}"
                else:
                    log.info("MCP server %s: reconnecting after: %s", conn.spec.name, conn.reason)
                    await self._connect(conn)
                    conn.reconnect_pending = conn.state == "ok"
            return conn.client if conn.state == "ok" else None

    def _mark_broken(self, conn: _Connection, client: Client, reason: str) -> None:
        if conn.client is not client:
            return  # a concurrent call already replaced this session
        log.warning("MCP server %s: session broken: %s", conn.spec.name, reason)
        if conn.stop is not None:
            conn.stop.set()  # its holder task closes the transport (and the process) in the background
        conn.client, conn.stop = None, None
        if conn.state == "ok":
            conn.state, conn.reason = "broken", reason

    async def _connect(self, conn: _Connection) -> None:
        """Open `conn` in a holder task within `connect_timeout`; on failure mark it unavailable."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[tuple[Client, dict[str, types.Tool]]] = loop.create_future()
        stop = asyncio.Event()
        holder = asyncio.create_task(self._hold(conn.spec, ready, stop), name=f"mcp-server:{conn.spec.name}")
        self._holders.add(holder)
        holder.add_done_callback(self._holders.discard)
        try:
            async with asyncio.timeout(self._connect_timeout):
                client, tools = await asyncio.shield(ready)
        except BaseException as exc:
            stop.set()
            ready.cancel()  # so the holder's late outcome is dropped, not logged as "never retrieved"
            holder.cancel()
            if isinstance(exc, TimeoutError):
                conn.reason = f"no connection within {self._connect_timeout:g}s"
            elif isinstance(exc, asyncio.CancelledError):
                conn.reason = "connect cancelled"
            else:
                conn.reason = _describe(exc, conn.spec)
            conn.state = "unavailable"
            log.warning("MCP server %s unavailable: %s", conn.spec.name, conn.reason)
            if not isinstance(exc, Exception):
                raise
            return
        conn.client, conn.tools, conn.stop = client, tools, stop
        conn.state, conn.reason = "ok", None

    async def _hold(
        self,
        spec: ServerSpec,
        ready: asyncio.Future[tuple[Client, dict[str, types.Tool]]],
        stop: asyncio.Event,
    ) -> None:
        """Own one session for its whole life, so its transport's task groups enter and exit in this one task."""
        try:
            async with AsyncExitStack() as stack:
                client = await stack.enter_async_context(Client(await _transport(spec, stack)))
                tools = await _list_all_tools(client)
                if not ready.done():
                    ready.set_result((client, tools))
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else ConnectionError(_describe(exc)))
            elif not isinstance(exc, asyncio.CancelledError):
                log.info("MCP server %s closed: %s", spec.name, _describe(exc, spec))
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _stop_holders(self) -> None:
        for conn in self._connections:
            if conn.stop is not None:
                conn.stop.set()
            conn.client, conn.stop = None, None
            if conn.state in ("ok", "broken"):
                conn.state, conn.reason = "unavailable", "closed"
        holders = set(self._holders)
        if not holders:
            return
        _, pending = await asyncio.wait(holders, timeout=_CLOSE_TIMEOUT)
        for holder in pending:
            holder.cancel()
        if pending:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT)


async def _transport(spec: ServerSpec, stack: AsyncExitStack) -> Any:
    """What `mcp.Client` connects to for `spec`: stdio parameters, or a streamable HTTP transport with headers."""
    if spec.transport == "stdio":
        assert spec.command is not None
        return StdioServerParameters(command=spec.command, args=list(spec.args), env=dict(spec.env), cwd=spec.cwd)
    assert spec.url is not None
    http = await stack.enter_async_context(
        httpx2.AsyncClient(headers=dict(spec.headers), timeout=httpx2.Timeout(30, read=300))
    )
    return streamable_http_client(spec.url, http_client=http)


async def _list_all_tools(client: Client) -> dict[str, types.Tool]:
    tools: dict[str, types.Tool] = {}
    cursor: str | None = None
    for _ in range(100):  # list_tools() does not paginate by itself; bound a misbehaving server's cursor loop
        page = await client.list_tools(cursor=cursor)
        for tool in page.tools:
            tools.setdefault(tool.name, tool)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools
