"""The thread's replies the outbox delivers, and the one way any outbox message goes to Slack.

The replies: the details, the lineage picture, notices in subscribed channels, history replies, digests. Every
message is read back first only when an earlier attempt may have posted, and never sent twice as the same refused
payload."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from bot.blocks import card_fallback_text, render_incident_thread, render_status_change
from bot.blocks.incident import incident_pointer
from bot.blocks.kit import MESSAGE_TEXT, esc, link, message, section
from bot.blocks.lineage_png import incident_png
from bot.delivery import lookup
from storage.errors import DnaBotError
from storage.persistence import incidents, subscriptions, threads
from storage.persistence.incident_views import IncidentDetailView
from storage.persistence.outbox import OutboxRow

log = logging.getLogger(__name__)

SMALLER_TEXT = MESSAGE_TEXT // 3  # the budget of the one re-render after Slack refused a message as too long
Blocks = list[dict[str, Any]]


@dataclass
class PublishResult:
    """What one drain did: incidents posted (new threads) and updated, replies added, incidents that failed."""

    posted: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    replies: int = 0
    failed: list[int] = field(default_factory=list)
    delivered: int = 0
    dead: int = 0

    def __eq__(self, other: object) -> bool:  # the counters of rows are bookkeeping, not what Slack saw
        if not isinstance(other, PublishResult):
            return NotImplemented
        mine = (self.posted, self.updated, self.replies, self.failed)
        return mine == (other.posted, other.updated, other.replies, other.failed)


class Skip(Exception):
    """Nothing to deliver for this row (e.g. the incident was resolved before its thread was ever posted)."""


class Retryable(DnaBotError):
    """A delivery that may succeed later (e.g. OpenMetadata down or busy): the outbox retries it."""


class Permanent(DnaBotError):
    """A delivery the other side refused for good (e.g. a 4xx from OpenMetadata): retrying cannot help."""


class NotYet(Exception):
    """The row cannot go out yet (its thread is not posted): retry it later."""


def make_client(token: str, *, base_url: str | None = None, timeout: int = 10) -> WebClient:
    """A WebClient without retry handlers: the outbox retries, after looking whether the first try landed."""
    kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
    return WebClient(token=token, timeout=timeout, retry_handlers=[], **kwargs)


def bare_client(client: WebClient, timeout: int) -> WebClient:
    """The same client (class, token, API URL) minus its retry handlers: an automatic re-send after a lost
    answer is exactly the double post the outbox exists to prevent."""
    return type(client)(token=client.token, base_url=client.base_url, timeout=timeout, retry_handlers=[])


def release_reads(session: Session) -> None:
    """End the read transaction before a Slack call: no database snapshot or lock is held while Slack answers."""
    session.rollback()


class SlackDelivery:
    """What every outbox kind uses to reach Slack, and the kinds that go into an incident's thread."""

    _client: WebClient | None
    history: lookup.HistoryBudget
    _local: threading.local

    @property
    def client(self) -> WebClient:
        """The Slack client (a drainer of write-back lanes alone has none)."""
        if self._client is None:
            raise NotYet("this drainer delivers no Slack messages")
        return self._client

    # ------------------------------------------------------------------------------------------ talking to Slack

    @property
    def _attempt(self) -> lookup.Attempt:
        attempt = getattr(self._local, "attempt", None)
        if attempt is None:
            attempt = self._local.attempt = lookup.Attempt(look=True)
        return attempt

    def _look(self, channel: str, read: Callable[[], Any]) -> Any:
        """Read Slack back (within the channel's read-back budget) — or nothing, when no earlier attempt may have
        posted: then `None`."""
        if not self._attempt.look:
            return None
        return self.history.read(channel, read)

    def _send(
        self, call: Callable[..., Any], text: str, blocks: Blocks | None, pointer: str, *, posts: bool = True, **kw: Any
    ) -> Any:
        """One message through `call` (`chat_postMessage`; `chat_update` with `posts=False`), as `message` makes it.

        `msg_blocks_too_long` and `invalid_blocks` are Slack's last word on a payload, never a reason to send it
        again: the blocks are rendered once more within a smaller budget, then replaced by a short message that
        points to `pointer`. Only when that is refused too does the error reach the outbox (which parks the row as
        dead: no retry)."""
        tries = [message(text, blocks)]
        if blocks is not None:
            note = f":warning: {esc(text)}: Slack could not show this message. {pointer} shows it in full."
            tries += [message(text, blocks, budget=SMALLER_TEXT, pointer=pointer), message(text, [section(note)])]
        tries = [t for n, t in enumerate(tries) if t not in tries[:n]]  # never the same payload twice
        for payload in tries[:-1]:
            try:
                return self._sent(call(**kw, **payload), posts)
            except SlackApiError as exc:
                if not lookup.refused_payload(exc):
                    raise
                log.warning("Slack refused a message (%s): sending it smaller", exc.response.get("error"))
        return self._sent(call(**kw, **tries[-1]), posts)

    def _sent(self, answer: Any, posts: bool) -> Any:
        if posts:
            self._attempt.sent = True
        return answer

    def _thread(self, session: Session, row: OutboxRow) -> tuple[IncidentDetailView, threads.ThreadView]:
        """The incident and its thread, for a row that goes into the thread.

        No thread yet means the card has not gone out (it failed, or waits): the row is skipped, not held — a card
        posted later shows the incident as it is then, and a held row would block the card behind it."""
        assert row.incident_id is not None
        detail = incidents.get_incident(session, row.incident_id)
        thread = threads.thread_of(session, row.incident_id)
        if thread is None:
            raise Skip(f"incident #{row.incident_id} has no Slack thread: its card, once posted, tells it")
        release_reads(session)
        return detail, thread

    # ------------------------------------------------------------------------------------------ thread kinds

    def _thread_keys(self, thread: threads.ThreadView) -> set[str]:
        """The outbox keys of the messages already in the thread (none read when no earlier attempt may have
        posted)."""
        messages = self._look(thread.channel, lambda: lookup.thread_messages(self.client, thread.channel, thread.ts))
        return lookup.keys_in_thread(messages or [])

    def _do_details(self, session: Session, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        """The technical replies, as many messages as Slack's total-text cap needs (`render_incident_thread`)."""
        detail, thread = self._thread(session, row)
        messages = render_incident_thread(detail)
        keys = [f"{row.key}#{n}" for n in range(len(messages))]
        present = self._thread_keys(thread)
        self._attempt.saw(bool(present & set(keys)))
        pointer = incident_pointer(detail.incident.id)
        for key, blocks in zip(keys, messages, strict=True):
            if key in present:
                continue
            self._send(
                self.client.chat_postMessage,
                f"Incident #{detail.incident.id}: the details",
                blocks,
                pointer,
                channel=thread.channel,
                thread_ts=thread.ts,
                metadata=lookup.metadata(key, detail.incident.id),
            )
            result.replies += 1
        return {"result": {"channel": thread.channel, "thread_ts": thread.ts}}

    def _do_lineage_png(self, session: Session, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        detail, thread = self._thread(session, row)
        incident = detail.incident
        filename = f"incident-{incident.id}-lineage.png"
        messages = self._look(thread.channel, lambda: lookup.thread_messages(self.client, thread.channel, thread.ts))
        found = lookup.file_in_thread(messages or [], filename)
        self._attempt.saw(found)
        if found:
            return {"result": {"channel": thread.channel, "adopted": True}}
        self.client.files_upload_v2(
            channel=thread.channel,
            thread_ts=thread.ts,
            content=incident_png(incident),
            filename=filename,
            title=f"Lineage of incident #{incident.id}: cause → broken columns → dashboards",
        )
        self._attempt.sent = True
        return {"result": {"channel": thread.channel, "thread_ts": thread.ts}}

    def _do_notice(self, session: Session, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        """A short notice linking to the new thread in every subscribed channel but the routed one."""
        detail, thread = self._thread(session, row)
        incident = detail.incident
        others = sorted(subscriptions.channels_for(session, incident) - {thread.channel})
        release_reads(session)
        if not others:
            raise Skip("no subscribed channel")
        url = self.client.chat_getPermalink(channel=thread.channel, message_ts=thread.ts).get("permalink")
        text = f"{card_fallback_text(incident)} — the thread: {url}"  # a bare URL: clients link it, no markup
        blocks = [section(f":rotating_light: {esc(card_fallback_text(incident))} — {link(url, 'open the thread')}")]
        keys = {other: f"{row.key}@{other}" for other in others}
        told = {  # every read-back first: the posts that follow need no more of them
            other
            for other in others
            if self._look(other, functools.partial(self._find_key, other, row, keys[other])) is not None
        }
        self._attempt.saw(bool(told))
        for other in sorted(set(others) - told):
            try:
                self._send(
                    self.client.chat_postMessage,
                    text,
                    blocks,
                    incident_pointer(incident.id),
                    channel=other,
                    unfurl_links=False,
                    metadata=lookup.metadata(keys[other], incident.id),
                )
            except SlackApiError as exc:
                if exc.response.status_code == 429 or lookup.unsure(exc):
                    raise  # Slack is busy, not refusing: the row retries (reading back the channels told so far)
                # One refusing channel (bot not invited, archived) must not hold back the others, nor the thread.
                log.warning("could not tell %s about incident %s: %s", other, incident.id, exc.response.get("error"))
        return {"result": {"channels": others}}

    def _do_reply(self, session: Session, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        detail, thread = self._thread(session, row)
        event_id = int(row.key.partition(":")[2])
        event = next((e for e in detail.events if e.id == event_id), None)
        if event is None:
            raise Skip("the history entry is gone")
        if thread.last_event_id is not None and event_id <= thread.last_event_id:
            raise Skip("the thread already tells it")
        present = row.key in self._thread_keys(thread)
        self._attempt.saw(present)
        if not present:
            self._send(
                self.client.chat_postMessage,
                card_fallback_text(detail.incident),
                render_status_change(event, detail.incident),
                incident_pointer(detail.incident.id),
                channel=thread.channel,
                thread_ts=thread.ts,
                metadata=lookup.metadata(row.key, detail.incident.id),
            )
            result.replies += 1

        def mark(session: Session, now: datetime) -> None:
            current = threads.thread_of(session, detail.incident.id)
            if current is not None:
                last = max(event_id, current.last_event_id or 0)
                threads.mark_posted(
                    session, detail.incident.id, version=current.posted_version, last_event_id=last, now=now
                )

        return {"result": {"channel": thread.channel, "thread_ts": thread.ts}, "then": [mark]}

    def _find_key(self, channel: str, row: OutboxRow, key: str) -> lookup.Message | None:
        return lookup.find_in_channel(self.client, channel, row.created_at, lambda p: p.get("key") == key)

    def _do_digest(self, session: Session, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        channel = str(row.payload["channel"])
        found = self._look(channel, lambda: self._find_key(channel, row, row.key))
        self._attempt.saw(found is not None)
        if found is not None:
            return {"result": {"channel": channel, "adopted": True}}
        answer = self._send(
            self.client.chat_postMessage,
            row.payload.get("text") or "Daily incident digest",
            row.payload.get("blocks"),
            "`/dna incidents open`",
            channel=channel,
            unfurl_links=False,
            unfurl_media=False,
            metadata=lookup.metadata(row.key),
        )
        return {"result": {"channel": channel, "ts": answer.get("ts")}}
