"""The outbox drainer: delivers what incidents owe Slack (and OpenMetadata), once, in order, whatever fails.

Rows are written by the store in the transaction of the change that causes them (`storage.outbox`). Any
replica drains: `outbox.claim` hands each replica the oldest due row of distinct lanes (one lane per incident),
this module performs the Slack call *outside* any transaction, then records the outcome — the row delivered
with the Slack `ts`, the thread remembered, follow-up rows owed — in one transaction. A failure is retried
with backoff (Slack's `Retry-After` when it gives one) and parked as dead after DNABOT_OUTBOX_MAX_ATTEMPTS.
A retried row first looks for the message an interrupted attempt may have posted (`bot.slack_lookup`).

Kinds: `card` (post the thread's parent, or update it in place), `details` (the technical replies),
`lineage_png` (the picture), `notice` (a link in subscribed channels), `reply` (one history entry),
`digest` (a prepared message), `om_status` (a write-back to OpenMetadata, through `om_writer`).
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot import slack_lookup as lookup
from bot.blocks import card_fallback_text, render_incident_card, render_incident_thread, render_status_change
from bot.lineage_png import incident_png
from bot.routing import Router
from storage import incidents, logctx, outbox, subscriptions, threads
from storage.coordination import replica_id
from storage.db import session_factory
from storage.errors import DnaBotError, OMUnavailable
from storage.incident_views import EventView, IncidentDetailView, IncidentView
from storage.outbox import OutboxRow

log = logging.getLogger(__name__)

EVENT_TYPE = lookup.EVENT_TYPE
Mentions = Callable[[list[str]], Mapping[str, str]]
OMWriter = Callable[[OutboxRow], None]


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


def _status_event(events: list[EventView]) -> EventView | None:
    """The latest event that set the status (the card shows who and when)."""
    return next((e for e in reversed(events) if e.status_to), None)


def _last_event_id(events: list[EventView]) -> int | None:
    return max((e.id for e in events), default=None)


def _card_version(row: OutboxRow) -> int:
    """The incident version a `card:<id>:v<version>` row was owed for."""
    try:
        return int(row.key.rpartition(":v")[2])
    except ValueError:
        return 1 << 30  # an unknown shape: always update


def _release(session: Session) -> None:
    """End the read transaction before a Slack call: no database snapshot or lock is held while Slack answers."""
    session.rollback()


class Notifier:
    """Drains the outbox into Slack through `client`, in the channels `router` picks."""

    def __init__(
        self,
        client: WebClient | None,
        router: Router | None = None,
        *,
        om_ui_url: str | None = None,
        mentions: Mentions | None = None,
        om_writer: OMWriter | None = None,
        holder: str | None = None,
        claim_seconds: float = 30.0,
        max_attempts: int = 10,
        max_backoff_seconds: float = 300.0,
        batch: int = 20,
        on_delivery: Callable[[str, str], None] | None = None,
    ) -> None:
        self.timeout = max(1, min(10, int(claim_seconds / 3)))  # a call always ends well inside its claim
        self._client = bare_client(client, self.timeout) if client is not None else None
        self.router = router or Router([], "")
        self.om_ui_url = om_ui_url
        self.mentions = mentions
        self.om_writer = om_writer
        self.holder = holder or replica_id()
        self.claim_seconds = claim_seconds
        self.max_attempts = max_attempts
        self.max_backoff_seconds = max_backoff_seconds
        self.batch = batch
        self.on_delivery = on_delivery

    @property
    def client(self) -> WebClient:
        """The Slack client (a drainer of write-back lanes alone has none)."""
        if self._client is None:
            raise NotYet("this drainer delivers no Slack messages")
        return self._client

    # ------------------------------------------------------------------------------------------ draining

    def publish(self, engine: Engine, *, now: datetime | None = None, lanes: list[str] | None = None) -> PublishResult:
        """Deliver every due row (of `lanes`, or all); rows that fail wait their backoff in the outbox."""
        result = PublishResult()
        clock: Callable[[], datetime] = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
        for _ in range(10_000):  # a bound, not a budget: each round delivers or backs off every row it claims
            # A token per claim, not just the replica's name: a listener's drain and the periodic one in the same
            # process must not settle each other's rows.
            token = f"{self.holder}/{uuid.uuid4().hex[:8]}"
            rows = outbox.claim(
                engine, token, now=clock(), lease_seconds=self.claim_seconds, limit=self.batch, lanes=lanes
            )
            if not rows:
                break
            for row in rows:
                # The rows of a batch go out one after the other: renew each claim just before its delivery, and
                # leave the row alone if the claim ran out meanwhile (another deliverer may have it now).
                if outbox.extend_claim(engine, row.id, token, now=clock(), lease_seconds=self.claim_seconds):
                    self._deliver(engine, row, result, clock())
        return result

    def _deliver(self, engine: Engine, row: OutboxRow, result: PublishResult, now: datetime) -> None:
        with logctx.bind(incident_id=row.incident_id):
            self._deliver_row(engine, row, result, now)

    def _deliver_row(self, engine: Engine, row: OutboxRow, result: PublishResult, now: datetime) -> None:
        factory = session_factory(engine)
        token = str(row.claimed_by)
        handler = getattr(self, f"_do_{row.kind}", None)
        try:
            if handler is None:
                raise DnaBotError(f"unknown outbox kind {row.kind!r}")
            with factory() as session:
                outcome = handler(session, row, result)
            with factory.begin() as session:
                if not outbox.complete(session, row.id, token, now=now, result=outcome.get("result")):
                    log.warning("outbox row %s (%s) was taken over by another replica mid-delivery", row.id, row.key)
                    session.rollback()
                    return
                for after in outcome.get("then", ()):
                    after(session, now)
            result.delivered += 1
            if row.incident_id in result.failed:  # failed earlier in this drain, delivered now
                result.failed.remove(row.incident_id)
            self._observe(row.kind, "delivered")
        except Skip as why:
            with factory.begin() as session:
                outbox.complete(session, row.id, token, now=now, status=outbox.SKIPPED, note=str(why) or None)
            self._observe(row.kind, "skipped")
        except Exception as exc:  # every failure is recorded on the row; none may stop the drain
            self._failed(engine, row, exc, result, now)

    def _failed(self, engine: Engine, row: OutboxRow, exc: Exception, result: PublishResult, now: datetime) -> None:
        reason, delay, permanent, counted = self._classify(exc, row)
        token = str(row.claimed_by)
        with session_factory(engine).begin() as session:
            if permanent:
                status = outbox.DEAD if outbox.give_up(session, row.id, token, now=now, error=reason) else None
            else:
                status = outbox.retry_later(
                    session,
                    row.id,
                    token,
                    now=now,
                    error=reason,
                    delay_seconds=delay,
                    max_attempts=self.max_attempts,
                    counted=counted,
                )
            if status == outbox.DEAD:
                result.dead += 1
                self._dead_letter(session, row, reason, now)
        level = logging.ERROR if status == outbox.DEAD else logging.WARNING
        log.log(level, "outbox %s %s (attempt %s): %s", row.kind, row.key, row.attempts, reason)
        self._observe(row.kind, "dead" if status == outbox.DEAD else "retry")
        if row.incident_id is not None and row.incident_id not in result.failed:
            result.failed.append(row.incident_id)

    def _classify(self, exc: Exception, row: OutboxRow) -> tuple[str, float, bool, bool]:
        """(reason, delay before the next attempt, permanent?, does the attempt count towards dead?)"""
        backoff = min(self.max_backoff_seconds, 2.0 ** max(0, row.attempts - 1)) * random.uniform(0.8, 1.2)
        waiting = min(self.max_backoff_seconds, 60.0)  # for a cause a person fixes: check now and then, forever
        if isinstance(exc, SlackApiError):
            error = str(exc.response.get("error") or "")
            status = getattr(exc.response, "status_code", 200)
            reason = f"Slack {row.kind}: HTTP {status} {error}".strip()
            if status == 429:
                wait = lookup.retry_after(exc)
                return reason, wait if wait is not None else backoff, False, True
            if status < 500 and error in lookup.WAITING_SLACK_ERRORS:
                return f"{reason} (waiting for the workspace to be fixed)", waiting, False, False
            return reason, backoff, status < 500 and error in lookup.PERMANENT_SLACK_ERRORS, True
        if isinstance(exc, NotYet):
            return str(exc), waiting, False, False
        if isinstance(exc, Retryable):
            return str(exc), backoff, False, True
        if isinstance(exc, (SlackClientError, OSError, TimeoutError, OMUnavailable)):
            return f"{type(exc).__name__}: {exc}"[:500], backoff, False, True
        if isinstance(exc, DnaBotError):
            return str(exc)[:500], backoff, True, True
        return f"{type(exc).__name__}: {exc}"[:500], backoff, False, True

    def _dead_letter(self, session: Session, row: OutboxRow, reason: str, now: datetime) -> None:
        """A write-back that will never happen is told on the incident (and so in its thread)."""
        if row.kind == "om_status" and row.incident_id is not None:
            state, target = row.payload.get("state"), row.payload.get("test_fqn")
            note = f"Could not update OpenMetadata ({state} on {target}): {reason}"
            incidents.add_note(session, row.incident_id, actor=incidents.BOT, note=note[:500], now=now)

    def _observe(self, kind: str, outcome: str) -> None:
        if self.on_delivery is not None:
            self.on_delivery(kind, outcome)

    # ------------------------------------------------------------------------------------------ rendering

    def owner_mentions(self, incident: IncidentView) -> dict[str, str]:
        """OpenMetadata owner name → Slack id: the routing file's `owners`, then the `mentions` lookup."""
        owners = [str(o) for o in incident.details.get("owners") or []]
        found = {name: self.router.owners[name] for name in owners if name in self.router.owners}
        missing = [name for name in owners if name not in found]
        if missing and self.mentions is not None:
            found.update({k: v for k, v in self.mentions(missing).items() if v})
        return found

    def _card(self, detail: IncidentDetailView) -> list[dict[str, Any]]:
        incident = detail.incident
        return render_incident_card(
            incident,
            owner_mentions=self.owner_mentions(incident),
            om_url=self.om_ui_url,
            status_event=_status_event(detail.events),
        )

    def _thread(self, session: Session, row: OutboxRow) -> tuple[IncidentDetailView, threads.ThreadView]:
        """The incident and its thread, for a row that goes into the thread.

        No thread yet means the card has not gone out (it failed, or waits): the row is skipped, not held — a card
        posted later shows the incident as it is then, and a held row would block the card behind it."""
        assert row.incident_id is not None
        detail = incidents.get_incident(session, row.incident_id)
        thread = threads.thread_of(session, row.incident_id)
        if thread is None:
            raise Skip(f"incident #{row.incident_id} has no Slack thread: its card, once posted, tells it")
        _release(session)
        return detail, thread

    # ------------------------------------------------------------------------------------------ the kinds

    def _do_card(self, session: Session, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        assert row.incident_id is not None
        detail = incidents.get_incident(session, row.incident_id)
        incident = detail.incident
        thread = threads.thread_of(session, incident.id)
        newer = thread is not None and outbox.newer_pending(session, row)
        # Slack may already have a card: this row was tried before, or an earlier card row died after trying.
        look = thread is None and (row.retried or outbox.failed_before(session, row))
        _release(session)
        if thread is None:
            if incident.status == "resolved" and not look:
                raise Skip("resolved before its card was posted")
            return self._open_thread(detail, row, result, look=look)
        if newer:
            raise Skip("a newer version of the card follows")
        if thread.posted_version >= _card_version(row):
            raise Skip("the card already shows this version")
        self.client.chat_update(
            channel=thread.channel, ts=thread.ts, text=card_fallback_text(incident), blocks=self._card(detail)
        )
        if incident.id not in result.updated:
            result.updated.append(incident.id)

        def mark(session: Session, now: datetime) -> None:
            threads.mark_posted(
                session, incident.id, version=incident.version, last_event_id=thread.last_event_id, now=now
            )

        return {"result": {"channel": thread.channel, "ts": thread.ts}, "then": [mark]}

    def _open_thread(
        self, detail: IncidentDetailView, row: OutboxRow, result: PublishResult, *, look: bool
    ) -> dict[str, Any]:
        """Post the incident's card — unless Slack already has one. When an earlier attempt may have reached Slack
        without its answer being recorded (`look`), the channel is read back since the incident opened first; a
        first attempt posts at once (no history call: the fast path, and `conversations.history` is rate-limited
        hard for some apps)."""
        incident = detail.incident
        channel = self.router.route(incident)
        if not channel:
            raise NotYet("no channel for new incident threads: set DNABOT_CHANNEL or DNABOT_CONFIG")
        found = None
        if look:
            found = lookup.find_in_channel(
                self.client, channel, incident.opened_at, lambda p: p.get("incident_id") == incident.id
            )
        if found is not None:
            ts = str(found["ts"])
            log.info("incident %s: card found in %s (ts %s) from an interrupted delivery", incident.id, channel, ts)
            self.client.chat_update(  # it may show an older state (even "open" for an incident resolved since)
                channel=channel, ts=ts, text=card_fallback_text(incident), blocks=self._card(detail)
            )
        elif incident.status == "resolved":
            raise Skip("resolved before its card was posted")
        else:
            answer = self.client.chat_postMessage(
                channel=channel,
                text=card_fallback_text(incident),
                blocks=self._card(detail),
                metadata=lookup.metadata(row.key, incident.id, incident.fingerprint),
            )
            channel, ts = answer.get("channel") or channel, str(answer["ts"])
        result.posted.append(incident.id)
        last_event = _last_event_id(detail.events)

        def remember(session: Session, now: datetime) -> None:
            threads.record_thread(
                session, incident.id, channel, ts, version=incident.version, last_event_id=last_event, now=now
            )
            lane = outbox.incident_lane(incident.id)
            for kind in ("details", "lineage_png", "notice"):  # the rest of the thread, in this order
                outbox.enqueue(session, f"{kind}:{incident.id}:{ts}", kind, lane=lane, now=now, incident_id=incident.id)

        return {"result": {"channel": channel, "ts": ts}, "then": [remember]}

    def _do_details(self, session: Session, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        detail, thread = self._thread(session, row)
        present = (
            lookup.keys_in_thread(lookup.thread_messages(self.client, thread.channel, thread.ts))
            if row.retried
            else set()
        )
        for n, blocks in enumerate(render_incident_thread(detail)):
            key = f"{row.key}#{n}"
            if key in present:
                continue
            self.client.chat_postMessage(
                channel=thread.channel,
                thread_ts=thread.ts,
                text=f"Incident #{detail.incident.id}: the details",
                blocks=blocks,
                metadata=lookup.metadata(key, detail.incident.id),
            )
            result.replies += 1
        return {"result": {"channel": thread.channel, "thread_ts": thread.ts}}

    def _do_lineage_png(self, session: Session, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        detail, thread = self._thread(session, row)
        incident = detail.incident
        filename = f"incident-{incident.id}-lineage.png"
        if row.retried and lookup.file_in_thread(
            lookup.thread_messages(self.client, thread.channel, thread.ts), filename
        ):
            return {"result": {"channel": thread.channel, "adopted": True}}
        self.client.files_upload_v2(
            channel=thread.channel,
            thread_ts=thread.ts,
            content=incident_png(incident),
            filename=filename,
            title=f"Lineage of incident #{incident.id}: cause → broken columns → dashboards",
        )
        return {"result": {"channel": thread.channel, "thread_ts": thread.ts}}

    def _do_notice(self, session: Session, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        """A short notice linking to the new thread in every subscribed channel but the routed one."""
        detail, thread = self._thread(session, row)
        incident = detail.incident
        others = sorted(subscriptions.channels_for(session, incident) - {thread.channel})
        _release(session)
        if not others:
            raise Skip("no subscribed channel")
        link = self.client.chat_getPermalink(channel=thread.channel, message_ts=thread.ts).get("permalink")
        text = f":rotating_light: {card_fallback_text(incident)} — <{link}|open the thread>"
        for other in others:
            key = f"{row.key}@{other}"
            if row.retried and lookup.find_in_channel(
                self.client, other, row.created_at, lambda p, k=key: p.get("key") == k
            ):
                continue
            try:
                self.client.chat_postMessage(
                    channel=other, text=text, unfurl_links=False, metadata=lookup.metadata(key, incident.id)
                )
            except SlackApiError as exc:
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
        if not (
            row.retried
            and row.key in lookup.keys_in_thread(lookup.thread_messages(self.client, thread.channel, thread.ts))
        ):
            self.client.chat_postMessage(
                channel=thread.channel,
                thread_ts=thread.ts,
                text=card_fallback_text(detail.incident),
                blocks=render_status_change(event, detail.incident),
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

    def _do_digest(self, session: Session, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        channel = str(row.payload["channel"])
        if row.retried and lookup.find_in_channel(
            self.client, channel, row.created_at, lambda p: p.get("key") == row.key
        ):
            return {"result": {"channel": channel, "adopted": True}}
        answer = self.client.chat_postMessage(
            channel=channel,
            text=row.payload.get("text") or "Daily incident digest",
            blocks=row.payload.get("blocks"),
            unfurl_links=False,
            unfurl_media=False,
            metadata=lookup.metadata(row.key),
        )
        return {"result": {"channel": channel, "ts": answer.get("ts")}}

    def _do_om_status(self, session: Session, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        if self.om_writer is None:
            raise NotYet("no OpenMetadata writer in this process")
        self.om_writer(row)
        return {"result": {"state": row.payload.get("state")}}

    # --------------------------------------------------------------------------------------- reconciling

    def reconcile(self, engine: Engine, *, now: datetime | None = None) -> int:
        """Owe a card to every incident Slack is behind on with no card waiting (`threads.owe_missing_cards`)."""
        with session_factory(engine).begin() as session:
            return threads.owe_missing_cards(session, now=now or datetime.now(UTC))
