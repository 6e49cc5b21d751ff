"""Slack facts the outbox drainer relies on; above all, look before re-posting — but only when it must.

Find the message an earlier, interrupted delivery may already have posted.

Every message the outbox drainer posts carries Slack message metadata (`event_type` = `dnabot_incident`, the
incident id and the outbox key). When a delivery is retried after an attempt whose outcome is unknown — its
replica died between Slack's answer and the database commit, or the answer never arrived (a timeout, a connection
reset after sending, a 5xx without a body) — the drainer first reads the channel or the thread back with
`include_all_metadata` and adopts the message it finds instead of posting a second one. A 429 or an `ok: false`
answer proves nothing was posted: the retry after it posts without reading anything.

Reading back is expensive: `conversations.history` / `.replies` allow non-Marketplace apps about one call a
minute. `HistoryBudget` keeps this process to one read-back per channel per minute (and honours Slack's
`Retry-After` on them); a delivery that would need another waits for it rather than post blind. Replicas share
no budget: N replicas read a channel at most N times a minute.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

T = TypeVar("T")

EVENT_TYPE = "dnabot_incident"
LOOKBACK = timedelta(minutes=10)  # how far before the outbox row's creation a channel is read back
MAX_PAGES = 10

Message = dict[str, Any]


def metadata(key: str, incident_id: int | None = None, fingerprint: str | None = None) -> dict[str, Any]:
    """The metadata every drained message carries, so that a retry can recognise it."""
    payload: dict[str, Any] = {"key": key}
    if incident_id is not None:
        payload["incident_id"] = incident_id
    if fingerprint is not None:
        payload["fingerprint"] = fingerprint
    return {"event_type": EVENT_TYPE, "event_payload": payload}


def payload_of(message: Message) -> dict[str, Any]:
    meta = message.get("metadata") or {}
    if meta.get("event_type") != EVENT_TYPE:
        return {}
    return meta.get("event_payload") or {}


def _pages(call: Callable[..., Any], **args: Any) -> Iterator[Message]:
    cursor = None
    for _ in range(MAX_PAGES):
        answer = call(**args, **({"cursor": cursor} if cursor else {}))
        yield from answer.get("messages") or []
        cursor = (answer.get("response_metadata") or {}).get("next_cursor")
        if not answer.get("has_more") or not cursor:
            return


def find_in_channel(
    client: WebClient, channel: str, since: datetime, match: Callable[[dict[str, Any]], bool]
) -> Message | None:
    """The newest top-level message since `since` (minus a margin) whose metadata satisfies `match`."""
    oldest = f"{(since - LOOKBACK).timestamp():.6f}"
    for message in _pages(
        client.conversations_history, channel=channel, oldest=oldest, include_all_metadata=True, limit=200
    ):
        if match(payload_of(message)):
            return message
    return None


def thread_messages(client: WebClient, channel: str, ts: str) -> list[Message]:
    """Every message of a thread (parent first), with metadata."""
    return list(_pages(client.conversations_replies, channel=channel, ts=ts, include_all_metadata=True, limit=200))


def keys_in_thread(messages: list[Message]) -> set[str]:
    return {str(payload_of(m).get("key")) for m in messages if payload_of(m).get("key")}


def file_in_thread(messages: list[Message], filename: str) -> bool:
    return any(f.get("name") == filename for m in messages for f in m.get("files") or [])


# Slack errors a person fixes in the workspace (invite the bot, grant a scope, configure a channel): the row waits,
# checked every minute or so, and never dies of them — nothing is lost while the workspace is being set up.
WAITING_SLACK_ERRORS = frozenset(
    {
        "not_in_channel",
        "channel_not_found",
        "missing_scope",
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "no_permission",
        "restricted_action",
    }
)

# Slack errors no retry can fix: the row is parked as dead at once (the others wait their backoff).
PERMANENT_SLACK_ERRORS = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_arguments",
        "msg_too_long",
        "no_text",
        "too_many_attachments",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
        "message_not_found",
        "msg_blocks_too_long",
        "cant_update_message",
        "edit_window_closed",
        "is_archived",
    }
)


def retry_after(exc: SlackApiError) -> float | None:
    """Slack's `Retry-After` on a 429, in seconds (None when absent or unreadable)."""
    headers = getattr(exc.response, "headers", None) or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


# Slack's final word on one payload: the same blocks will always be refused; render them smaller instead.
REFUSED_PAYLOAD = frozenset({"msg_blocks_too_long", "invalid_blocks", "invalid_blocks_format", "msg_too_long"})
_NOT_JSON = "Received a response in a non-JSON format"  # slack_sdk's error for a body it could not read


def refused_payload(exc: BaseException) -> bool:
    """Slack refused this message's content (too long, invalid blocks): retrying the same payload cannot help."""
    return isinstance(exc, SlackApiError) and str(exc.response.get("error") or "") in REFUSED_PAYLOAD


def unsure(exc: BaseException) -> bool:
    """The failed call may still have done its work in Slack: a timeout, a connection lost after sending, a 5xx
    without a readable body. A 429 and every `ok: false` answer with an error code are a definite "not done"."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        error = str(exc.response.get("error") or "")
        return status >= 500 and (not error or error.startswith(_NOT_JSON))
    if isinstance(exc, URLError) and isinstance(exc.reason, ConnectionRefusedError):
        return False  # nothing was sent
    return isinstance(exc, (SlackClientError, OSError, TimeoutError)) and not isinstance(exc, ConnectionRefusedError)


# ------------------------------------------------------------------------------------------ when to look


@dataclass
class Attempt:
    """One delivery attempt's knowledge of Slack: must it read back before posting (`look`), are all its
    read-backs done (`looked`) and did they find any of its messages (`found`), did it post anything (`sent`)."""

    look: bool
    looked: bool = False
    found: bool = False
    sent: bool = False

    def saw(self, found: bool) -> None:
        """Every read-back this delivery needs is done (or none was needed); `found`: one of its messages is there."""
        self.looked = True
        self.found = self.found or found

    def look_next(self, exc: BaseException) -> bool:
        """Whether the attempt after this failed one must read back first."""
        unresolved = self.look and not self.looked
        return unresolved or self.found or self.sent or unsure(exc)


_MARK = re.compile(r" \[attempt (\d+) (looks|posts)\]$")


def marked(reason: str, next_attempt: int, look: bool) -> str:
    """`reason` with what the next attempt (by its number) must do, for the row's `last_error`."""
    return f"{reason[:1900]} [attempt {next_attempt} {'looks' if look else 'posts'}]"


def must_look(attempts: int, last_error: str | None) -> bool:
    """Must the attempt numbered `attempts` read Slack back before posting? Yes after an attempt of unknown
    outcome, and whenever an attempt left no word (its replica died mid-delivery: the numbers do not follow)."""
    mark = _MARK.search(last_error or "")
    if mark is not None and int(mark[1]) == attempts:
        return mark[2] == "looks"
    return attempts > 1


class LookLater(Exception):
    """A read-back this delivery needs is not allowed yet (the channel's budget is spent, or Slack said 429)."""

    def __init__(self, seconds: float, why: str) -> None:
        super().__init__(why)
        self.seconds = seconds


class HistoryBudget:
    """At most one read-back (`conversations.history` or `.replies`) per channel per `every` seconds in this
    process, and none while Slack's `Retry-After` for one runs."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def read(self, channel: str, call: Callable[[], T]) -> T:
        """`call()` if the channel's budget allows one now; else LookLater, with the seconds to wait."""
        with self._lock:
            now = self.clock()
            wait = self._next.get(channel, 0.0) - now
            if wait > 0:
                raise LookLater(wait, f"reading {channel} back waits {wait:.0f}s (one read-back a minute)")
            self._next[channel] = now + self.every
        try:
            return call()
        except SlackApiError as exc:
            if getattr(exc.response, "status_code", 200) != 429:
                raise
            wait = max(retry_after(exc) or self.every, 1.0)
            with self._lock:
                self._next[channel] = max(self._next.get(channel, 0.0), self.clock() + wait)
            raise LookLater(wait, f"Slack rate-limits reading {channel} back: waiting {wait:.0f}s") from exc
