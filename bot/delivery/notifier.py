"""The outbox drainer: delivers what incidents owe Slack (and OpenMetadata), once, in order, whatever fails.

Rows are written by the store in the transaction of the change that causes them (`storage.persistence.outbox`). Any
replica drains: `outbox.claim` hands each replica the oldest due row of distinct lanes (one lane per incident),
this module performs the Slack call *outside* any transaction, then records the outcome — the row delivered
with the Slack `ts`, the thread remembered, follow-up rows owed — in one transaction. A failure is retried
with backoff (Slack's `Retry-After` when it gives one) and parked as dead after DNABOT_OUTBOX_MAX_ATTEMPTS.
A row retried after an attempt of unknown outcome first looks for the message that attempt may have posted
(`bot.delivery.lookup`: only then, and at most once per channel per minute). A message Slack refuses for its content
(`msg_blocks_too_long`, `invalid_blocks`) is never sent again as it was: rendered smaller once, then replaced by a
short message pointing to `dnabot incident N`.

Kinds: `card` (post the thread's parent, or update it in place), `details` (the technical replies),
`lineage_png` (the picture), `notice` (a link in subscribed channels), `reply` (one history entry),
`digest` (a prepared message), `om_status` (a write-back to OpenMetadata, through `om_writer`).
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.blocks import card_fallback_text, render_incident_card
from bot.blocks.incident import incident_pointer
from bot.core.routing import Router
from bot.delivery import lookup
from bot.delivery.thread import (
    SMALLER_TEXT,
    NotYet,
    Permanent,
    PublishResult,
    Retryable,
    Skip,
    SlackDelivery,
    bare_client,
    make_client,
    release_reads,
)
from storage import logctx
from storage.errors import DnaBotError, OMUnavailable
from storage.persistence import incidents, outbox, threads
from storage.persistence.coordination import replica_id
from storage.persistence.db import session_factory
from storage.persistence.incident_views import EventView, IncidentDetailView, IncidentView
from storage.persistence.outbox import OutboxRow

__all__ = [
    "SMALLER_TEXT",
    "NotYet",
    "Notifier",
    "Permanent",
    "PublishResult",
    "Retryable",
    "Skip",
    "bare_client",
    "make_client",
]

log = logging.getLogger(__name__)

EVENT_TYPE = lookup.EVENT_TYPE
Mentions = Callable[[list[str]], Mapping[str, str]]
OMWriter = Callable[[OutboxRow], None]


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


def _dead_may_have_posted(session: Session, row: OutboxRow) -> bool:
    """Whether one of the dead rows of the same kind before `row` in its lane ended on an attempt that may have
    reached Slack (its last error says what the next attempt would have had to do)."""
    dead = [r for r in outbox.rows(session, status=outbox.DEAD, lane=row.lane, limit=20) if r.kind == row.kind]
    earlier = [r for r in dead if r.id < row.id]
    return len(dead) == 20 or any(lookup.must_look(r.attempts + 1, r.last_error) for r in earlier)


class Notifier(SlackDelivery):
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
        history: lookup.HistoryBudget | None = None,
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
        self.history = history or lookup.HistoryBudget()
        self._local = threading.local()  # the attempt under way, per thread (listeners drain beside the ticks)

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
        self._local.attempt = lookup.Attempt(look=lookup.must_look(row.attempts, row.last_error))
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
        # what the next attempt must do: read Slack back first only if this one may have posted something
        reason = lookup.marked(reason, row.attempts + (1 if counted else 0), self._attempt.look_next(exc))
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
        if isinstance(exc, lookup.LookLater):  # no look-up, no post: nothing reached Slack
            return str(exc), exc.seconds, False, False
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

    # ------------------------------------------------------------------------------------------ the kinds

    def _do_card(self, session: Session, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        assert row.incident_id is not None
        detail = incidents.get_incident(session, row.incident_id)
        incident = detail.incident
        thread = threads.thread_of(session, incident.id)
        newer = thread is not None and outbox.newer_pending(session, row)
        # Slack may already have a card: an earlier try of this row may have posted it, or an earlier card row
        # died after a try of unknown outcome.
        if thread is None and outbox.failed_before(session, row) and _dead_may_have_posted(session, row):
            self._attempt.look = True
        release_reads(session)
        if thread is None:
            if incident.status == "resolved" and not self._attempt.look:
                raise Skip("resolved before its card was posted")
            return self._open_thread(detail, row, result)
        if newer:
            raise Skip("a newer version of the card follows")
        if thread.posted_version >= _card_version(row):
            raise Skip("the card already shows this version")
        self._update_card(detail, thread.channel, thread.ts)
        if incident.id not in result.updated:
            result.updated.append(incident.id)

        def mark(session: Session, now: datetime) -> None:
            threads.mark_posted(
                session, incident.id, version=incident.version, last_event_id=thread.last_event_id, now=now
            )

        return {"result": {"channel": thread.channel, "ts": thread.ts}, "then": [mark]}

    def _update_card(self, detail: IncidentDetailView, channel: str, ts: str) -> None:
        incident = detail.incident
        text, pointer = card_fallback_text(incident), incident_pointer(incident.id)
        self._send(self.client.chat_update, text, self._card(detail), pointer, posts=False, channel=channel, ts=ts)

    def _open_thread(self, detail: IncidentDetailView, row: OutboxRow, result: PublishResult) -> dict[str, Any]:
        """Post the incident's card — unless Slack already has one. When an earlier attempt may have reached Slack
        without its answer being recorded, the channel is read back since the incident opened first; any other
        attempt posts at once (no history call: the fast path, and `conversations.history` is rate-limited hard
        for some apps)."""
        incident = detail.incident
        channel = self.router.route(incident)
        if not channel:
            raise NotYet("no channel for new incident threads: set DNABOT_CHANNEL or DNABOT_CONFIG")
        found = self._look(
            channel,
            lambda: lookup.find_in_channel(
                self.client, channel, incident.opened_at, lambda p: p.get("incident_id") == incident.id
            ),
        )
        self._attempt.saw(found is not None)
        if found is not None:
            ts = str(found["ts"])
            log.info("incident %s: card found in %s (ts %s) from an interrupted delivery", incident.id, channel, ts)
            self._update_card(detail, channel, ts)  # it may show an older state (even "open" for a resolved one)
        elif incident.status == "resolved":
            raise Skip("resolved before its card was posted")
        else:
            answer = self._send(
                self.client.chat_postMessage,
                card_fallback_text(incident),
                self._card(detail),
                incident_pointer(incident.id),
                channel=channel,
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
