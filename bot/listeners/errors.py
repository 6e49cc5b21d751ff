"""The one place that turns errors into what the user sees: domain errors → friendly text, bugs → a reference id."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from bot.blocks import render_error, render_not_found
from bot.blocks_kit import section
from bot.timeparse import TimeArgError
from storage.errors import (
    ColumnNotFound,
    DatasetNotFound,
    DnaBotError,
    IncidentNotFound,
    InvalidTransition,
    OpenMetadataError,
)

log = logging.getLogger("dnabot.slack")
# Slack tokens (bot, user, app, config) must never reach a message, even inside an exception's text.
_TOKEN = re.compile(r"\bx(?:ox[a-z]|app|oxe\.xox[a-z])-[A-Za-z0-9-]+")


class NotAllowed(DnaBotError):
    """The user may not do this (not an admin, not an owner); nothing was changed."""


class UsageError(DnaBotError):
    """The user typed something we cannot parse; the text is the hint."""


def scrub(text: str) -> str:
    """`text` with anything that looks like a Slack token masked."""
    return _TOKEN.sub("x***-redacted", text)


def reply_for(error: BaseException) -> tuple[str, list[dict[str, Any]]]:
    """The (fallback text, blocks) that tell a user what went wrong; unknown errors are logged with a reference id."""
    if isinstance(error, DatasetNotFound):
        return scrub(str(error)), render_not_found(error.query, error.suggestions)
    if isinstance(error, NotAllowed):
        text = f":lock: Sorry, {error}. Nothing was changed."
    elif isinstance(error, UsageError):
        text = f":information_source: {error}"
    elif isinstance(error, TimeArgError):
        text = f":information_source: {error}. For example: `/dna timeline stg_orders 7d`."
    elif isinstance(error, InvalidTransition):
        text = f":no_entry_sign: {error}"
    elif isinstance(error, (ColumnNotFound, IncidentNotFound)):
        text = f":mag: {error}"
    elif isinstance(error, OpenMetadataError):
        text = f":electric_plug: OpenMetadata trouble: {error}"
    elif isinstance(error, DnaBotError):
        text = f":warning: {error}"
    else:
        reference = uuid.uuid4().hex[:10]
        log.error("unexpected error %s: %s", reference, scrub(repr(error)), exc_info=error)
        return f"Something went wrong (reference {reference})", render_error(reference)
    text = scrub(text)
    return text, [section(text)]


def _send(body: dict[str, Any], respond: Any, client: Any, text: str, blocks: list[dict[str, Any]]) -> None:
    if body.get("response_url"):  # commands and message buttons: ephemeral via the response_url
        respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
        return
    user = body.get("user_id") or (body.get("user") or {}).get("id") or (body.get("event") or {}).get("user")
    event = body.get("event") or {}
    if event.get("channel") and user:
        thread = event.get("thread_ts") or event.get("ts")
        client.chat_postEphemeral(channel=event["channel"], user=user, text=text, blocks=blocks, thread_ts=thread)
    elif user:  # a modal submission has no channel of its own: tell the user in a DM
        client.chat_postMessage(channel=user, text=text, blocks=blocks)


def handle_listener_error(error: Exception, body: dict[str, Any], respond: Any, client: Any) -> None:
    """Bolt's global error handler: every listener failure ends here, after the ack."""
    text, blocks = reply_for(error)
    try:
        _send(body, respond, client, text, blocks)
    except Exception as exc:  # the user cannot be told; the log still has it
        log.warning("could not report an error to the user: %s", scrub(repr(exc)))
