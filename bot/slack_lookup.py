"""Slack facts the outbox drainer relies on; above all, look before re-posting.

Find the message an earlier, interrupted delivery may already have posted.

Every message the outbox drainer posts carries Slack message metadata (`event_type` = `dnabot_incident`, the
incident id and the outbox key). When a delivery is retried — its replica died between Slack's answer and the
database commit, or the answer never arrived — the drainer first reads the channel or the thread back with
`include_all_metadata` and adopts the message it finds instead of posting a second one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

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
