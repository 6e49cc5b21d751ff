"""One MCP server's long-lived session: started within a start-up timeout, watched, restarted with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, TextIO

import httpx2
import mcp.types as types
from mcp import Client, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from agents.mcp_config import ServerSpec
from storage.redact import mask_secrets

log = logging.getLogger(__name__)
# The servers' own stderr, one record per burst of lines (a Node stack trace stays whole), secrets masked.
stderr_log = logging.getLogger("agents.mcp.stderr")

UP, STARTING, DOWN = "up", "starting", "down"
_PING_TIMEOUT = 5.0
_CLOSE_TIMEOUT = 10.0
_TAIL_WAIT = 1.0  # how long a failed start waits for the rest of the server's stderr
_WARNING = re.compile(r"\b(error|exception|fatal|unhandled|warn(ing)?)\b", re.IGNORECASE)


def describe(exc: BaseException, redact: Callable[[str], str] | None = None) -> str:
    """A short reason for `exc` (the first cause inside groups), without the secrets a quoted URL could carry."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        text = f"MCP error {exc.code}: {exc.message}"
    else:
        detail = str(exc).strip()
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return redact(text) if redact is not None else text


class _Down(Exception):
    """A start that failed, or a session that died before it had been up for long: back off, then restart."""


class ServerSession:
    """A supervisor for one server: `client()` gives the live session (waiting while it starts), `broken()` says
    a call found it dead. It restarts at once after a death that follows a healthy uptime, else with exponential
    backoff (`backoff_seconds` doubling up to `backoff_max_seconds`). A stdio server's stderr goes to the
    `agents.mcp.stderr` logger; its exit is noticed at once (end of that stream), and every session is pinged
    every `ping_interval_seconds` so a wedged server or a vanished HTTP endpoint shows as down without a call.
    """

    def __init__(
        self,
        spec: ServerSpec,
        *,
        start_timeout: float = 30.0,
        extra_env: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        backoff_seconds: float = 1.0,
        backoff_max_seconds: float = 60.0,
        healthy_after_seconds: float = 10.0,
        ping_interval_seconds: float = 30.0,
    ) -> None:
        self.spec = spec
        self.tools: dict[str, types.Tool] = {}  # the last listed, kept while down so calls name the server
        self.state = DOWN
        self.error: str | None = spec.problem or "not started"
        self.restarts = 0
        self.tried = False  # its first start has settled (up, or failed): nobody waits for a restart's outcome
        self._start_timeout = start_timeout
        self._env = dict(extra_env or {})
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._backoff, self._backoff_max = backoff_seconds, backoff_max_seconds
        self._healthy_after, self._ping_interval = healthy_after_seconds, ping_interval_seconds
        self._since = time.time()
        self._retry_at: float | None = None
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._settled: asyncio.Event | None = None
        self._died: asyncio.Event | None = None
        self._death: str | None = None
        self._closing = False

    @property
    def name(self) -> str:
        return self.spec.name

    def redact(self, text: str) -> str:
        """`text` without this server's secrets (its env, headers, URL query, and the proxy's credentials)."""
        text = self.spec.redact(text)
        return mask_secrets(text, self._secrets)

    def health(self) -> dict[str, Any]:
        """`{state: up|starting|down, error, since, restarts, tools, retry_in_seconds}` (plain data)."""
        retry_in = None
        if self.state == DOWN and self._retry_at is not None:
            retry_in = round(max(0.0, self._retry_at - time.monotonic()), 1)
        return {
            "state": self.state,
            "error": self.error,
            "since": datetime.fromtimestamp(self._since, UTC).isoformat(timespec="seconds"),
            "restarts": self.restarts,
            "tools": len(self.tools),
            "retry_in_seconds": retry_in,
        }

    def start(self) -> None:
        """Start supervising (idempotent); a server with a `problem` is only reported, never launched."""
        if self._task is not None or self._closing or self.spec.problem:
            return
        self._set(STARTING, self.error if self.error != "not started" else None)
        self._settled = asyncio.Event()
        self._task = asyncio.create_task(self._supervise(), name=f"mcp-server:{self.name}")

    async def wait_settled(self) -> None:
        """Wait while the current start attempt runs (each is bounded by the start-up timeout)."""
        self.start()
        while self.state == STARTING and self._settled is not None:
            settled = self._settled
            await settled.wait()
            if settled is self._settled:
                return

    async def client(self) -> Client | None:
        """The live session, waiting for a start in progress; None while the server is down."""
        await self.wait_settled()
        return self._client if self.state == UP else None

    def broken(self, client: Client, reason: str) -> None:
        """A call found `client`'s transport dead: close it and restart (no-op for a session already replaced)."""
        if client is self._client and self._died is not None and not self._died.is_set():
            log.warning("MCP server %s: session broken: %s", self.name, reason)
            self._death, self._client = reason, None
            self._set(DOWN, reason)  # at once: the next call fails fast instead of using the dead session
            self._died.set()

    async def probe(self, client: Client) -> None:
        """After a call timed out: a server that still answers keeps its session, others are restarted."""
        try:
            await _ping(client)
        except Exception as exc:  # any failure to answer means the session cannot be trusted
            self.broken(client, f"no answer to a ping after a timeout ({describe(exc, self.redact)})")

    async def aclose(self) -> None:
        """Stop the server (bounded wait) and stop restarting it."""
        self._closing = True
        task, self._task = self._task, None
        if self._died is not None:
            self._died.set()
        if task is not None:
            done, _ = await asyncio.wait([task], timeout=_CLOSE_TIMEOUT if self.state == UP else 0)
            if not done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([task], timeout=_CLOSE_TIMEOUT)
        self._client = None
        if not self.spec.problem:
            self._set(DOWN, "closed")

    # -- internals ------------------------------------------------------------------------------------------------

    def _set(self, state: str, error: str | None) -> None:
        if state != self.state:
            self._since = time.time()
        self.state, self.error = state, error
        if state != DOWN:
            self._retry_at = None

    async def _supervise(self) -> None:
        while not self._closing:
            retrying = AsyncRetrying(
                wait=wait_exponential(multiplier=self._backoff, max=self._backoff_max),
                retry=retry_if_exception_type(Exception),  # anything but a cancellation: back off, try again
                before_sleep=self._backing_off,
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    await self._run_once()
            if not self._closing:  # it died after a healthy uptime: restart at once, with a fresh backoff
                self.restarts += 1

    def _backing_off(self, state: RetryCallState) -> None:
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        exc = state.outcome.exception() if state.outcome is not None else None
        error = str(exc) if isinstance(exc, _Down) else describe(exc, self.redact) if exc else "failed"
        self._set(DOWN, error)
        self._retry_at = time.monotonic() + delay
        self.restarts += 1
        log.warning("MCP server %s down: %s (restart in %.1fs)", self.name, error, delay)

    async def _run_once(self) -> None:
        """One life of the server: start it, serve until it dies, then return (healthy) or raise `_Down`."""
        if self.state != STARTING:
            self._set(STARTING, self.error)
            self._settled = asyncio.Event()
        settled = self._settled
        self._died, self._death = asyncio.Event(), None
        capture = _StderrCapture(self) if self.spec.transport == "stdio" else None
        up_at: float | None = None
        try:
            async with AsyncExitStack() as stack:
                try:
                    self._client, self.tools = await self._open(stack, capture)
                except _Down as exc:
                    self._set(DOWN, str(exc))  # before the waiters wake
                    raise
                self._set(UP, None)
                self.tried = True
                up_at = time.monotonic()
                if settled is not None:
                    settled.set()
                log.info("MCP server %s up: %d tools", self.name, len(self.tools))
                watcher = asyncio.create_task(self._watch(self._client))
                try:
                    await self._died.wait()
                finally:
                    self._client = None
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
        finally:
            self._client = None
            self.tried = True
            if capture is not None:
                capture.parent_done()
            if settled is not None:
                settled.set()
        if self._closing:
            return
        reason = self._death or "closed"
        self._set(DOWN, reason)
        uptime = time.monotonic() - up_at if up_at is not None else 0.0
        if uptime >= self._healthy_after:
            log.warning("MCP server %s died after %.0fs up: %s; restarting", self.name, uptime, reason)
            return
        raise _Down(reason)

    async def _open(
        self, stack: AsyncExitStack, capture: _StderrCapture | None
    ) -> tuple[Client, dict[str, types.Tool]]:
        try:
            async with asyncio.timeout(self._start_timeout):
                client = await stack.enter_async_context(Client(await self._transport(stack, capture)))
                return client, await list_all_tools(client)
        except TimeoutError:
            reason = await self._with_tail(f"did not start within {self._start_timeout:g}s", capture)
            raise _Down(reason) from None
        except Exception as exc:  # a server that cannot start fails in many ways; each is a reason, not a crash
            raise _Down(await self._with_tail(describe(exc, self.redact), capture)) from exc
        finally:
            if capture is not None:
                capture.parent_done()  # from now on, the end of its stderr means the process is gone

    async def _transport(self, stack: AsyncExitStack, capture: _StderrCapture | None) -> Any:
        spec = self.spec
        if spec.transport == "stdio":
            assert spec.command is not None and capture is not None
            env = self._env | dict(spec.env)
            params = StdioServerParameters(command=spec.command, args=list(spec.args), env=env, cwd=spec.cwd)
            return stdio_client(params, errlog=capture.writer)
        assert spec.url is not None
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers=dict(spec.headers), timeout=httpx2.Timeout(30, read=300))
        )
        return streamable_http_client(spec.url, http_client=http)

    async def _with_tail(self, reason: str, capture: _StderrCapture | None) -> str:
        """`reason`, with the server's own last word on stderr (it may still be on its way: wait a little)."""
        if capture is None:
            return reason
        capture.parent_done()
        deadline = time.monotonic() + _TAIL_WAIT
        while not capture.drained.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        last = capture.last_error()
        return f"{reason}: {last}" if last and last not in reason else reason

    async def _watch(self, client: Client) -> None:
        while True:
            await asyncio.sleep(self._ping_interval)
            try:
                await _ping(client)
            except Exception as exc:  # no answer: the session is dead whatever the exception says
                self.broken(client, f"no answer to a ping ({describe(exc, self.redact)})")
                return

    def _exited(self, last: str | None) -> None:
        """Called on the loop when the server's stderr ends: its process is gone."""
        client = self._client
        if client is not None:
            self.broken(client, "process exited" + (f": {last}" if last else ""))


class _StderrCapture:
    """A stdio server's stderr through a pipe into `agents.mcp.stderr`, masked; tells the session when it ends."""

    def __init__(self, session: ServerSession) -> None:
        self._session = session
        self._loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        self.writer: TextIO = os.fdopen(write_fd, "w")
        self._tail: deque[str] = deque(maxlen=20)
        self._lock = threading.Lock()
        self.drained = threading.Event()  # its stderr ended: the process (and any child holding it) is gone
        thread = threading.Thread(target=self._read, args=(read_fd,), name=f"mcp-stderr:{session.name}", daemon=True)
        thread.start()

    def parent_done(self) -> None:
        """Close our copy of the pipe's write end (the child keeps its own)."""
        with contextlib.suppress(OSError):
            self.writer.close()

    def last_error(self) -> str | None:
        """The most telling recent line: the last one that mentions an error, else the last one (clipped)."""
        with self._lock:
            lines = [line.strip() for line in self._tail if line.strip()]
        if not lines:
            return None
        flagged = [line for line in lines if _WARNING.search(line)]
        return (flagged or lines)[-1][:300]

    def _read(self, fd: int) -> None:
        buffer: list[str] = []
        partial = b""
        try:
            while True:
                ready, _, _ = select.select([fd], [], [], 0.1)
                if not ready:  # a pause: what came so far is one message
                    self._emit(buffer)
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                *lines, partial = (partial + chunk).split(b"\n")
                decoded = [line.decode("utf-8", "replace").rstrip("\r") for line in lines]
                buffer += decoded
                with self._lock:
                    self._tail.extend(self._session.redact(line) for line in decoded if line.strip())
                if len(buffer) >= 50:
                    self._emit(buffer)
        except OSError:
            pass
        finally:
            if partial:
                buffer.append(partial.decode("utf-8", "replace"))
                with self._lock:
                    self._tail.append(self._session.redact(buffer[-1]))
            self._emit(buffer)
            os.close(fd)
            self.drained.set()
            with contextlib.suppress(RuntimeError):  # the loop is already closed at interpreter exit
                self._loop.call_soon_threadsafe(self._session._exited, self.last_error())

    def _emit(self, buffer: list[str]) -> None:
        lines = [self._session.redact(line) for line in buffer if line.strip()]
        buffer.clear()
        if not lines:
            return
        text = "\n".join(lines)[:8000]
        level = logging.WARNING if _WARNING.search(text) else logging.INFO
        stderr_log.log(level, "MCP server %s: %s", self._session.name, text, extra={"mcp_server": self._session.name})


async def _ping(client: Client) -> None:
    """A liveness check that every protocol version answers (`ping` is gone from 2026-07-28): list the tools."""
    async with asyncio.timeout(_PING_TIMEOUT):
        await client.list_tools()


async def list_all_tools(client: Client) -> dict[str, types.Tool]:
    """Every tool a server lists (`list_tools()` does not paginate by itself; a cursor loop is bounded)."""
    tools: dict[str, types.Tool] = {}
    cursor: str | None = None
    for _ in range(100):
        page = await client.list_tools(cursor=cursor)
        for tool in page.tools:
            tools.setdefault(tool.name, tool)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools
