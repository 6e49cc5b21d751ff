"""The one place that turns errors into what the user sees: domain errors → friendly text, bugs → a reference id."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bot.blocks import render_ambiguous, render_error, render_not_found
from bot.blocks.kit import esc, message, section
from bot.core import redact
from bot.core.authz import NotAllowed
from bot.core.timeparse import TimeArgError
from storage.errors import (
    AmbiguousDataset,
    ColumnNotFound,
    DatasetNotFound,
    DnaBotError,
    IncidentNotFound,
    InvalidTransition,
    OpenMetadataError,
)

log = logging.getLogger("dnabot.slack")
STORE_DOWN = ":floppy_disk: The DNA store cannot be reached right now, so I cannot answer. Try again in a minute."
TOO_SLOW = ":hourglass: That took too long, so I gave up. Try again in a minute."


class UsageError(DnaBotError):
    """The user typed something we cannot parse; the text is the hint."""


def scrub(text: str) -> str:
    """`text` with the configured secrets and anything that looks like a token, a key or a URL password masked."""
    return redact.scrub(text, redact.known())


def _outage(error: BaseException) -> str | None:
    """The message for an outage the user can only wait out (the store down, a call that timed out), or None."""
    if isinstance(error, (OperationalError, PoolTimeout)) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    ):
        return STORE_DOWN
    if isinstance(error, TimeoutError):
        return TOO_SLOW
    return None


def reply_for(error: BaseException) -> tuple[str, list[dict[str, Any]]]:
    """The (fallback text, blocks) that tell a user what went wrong; unknown errors are logged with a reference id.

    The text is plain words (names, queries and OpenMetadata's messages in it are data): the blocks show it
    escaped, and `message` escapes it as the notification text."""
    if isinstance(error, AmbiguousDataset):
        return scrub(str(error)), render_ambiguous(error.query, error.candidates)
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
        # whoever asked sees what went wrong, not where the server lives (admins have `/dna status` and the log)
        text = f":electric_plug: OpenMetadata trouble: {redact.hide_internal(scrub(str(error)))}"
    elif isinstance(error, DnaBotError):
        text = f":warning: {error}"
    elif (outage := _outage(error)) is not None:
        reference = uuid.uuid4().hex[:10]
        log.warning("outage %s: %s", reference, scrub(repr(error)))  # no stack: the cause is outside the bot
        text = f"{outage} (reference {reference})"
        return text, [section(esc(text))]
    else:
        reference = uuid.uuid4().hex[:10]
        log.error("unexpected error %s: %s", reference, scrub(repr(error)), exc_info=error)
        return f"Something went wrong (reference {reference})", render_error(reference)
    text = scrub(text)
    return text, [section(esc(text))]


def _send(body: dict[str, Any], respond: Any, client: Any, text: str, blocks: list[dict[str, Any]]) -> None:
    reply = message(text, blocks)
    if body.get("response_url") and respond is not None:  # commands and message buttons: ephemeral, response_url
        respond(**reply, response_type="ephemeral", replace_original=False)
        return
    user = body.get("user_id") or (body.get("user") or {}).get("id") or (body.get("event") or {}).get("user")
    event = body.get("event") or {}
    if event.get("type") == "app_mention" and event.get("channel"):  # a mention is answered in its thread
        thread = event.get("thread_ts") or event.get("ts")
        client.chat_postMessage(channel=event["channel"], thread_ts=thread, **reply)
    elif event.get("type") == "app_home_opened":  # the Home tab has no place for a message; the log has it
        log.warning("App Home for %s was not published: %s", user, text)
    elif event.get("channel") and user:
        thread = event.get("thread_ts") or event.get("ts")
        client.chat_postEphemeral(channel=event["channel"], user=user, thread_ts=thread, **reply)
    elif user:  # a modal submission has no channel of its own: tell the user in a DM
        client.chat_postMessage(channel=user, **reply)


def handle_listener_error(error: Exception, body: dict[str, Any], respond: Any, client: Any) -> None:
    """Bolt's global error handler: every listener failure ends here, after the ack."""
    text, blocks = reply_for(error)
    try:
        _send(body, respond, client, text, blocks)
    except Exception as exc:  # the user cannot be told; the log still has it
        log.warning("could not report an error to the user: %s", scrub(repr(exc)))


def reported(listener: Callable[..., None]) -> Callable[..., None]:
    """Wrap a listener so that its failures are told to the user from inside it and never raised back to Bolt.

    Why not only the global handler: when a listener that already called `ack()` raises within a few
    milliseconds (a store that refuses connections fails that fast), Bolt's thread runner resets the ack it
    had recorded, and Slack gets a 500 or nothing ("did not ack") instead of the 200 already decided. The
    listener must declare `body` (and `respond` / `client`) among its parameters for the report to reach the
    user; Bolt reads the parameters through `functools.wraps`."""

    @functools.wraps(listener)
    def run(**kwargs: Any) -> None:
        try:
            listener(**kwargs)
        except Exception as exc:
            handle_listener_error(exc, kwargs.get("body") or {}, kwargs.get("respond"), kwargs.get("client"))

    return run
