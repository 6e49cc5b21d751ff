"""The LLM client: structured JSON answers and tool-calling turns over an OpenAI-compatible endpoint.

Why the async client (`openai.AsyncOpenAI`): the why-agent runs a tool-calling loop under `asyncio.timeout`
and awaits MCP calls between turns, so every caller is already a coroutine. The underlying httpx2 pool is
bound to the event loop that opened it, so one `AsyncOpenAI` is kept per running loop (a caller using
`asyncio.run` once per incident still works). Retries and backoff are the SDK's own (`max_retries`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import openai

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

from agents import metrics
from agents.config import LLMConfig
from storage.errors import DnaBotError

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 200
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class LLMError(DnaBotError):
    """The LLM call failed (timeout, HTTP error, bad JSON, schema mismatch, refusal); `reason` is short and safe."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Usage:
    """Tokens spent by one call (or summed over many)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class CallRecord:
    """What one call cost: its name, latency, tokens, and the failure reason if it failed."""

    name: str
    latency_seconds: float
    usage: Usage
    error: str | None = None


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model asked for; `arguments` is {} and `arguments_error` set when its JSON was bad."""

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str = ""
    arguments_error: str | None = None


@dataclass(frozen=True)
class ToolTurn:
    """One model turn: tool calls to run, or a final text; `message` is the assistant turn to append."""

    tool_calls: tuple[ToolCall, ...]
    text: str | None
    usage: Usage
    message: dict[str, Any] = field(default_factory=dict, hash=False)
    finish_reason: str | None = None

    @property
    def is_final(self) -> bool:
        return not self.tool_calls


def schema_errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """A small JSON-schema check (type, required, properties, items, enum): the mismatches found, if any."""
    errors: list[str] = []
    wanted = schema.get("type")
    if wanted is not None:
        names = wanted if isinstance(wanted, list) else [wanted]
        types = tuple(t for n in names for t in _JSON_TYPES.get(n, ()))
        is_bool = isinstance(value, bool)
        if not isinstance(value, types) or (is_bool and "boolean" not in names):
            return [f"{path}: expected {'/'.join(names)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        errors += [f"{path}: missing required key {k!r}" for k in schema.get("required", []) if k not in value]
        props = schema.get("properties", {})
        for key, sub in value.items():
            if key in props:
                errors += schema_errors(sub, props[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected key {key!r}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    return errors


class LLMClient:
    """An OpenAI-compatible chat client with safe errors, usage totals and per-call latency."""

    def __init__(self, config: LLMConfig, *, history: int = 100) -> None:
        self.config = config
        self.model = config.model
        self.usage = Usage()
        self.calls: deque[CallRecord] = deque(maxlen=history)
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, openai.AsyncOpenAI]] = {}

    @classmethod
    def from_config(cls, config: LLMConfig | None) -> LLMClient | None:
        """A client for `config`, or None when no LLM is configured (same as the module's `from_config`)."""
        return from_config(config)

    def __repr__(self) -> str:  # never the key
        return f"LLMClient(model={self.model!r}, base_url={self.config.base_url!r})"

    @property
    def last_call(self) -> CallRecord | None:
        return self.calls[-1] if self.calls else None

    def _client(self) -> openai.AsyncOpenAI:
        import openai  # loaded only when an LLM is configured: it costs half a second at start-up

        loop = asyncio.get_running_loop()
        # Drop clients of closed loops: their connection pools cannot be reused.
        self._clients = {k: v for k, v in self._clients.items() if not v[0].is_closed()}
        entry = self._clients.get(id(loop))
        if entry is None or entry[0] is not loop:
            client = openai.AsyncOpenAI(
                api_key=self.config.api_key,
                base_url=self.config.base_url,
                timeout=self.config.timeout_seconds,
                max_retries=self.config.max_retries,
            )
            entry = (loop, client)
            self._clients[id(loop)] = entry
        return entry[1]

    async def aclose(self) -> None:
        """Close the client of the running loop (others are dropped with their loops)."""
        entry = self._clients.pop(id(asyncio.get_running_loop()), None)
        if entry is not None:
            await entry[1].close()

    def _safe(self, text: str) -> str:
        """Shorten a reason and make sure it can never carry the API key."""
        key = self.config.api_key
        if key:
            text = text.replace(key, "***")
        return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"

    def _reason(self, exc: Exception) -> str:
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return f"LLM timeout after {self.config.timeout_seconds:g} s"
        if isinstance(exc, openai.APIConnectionError):
            return "LLM unreachable"
        if isinstance(exc, openai.APIStatusError):
            tries = self.config.max_retries + 1 if exc.status_code >= 500 or exc.status_code == 429 else 1
            after = f" after {tries} attempts" if tries > 1 else ""
            return f"LLM HTTP {exc.status_code}{after}"
        if isinstance(exc, (ValueError, LookupError, AttributeError, TypeError)):
            # the SDK lets a non-JSON body's JSONDecodeError through; a body without choices fails on access
            return "LLM sent a malformed response"
        return f"LLM error ({type(exc).__name__})"

    async def _create(self, name: str, **kwargs: Any) -> tuple[Any, Usage, float]:
        started = time.monotonic()
        try:
            response = await self._client().chat.completions.create(model=self.model, **kwargs)
            choice = response.choices[0]
            message = choice.message
        except asyncio.CancelledError:  # a caller's deadline ran out while the request hung
            metrics.LLM_REQUEST_SECONDS.observe(time.monotonic() - started)
            metrics.llm_failed("cancelled")
            raise
        except Exception as exc:  # every SDK/transport failure becomes one safe LLMError
            metrics.llm_failed(metrics.llm_failure_reason(exc))
            reason = self._safe(self._reason(exc))
            self._record(name, started, Usage(), reason)
            raise LLMError(reason) from None
        raw_usage = getattr(response, "usage", None)
        usage = Usage(
            int(getattr(raw_usage, "prompt_tokens", 0) or 0), int(getattr(raw_usage, "completion_tokens", 0) or 0)
        )
        self.usage = self.usage + usage
        latency = self._record(name, started, usage, None)
        refusal = getattr(message, "refusal", None)
        if refusal or choice.finish_reason == "content_filter":
            self._fail(f"LLM refused: {refusal or 'content filter'}", "refused")
        return choice, usage, latency

    def _record(self, name: str, started: float, usage: Usage, error: str | None) -> float:
        latency = time.monotonic() - started
        metrics.LLM_REQUEST_SECONDS.observe(latency)
        self.calls.append(CallRecord(name, latency, usage, error))
        log.info(
            "llm call %s: %.2f s, %d+%d tokens%s",
            name,
            latency,
            usage.prompt_tokens,
            usage.completion_tokens,
            f", failed: {error}" if error else "",
        )
        return latency

    def _fail(self, reason: str, kind: str) -> NoReturn:
        metrics.llm_failed(kind)
        reason = self._safe(reason)
        last = self.calls[-1] if self.calls else None
        if last is not None and last.error is None:
            self.calls[-1] = CallRecord(last.name, last.latency_seconds, last.usage, reason)
        log.warning("llm call failed: %s", reason)
        raise LLMError(reason)

    async def complete_json(
        self, system: str, user: str, schema: dict[str, Any], *, name: str, max_tokens: int | None = None
    ) -> dict[str, Any]:
        """A structured answer: the message content parsed as JSON and checked against `schema`."""
        kwargs: dict[str, Any] = {
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
        }
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        choice, _usage, _latency = await self._create(name, **kwargs)
        if choice.finish_reason == "length":
            self._fail("LLM answer was cut off (length limit)", "cut_off")
        content = choice.message.content or ""
        try:
            value = json.loads(content)
        except ValueError:
            self._fail("LLM answer is not valid JSON", "invalid_json")
        problems = schema_errors(value, schema)
        if problems:
            self._fail(f"LLM answer does not match the schema: {problems[0]}", "schema_mismatch")
        return cast("dict[str, Any]", value)  # checked against `schema`, an object schema (strict mode wants one)

    async def chat_with_tools(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]], *, max_tokens: int
    ) -> ToolTurn:
        """One turn of a tool-calling conversation: the tool calls the model wants, or its final text."""
        kwargs: dict[str, Any] = {"messages": list(messages), "max_tokens": max_tokens}
        if tools:
            kwargs.update(tools=list(tools), tool_choice="auto")
        choice, usage, _latency = await self._create("chat_with_tools", **kwargs)
        message = choice.message
        calls = tuple(_tool_call(tc) for tc in (message.tool_calls or []) if getattr(tc, "function", None))
        assistant: dict[str, Any] = {"role": "assistant", "content": message.content}
        if calls:
            assistant["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.raw_arguments}}
                for c in calls
            ]
        return ToolTurn(calls, message.content, usage, assistant, choice.finish_reason)


def _tool_call(tc: Any) -> ToolCall:
    raw = tc.function.arguments or ""
    try:
        args = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return ToolCall(tc.id, tc.function.name, {}, raw, "arguments are not valid JSON")
    if not isinstance(args, dict):
        return ToolCall(tc.id, tc.function.name, {}, raw, "arguments are not a JSON object")
    return ToolCall(tc.id, tc.function.name, args, raw)


def from_config(config: LLMConfig | None) -> LLMClient | None:
    """A client for `config`, or None when no LLM is configured (templates and rules only)."""
    if config is None or not config.model:
        return None
    return LLMClient(config)
