"""Outside context over MCP: a long-lived, allow-listed, time-boxed toolbox of web search and scrape tools."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import mcp.types as types
from mcp import Client, MCPError

from agents import metrics
from agents.config import AgentConfig
from agents.mcp_config import MCPConfigError, MCPOptions, ServerSpec, load_servers
from agents.mcp_results import ToolResult, WebResult, cap, content_text, extract_urls, parse_web_results
from agents.mcp_session import STARTING, UP, ServerSession, describe

__all__ = ["MCPConfigError", "MCPOptions", "MCPToolbox", "ServerSpec", "ToolResult", "WebResult", "load_servers"]

log = logging.getLogger(__name__)

# A closed transport is dead for sure; a timeout or an internal error is checked with a ping first.
_DEAD_CODES = frozenset({types.CONNECTION_CLOSED})
_PROBE_CODES = frozenset({types.REQUEST_TIMEOUT, types.INTERNAL_ERROR})
# Preferred first: the hyphenated spelling is what tavily-mcp used up to 0.2.12.
_SEARCH_TOOLS = ("tavily_search", "tavily-search", "search_engine")


def _canonical(name: str) -> str:
    return name.replace("-", "_")


def proxy_secrets(env: Mapping[str, str]) -> list[str]:
    """The passwords inside proxy URLs (`http://user:secret@proxy:3128`): masked wherever server text is logged."""
    found = []
    for key, value in env.items():
        if "proxy" in key.lower():
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                found.append(password)
    return found


class MCPToolbox:
    """Created once and reused: `async with MCPToolbox(servers, allowed_tools=…) as tb: await tb.call(…)`.

    Each server has one long-lived session (`agents.mcp_session.ServerSession`), started within
    `connect_timeout` (the start-up timeout, separate from the per-call `call_timeout`), restarted with backoff
    when it dies, and reported by `health()` as up / starting / down with its last error. One that fails only
    fails its own calls: the others keep working. Stdio servers get `extra_env` (proxy, CA bundle) under their
    own `env`, and their stderr goes to our logging with secrets masked.

    Tool names are routed to the first server, in configuration order, that lists them and is up (else the first
    that listed them); a later server exposing the same name is shadowed (logged) rather than renamed. Only
    allow-listed tools are ever listed or called (`tavily-search` and `tavily_search` count as the same name).
    Tool output is returned as data only: nothing in it is parsed for instructions, and the toolbox never calls
    a tool that its caller did not ask for.
    """

    def __init__(
        self,
        servers: Iterable[ServerSpec],
        *,
        allowed_tools: Iterable[str],
        call_timeout: float = 15.0,
        max_chars: int = 4_000,
        connect_timeout: float = 30.0,
        extra_env: Mapping[str, str] | None = None,
        **session_options: Any,
    ) -> None:
        env = dict(extra_env or {})
        secrets = proxy_secrets(env)
        self._sessions = [
            ServerSession(spec, start_timeout=connect_timeout, extra_env=env, secrets=secrets, **session_options)
            for spec in servers
        ]
        names = [s.name for s in self._sessions]
        if len(set(names)) != len(names):
            raise ValueError(f"MCP server names must be unique: {names}")
        self._allowed = frozenset(_canonical(name) for name in allowed_tools)
        self._call_timeout = call_timeout
        self._max_chars = max_chars
        self._probes: set[asyncio.Task[None]] = set()
        self._closed = False
        self._shadowed: set[tuple[str, str]] = set()
        self.last_degraded: str | None = None
        for session in self._sessions:
            if session.spec.problem:
                log.error("MCP server %s cannot start: %s", session.name, session.spec.problem)

    @classmethod
    def from_config(
        cls, config: AgentConfig, env: Mapping[str, str], options: MCPOptions | None = None, **kwargs: Any
    ) -> MCPToolbox:
        """A toolbox for the servers `config` names (see `load_servers`), with its allow-list, timeouts and cap."""
        options = options or MCPOptions()
        kwargs.setdefault("connect_timeout", options.start_timeout_seconds)
        kwargs.setdefault("extra_env", options.env)
        return cls(
            load_servers(config, env, options),
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

    async def start(self, *, wait: bool = True) -> None:
        """Start every server (idempotent, safe to call concurrently); with `wait`, until each is up or failed once."""
        if self._closed:
            return
        for session in self._sessions:
            session.start()
        if wait:
            await asyncio.gather(*(s.wait_settled() for s in self._sessions))

    async def aclose(self) -> None:
        """Stop every server and wait (bounded) for the processes to exit; nothing restarts after this."""
        self._closed = True
        probes = list(self._probes)
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, *(s.aclose() for s in self._sessions), return_exceptions=True)

    def health(self) -> dict[str, dict[str, Any]]:
        """Each server's health: `{state: up|starting|down, error, since, restarts, tools, retry_in_seconds}`."""
        return {s.name: s.health() for s in self._sessions}

    def status(self) -> dict[str, str]:
        """Each server's health in a few words: "up", "starting" or "down: <last error>"."""
        return {s.name: s.state if s.state != "down" else f"down: {s.error}" for s in self._sessions}

    async def list_tools(self) -> list[dict[str, Any]]:
        """The allow-listed tools: `{name, description, input_schema, server}` each."""
        await self._first_start()
        listed = []
        for name, session in self._routes().items():
            tool = session.tools[name]
            listed.append(
                {
                    "name": name,
                    "description": tool.description or "",
                    "input_schema": copy.deepcopy(tool.input_schema),
                    "server": session.name,
                }
            )
        return listed

    async def call(self, name: str, args: Mapping[str, Any] | None = None) -> ToolResult:
        """Call one allow-listed tool; every failure comes back as `ok=False` with a reason, never as an exception."""
        result, _ = await self._call(name, args)
        return result

    async def search(self, query: str, *, max_results: int = 5) -> list[WebResult]:
        """Web search with `tavily_search`, else `search_engine`; [] with `last_degraded` set when neither works."""
        hits, self.last_degraded = await self.search_with_reason(query, max_results=max_results)
        return hits

    async def search_with_reason(self, query: str, *, max_results: int = 5) -> tuple[list[WebResult], str | None]:
        """`search`, returning what degraded instead of setting `last_degraded` (for callers that share a toolbox)."""
        await self._first_start()
        routes = self._routes()
        candidates = [tool for tool in _SEARCH_TOOLS if tool in routes]
        if not candidates:
            return [], f"no web search tool available ({self._status_line()})"
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
            return hits[:max_results], ("; ".join(failures) + f"; used {tool}") if failures else None
        return [], "; ".join(failures)

    # -- internals ------------------------------------------------------------------------------------------------

    async def _first_start(self) -> None:
        """Start the servers, and wait for those still on their first start (a server that keeps failing to start
        is never waited for again: it must not hold up the others)."""
        await self.start(wait=False)
        first = [s.wait_settled() for s in self._sessions if s.state == STARTING and not s.tried]
        if first:
            await asyncio.gather(*first)

    def _routes(self) -> dict[str, ServerSession]:
        """Allowed tool name → the server that answers it (up first, then configuration order)."""
        routes: dict[str, ServerSession] = {}
        for session in sorted(self._sessions, key=lambda s: s.state != UP):
            for name in session.tools:
                if _canonical(name) not in self._allowed:
                    continue
                if name in routes:
                    if (name, session.name) not in self._shadowed:
                        self._shadowed.add((name, session.name))
                        log.warning("MCP tool %s of %s is shadowed by %s", name, session.name, routes[name].name)
                    continue
                routes[name] = session
        return routes

    def _status_line(self) -> str:
        return ", ".join(f"{name}: {state}" for name, state in self.status().items()) or "no MCP servers configured"

    async def _call(self, name: str, args: Mapping[str, Any] | None) -> tuple[ToolResult, str]:
        if not isinstance(name, str) or _canonical(name) not in self._allowed:
            return ToolResult.failure("tool not allowed"), ""
        if args is not None and not isinstance(args, Mapping):
            return ToolResult.failure("arguments must be an object"), ""
        await self._first_start()
        session = self._routes().get(name)
        if session is None:
            metrics.mcp_failed(name, "unavailable")
            return ToolResult.failure(f"no available server provides {name!r} ({self._status_line()})"), ""
        server = session.name
        try:
            async with asyncio.timeout(self._call_timeout):  # a restarting server is waited for, within bounds
                client = await session.client()
        except TimeoutError:
            client = None
        if client is None:
            metrics.mcp_failed(name, "unavailable")
            return ToolResult.failure(f"server {server} {session.state}: {session.error}", server=server), ""
        started, failure = time.monotonic(), "cancelled"  # stays "cancelled" when a caller's deadline cuts in
        try:
            async with asyncio.timeout(self._call_timeout):
                raw = await client.call_tool(name, dict(args or {}))
            failure = "tool_error" if raw.is_error else ""
        except TimeoutError:
            failure = "timeout"
            self._probe(session, client)
            return ToolResult.failure(f"timed out after {self._call_timeout:g}s", server=server), ""
        except MCPError as exc:
            failure = "mcp_error"
            if exc.code in _DEAD_CODES:
                session.broken(client, describe(exc, session.redact))
            elif exc.code in _PROBE_CODES:
                self._probe(session, client)
            return ToolResult.failure(describe(exc, session.redact), server=server), ""
        except Exception as exc:  # a dead transport surfaces as many exception types; none may escape
            failure = "transport"
            session.broken(client, describe(exc, session.redact))
            return ToolResult.failure(describe(exc, session.redact), server=server), ""
        finally:
            metrics.MCP_CALL_SECONDS.labels(tool=name).observe(time.monotonic() - started)
            if failure:
                metrics.mcp_failed(name, failure)
        full_text, links = content_text(raw)
        text = cap(full_text, self._max_chars)
        urls = extract_urls(full_text, links)
        if raw.is_error:
            error = session.redact(cap(full_text, 500)) or "tool error"
            return ToolResult(ok=False, text=text, urls=urls, error=error, server=server), ""
        return ToolResult(ok=True, text=text, urls=urls, server=server), full_text

    def _probe(self, session: ServerSession, client: Client) -> None:
        """Ping in the background after a timeout: a server that answers keeps its session."""
        if self._closed:
            return
        task = asyncio.create_task(session.probe(client), name=f"mcp-probe:{session.name}")
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)
