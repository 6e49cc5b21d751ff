"""Wiring of the outbox drainer: the routing rules, one `Notifier` per process, the drains after a click.

One `Notifier` per process and client; the listeners drain right after a click, so the card changes while the
user looks at it."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.core import metrics, services
from bot.core.mentions import SlackMentions
from bot.core.routing import Router, router_for
from bot.core.settings import Settings
from bot.delivery import lookup, writeback
from bot.delivery.notifier import Notifier, PublishResult, bare_client
from storage.errors import DnaBotError
from storage.persistence import db, incidents, outbox, threads
from storage.persistence.coordination import replica_id
from storage.persistence.outbox import OutboxRow

log = logging.getLogger(__name__)

_notifiers: dict[tuple[int, int], Notifier] = {}
_lock = threading.Lock()
# One read-back budget for every drainer of this process (the ticks' and the listeners'): Slack counts
# `conversations.history` calls per app, not per drainer. Replicas share nothing: each keeps its own.
HISTORY = lookup.HistoryBudget()


class _Stopping(Exception):
    """Raised inside a drain once the process is shutting down: the rest of its batch is handed back."""

    def __init__(self, token: str, result: PublishResult) -> None:
        super().__init__(token)
        self.token = token
        self.result = result


class StoppableNotifier(Notifier):
    """A drainer that stops cleanly on shutdown: `stop()` lets the delivery under way in each drain finish,
    hands the rest of each claimed batch back to the outbox (claimable at once by another replica), and takes
    no new rows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopping = threading.Event()
        self._drains = 0
        self._idle = threading.Condition()

    def publish(self, engine: Engine, *, now: datetime | None = None, lanes: list[str] | None = None) -> PublishResult:
        if self._stopping.is_set():
            return PublishResult()
        with self._idle:
            self._drains += 1
        try:
            return super().publish(engine, now=now, lanes=lanes)
        except _Stopping as stop:
            outbox.hand_back(engine, stop.token)
            return stop.result
        finally:
            with self._idle:
                self._drains -= 1
                self._idle.notify_all()

    def _deliver(self, engine: Engine, row: OutboxRow, result: PublishResult, now: datetime) -> None:
        if self._stopping.is_set():
            raise _Stopping(str(row.claimed_by), result)
        super()._deliver(engine, row, result, now)

    def stop(self, engine: Engine, timeout: float) -> bool:
        """Stop draining: wait up to `timeout` s for the deliveries under way, then hand back whatever this
        process still holds. True when every drain finished in time."""
        self._stopping.set()
        with self._idle:
            finished = self._idle.wait_for(lambda: self._drains == 0, timeout)
        try:
            handed = outbox.hand_back(engine, self.holder, attempted=True)  # drains that did not finish in time
        except SQLAlchemyError as exc:
            log.warning("could not hand the outbox claims back (they run out by themselves): %s", exc)
            return finished
        if handed:
            log.warning("handed %d outbox rows back mid-delivery: the next deliverer checks Slack first", handed)
        return finished


def notifier_for(settings: Settings, client: WebClient) -> Notifier:
    """A drainer for this process: Slack through `client`, OpenMetadata write-backs, the outbox settings."""
    try:
        router = router_for(settings)
    except DnaBotError as exc:  # buttons still update existing threads; new threads wait for a channel
        log.warning("%s: new incident threads wait in the outbox", exc)
        router = Router([], "")
    return StoppableNotifier(
        client,
        router,
        om_ui_url=settings.openmetadata_ui_url,
        mentions=SlackMentions(services.engine_for(settings), bare_client(client, timeout=5)),
        om_writer=writeback.writer(settings),
        holder=replica_id(settings.replica_id),
        claim_seconds=settings.outbox_claim_seconds,
        max_attempts=settings.outbox_max_attempts,
        max_backoff_seconds=settings.outbox_max_backoff_seconds,
        on_delivery=metrics.observe_delivery,
        history=HISTORY,
    )


def shared_notifier(settings: Settings, client: WebClient) -> Notifier:
    """One drainer per (settings, client) in this process (its mention cache is worth keeping)."""
    key = (id(settings), id(client))
    with _lock:
        if key not in _notifiers:
            _notifiers[key] = notifier_for(settings, client)
        return _notifiers[key]


def drain_incident(settings: Settings, client: WebClient, incident_id: int) -> PublishResult:
    """Deliver what one incident owes Slack now, in this thread (the other replicas skip the claimed rows)."""
    notifier = shared_notifier(settings, client)
    lanes = [outbox.incident_lane(incident_id), outbox.incident_lane(incident_id, "om")]
    return notifier.publish(services.engine_for(settings), lanes=lanes)


def adopt_card(settings: Settings, incident_id: int, channel: str | None, ts: str | None) -> bool:
    """A button was clicked on a card the store has no thread for (e.g. posted before the outbox existed):
    make that message the incident's thread, so the change lands there. True when adopted."""
    if not channel or not ts:
        return False
    engine = services.engine_for(settings)
    try:
        with db.session_factory(engine).begin() as session:
            if threads.thread_of(session, incident_id) is not None:
                return False
            detail = incidents.get_incident(session, incident_id)
            last = max((e.id for e in detail.events), default=None)
            threads.record_thread(
                session,
                incident_id,
                channel,
                ts,
                version=detail.incident.version,
                last_event_id=last,
                now=datetime.now(UTC),
            )
            return True
    except IntegrityError:  # another replica recorded the thread meanwhile
        return False
