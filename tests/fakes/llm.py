"""A loopback OpenAI-compatible chat server with scripted answers, and the `fake_llm` fixture that leases it."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulator.server import ServerHandle, run_in_thread


def completion(
    content: str | None = None,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    refusal: str | None = None,
    finish_reason: str | None = None,
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
) -> dict[str, Any]:
    """A minimal `chat.completion` body: a text answer, tool calls, or a refusal."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if refusal is not None:
        message["refusal"] = refusal
    reason = finish_reason or ("tool_calls" if tool_calls else "stop")
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake-model",
        "choices": [{"index": 0, "message": message, "finish_reason": reason, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def json_completion(payload: Any, **kw: Any) -> dict[str, Any]:
    """A completion whose content is `payload` as JSON text (a structured-output answer)."""
    return completion(json.dumps(payload), **kw)


def tool_call(name: str, arguments: dict[str, Any] | str, call_id: str = "call_1") -> dict[str, Any]:
    """One tool call as the model writes it (arguments are a JSON string on the wire)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def tool_completion(*calls: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """A completion that only asks for tool calls."""
    return completion(None, tool_calls=list(calls), **kw)


INSTRUCTION_RE = re.compile(r"DNABOT-TOOL\s+([\w-]+)\s*(?=\{)")


def _balanced(text: str, start: int) -> str | None:
    """The `{…}` that opens at `start` (quotes respected), or None when it never closes."""
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        i += 1
    return None


def injected_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Every `DNABOT-TOOL <tool> {json-ish args}` instruction in `text`, as (tool, arguments)."""
    found = []
    for match in INSTRUCTION_RE.finditer(text.replace('\\"', '"')):
        literal = _balanced(match.string, match.end())
        if literal is None:
            continue
        try:
            args = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            try:
                args = json.loads(literal)
            except ValueError:
                continue
        if isinstance(args, dict):
            found.append((match.group(1), args))
    return found


def obey(body: dict[str, Any], otherwise: dict[str, Any] | None = None) -> dict[str, Any]:
    """What an instruction-following model answers: a call of the first injected instruction anywhere in its
    prompt (system, user or tool text, fenced or not) that it has not obeyed yet; else `otherwise`."""
    messages = body.get("messages") or []
    done = []
    for message in messages:
        for call in message.get("tool_calls") or () if message.get("role") == "assistant" else ():
            done.append((call["function"]["name"], json.loads(call["function"]["arguments"] or "{}")))
    for message in messages:
        for name, args in injected_calls(str(message.get("content") or "")):
            if (name, args) not in done:
                return tool_completion(tool_call(name, args, f"call_obey_{len(done) + 1}"))
    return otherwise or completion("I found no instruction to follow.")


class FakeLLM:
    """The handle tests get: `url` (ends in /v1), `script([...])`, and the recorded request bodies.

    Each request consumes one scripted entry: a `chat.completion` dict, or a directive
    `{"status": 500}` (optionally with `"body"`), `{"delay": 2}` (sleep, then answer a late "too late"),
    or `{"raw": "not json"}` (that text as the HTTP body), or `{"obey": True, "otherwise": <completion>}` (an
    instruction-following model: it calls the tool a `DNABOT-TOOL <tool> {args}` text in its prompt asks for, see
    `obey`), or `{"hold": True}` (wait until `release()`, then answer `"then"` or "held"). An empty script
    answers 500 "script exhausted".
    """

    # The body builders, reachable from the handle (test modules need not import this plugin module).
    completion = staticmethod(completion)
    json_completion = staticmethod(json_completion)
    tool_call = staticmethod(tool_call)
    tool_completion = staticmethod(tool_completion)
    # A script entry: follow the first injected instruction not yet followed.
    OBEY: ClassVar[dict[str, Any]] = {"obey": True}

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.stopping = threading.Event()
        self.handle: ServerHandle | None = None
        self._gate = threading.Event()  # what `{"hold": True}` requests wait for; a new one after each reset

    @property
    def url(self) -> str:
        assert self.handle is not None, "the fake LLM is not running"
        return f"{self.handle.url}/v1"

    def script(self, responses: list[dict[str, Any]]) -> FakeLLM:
        """Replace what the next requests get, in order."""
        with self._lock:
            self._script = deque(responses)
        return self

    def reset(self) -> None:
        """Forget the script and the recorded requests (between tests)."""
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.headers.clear()
            self._gate.set()  # requests still held by the last test answer now
            self._gate = threading.Event()

    def release(self) -> None:
        """Let every `{"hold": True}` request answer, those waiting now and those still to come."""
        with self._lock:
            self._gate.set()

    @property
    def remaining(self) -> int:
        """How many scripted entries were not consumed yet."""
        with self._lock:
            return len(self._script)

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any] | None:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            return self._script.popleft() if self._script else None

    async def _sleep(self, seconds: float) -> None:
        # Interruptible, so stopping the server never waits for a scripted delay.
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stopping.is_set():
            await asyncio.sleep(0.01)

    async def chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        entry = self._next(body, dict(request.headers))
        if entry is None:
            return JSONResponse({"error": {"message": "fake LLM: script exhausted"}}, status_code=500)
        if "hold" in entry:
            gate = self._gate
            while not gate.is_set() and not self.stopping.is_set():
                await asyncio.sleep(0.01)
            return JSONResponse(entry.get("then") or completion("held"))
        if "delay" in entry:
            await self._sleep(float(entry["delay"]))
            return JSONResponse(entry.get("then") or completion("too late"))
        if "status" in entry:
            body_out = entry.get("body") or {"error": {"message": f"fake LLM: scripted {entry['status']}"}}
            return JSONResponse(body_out, status_code=int(entry["status"]))
        if "raw" in entry:
            return Response(str(entry["raw"]), media_type="application/json")
        if "obey" in entry:
            return JSONResponse(obey(body, entry.get("otherwise")))
        return JSONResponse(entry)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    def start(self) -> FakeLLM:
        self.handle = run_in_thread(self.app())
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.handle is not None:
            self.handle.stop()


@pytest.fixture(scope="session")
def _fake_llm_server() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_llm(_fake_llm_server: FakeLLM) -> Iterator[FakeLLM]:
    """A loopback OpenAI-compatible server, fresh script and request log for each test."""
    _fake_llm_server.reset()
    yield _fake_llm_server
    _fake_llm_server.reset()
