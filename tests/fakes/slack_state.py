"""What the loopback Slack Web API records and knows: calls, messages, files, views, responses, faults, refusals."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"

BOT = {"team_id": "T1", "team": "dna-test", "user_id": "UBOT", "user": "dna-bot", "bot_id": "B1"}
# Form bodies carry these as JSON strings; JSON bodies carry them as objects. Store them decoded either way.
_JSON_FIELDS = ("blocks", "attachments", "metadata", "view", "files", "unfurls")
_TRUE = (True, 1, "1", "true", "True")
# The bot scopes manifest.yml asks for: a method needing another one answers `missing_scope`, as Slack does.
SCOPES = frozenset(yaml.safe_load(MANIFEST.read_text())["oauth_config"]["scopes"]["bot"])

Handler = Callable[["SlackState", dict[str, Any]], dict[str, Any]]
Stub = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Call:
    """One Web API request as received: method name, decoded args, lower-cased headers, monotonic time."""

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    at: float


@dataclass
class Fault:
    """A failure to answer `times` more requests with: an HTTP status (429, 500, …) or an `ok:false` error."""

    status: int = 200
    retry_after: int | None = None
    error: str | None = None
    times: int = 1


@dataclass(frozen=True)
class Refused:
    """A payload real Slack would refuse (`kind="refused"`: answered with Slack's error, nothing stored) or one it
    takes against the bot's own rules (`kind="policy"`: answered ok); any a test did not expect fail it."""

    method: str
    error: str
    kind: str
    messages: tuple[str, ...] = ()
    detail: str = ""
    excerpt: tuple[str, ...] = ()

    def describe(self) -> str:
        """Several lines for a test report: what, why, and the blocks concerned."""
        policy = " (Slack accepts it; the bot's own rule)" if self.kind == "policy" else ""
        head = f"{self.method} → {self.error}{policy}"
        lines = [head, *(f"    {m}" for m in self.messages[:8])]
        if len(self.messages) > 8:
            lines.append(f"    …and {len(self.messages) - 8} more")
        lines += [f"    {self.detail}"] if self.detail else []
        return "\n".join([*lines, *(f"    {e}" for e in self.excerpt)])


class SlackError(Exception):
    """Raised by a method handler to answer `{"ok": false, "error": code}`."""

    def __init__(self, code: str, **extra: str) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra  # more fields of the answer, e.g. `needed` and `provided` of `missing_scope`


@dataclass
class SlackState:
    """Everything the fake knows; guarded by `cond` (an RLock-backed condition notified after each request)."""

    token: str = "xoxb-test-token"
    app_token: str = "xapp-test-token"
    base_url: str = ""
    cond: threading.Condition = field(default_factory=lambda: threading.Condition(threading.RLock()))
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ephemerals: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    pending_uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    published: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    directory: dict[str, str] = field(default_factory=dict)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    # user id → `users.info` fields over the defaults (`team_id`, `is_stranger`, `is_email_confirmed`, `deleted`,
    # `is_restricted`, `profile`): another workspace's user, a Slack Connect stranger, an unconfirmed email
    people: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Channels a test declares: id → {"is_private": bool, "members": [user ids]} (the bot is a member only when
    # `BOT["user_id"]` is listed). Undeclared ids are public channels the bot is in, as the fake always assumed.
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    scopes: set[str] = field(default_factory=lambda: set(SCOPES))
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    stalls: dict[str, list[float]] = field(default_factory=dict)  # method → seconds to hold the answer back
    stubs: dict[str, Stub] = field(default_factory=dict)
    socket_url: str | None = None
    strict: bool = True  # refuse what Slack refuses (and record it); False answers ok as the old fake did
    refused: list[Refused] = field(default_factory=list)
    expected: set[str] = field(default_factory=set)  # error / policy codes the running test declared
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    last_ts_us: int = 0  # the newest timestamp handed out, in microseconds

    def reset(self) -> None:
        """Forget all recorded traffic and configuration (tokens and the server URL stay)."""
        with self.cond:
            for box in (self.calls, self.ephemerals, self.files, self.refused):
                box.clear()
            for table in (self.messages, self.pending_uploads, self.views, self.published, self.responses):
                table.clear()
            for config in (self.directory, self.usergroups, self.faults, self.stubs, self.stalls, self.channels):
                config.clear()
            self.people.clear()
            self.scopes = set(SCOPES)
            self.socket_url = None
            self.expected.clear()
            self.strict = True

    def next_ts(self) -> str:
        """A Slack-style timestamp: the posting time (as Slack's are, so `oldest` / `latest` filter by the wall
        clock), to the microsecond, unique and increasing across all channels."""
        with self.cond:
            self.last_ts_us = max(time.time_ns() // 1000, self.last_ts_us + 1)
            seconds, micros = divmod(self.last_ts_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def next_id(self, prefix: str) -> str:
        """A Slack-style object id (`F…`, `V…`)."""
        return f"{prefix}{next(self.seq):08d}"

    def find(self, channel: str, ts: str) -> dict[str, Any]:
        """The stored message `ts` in `channel`, else `message_not_found`."""
        for message in self.messages.get(channel, []):
            if message["ts"] == ts:
                return message
        raise SlackError("message_not_found")

    def store(self, channel: str, message: dict[str, Any]) -> dict[str, Any]:
        """Append `message`; a reply bumps its parent's `reply_count` (a parent the fake never saw is fine)."""
        thread_ts = message.get("thread_ts")
        parents = [m for m in self.messages.get(channel, []) if thread_ts and m["ts"] == thread_ts]
        for parent in parents:
            parent["thread_ts"] = thread_ts
            parent["reply_count"] = parent.get("reply_count", 0) + 1
            parent["latest_reply"] = message["ts"]
        self.messages.setdefault(channel, []).append(message)
        return message

    def take_fault(self, method: str) -> Fault | None:
        """Consume one pending fault for `method`, if any."""
        queue = self.faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        return fault


def decode_args(raw: bytes, content_type: str, query: dict[str, str]) -> dict[str, Any]:
    """Decode a JSON or form body (an empty body is `{}`), merged over the query string."""
    args: dict[str, Any] = dict(query)
    text = raw.decode("utf-8") if raw else ""
    if text.strip():
        if "json" in content_type:
            args.update(json.loads(text))
        else:
            args.update(parse_qsl(text, keep_blank_values=True))
    for key in _JSON_FIELDS:
        value = args.get(key)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            args[key] = json.loads(value)
    return args


def truthy(value: Any) -> bool:
    """Slack booleans arrive as True, "1" or "true"."""
    return value in _TRUE
