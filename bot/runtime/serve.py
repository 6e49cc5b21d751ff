"""`dnabot serve`: the Slack app (Socket Mode or HTTP) plus a scheduler whose tick syncs, finds incidents, posts.

A tick is: sync OpenMetadata → incident pipeline → deliver the outbox to Slack. APScheduler 3.x runs the jobs in
background threads. With several replicas on one PostgreSQL, a leader lease makes the tick and the digest run on
one replica at a time (and the sync lock guards the store besides); every replica drains the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import SQLAlchemyError

from bot.core import answers, heap, preflight, services
from bot.core.logs import configure_logging
from bot.core.settings import Settings
from bot.core.slack_client import build_client
from bot.delivery import digest
from bot.delivery.notifier import Notifier, PublishResult
from bot.delivery.wiring import StoppableNotifier, notifier_for, router_for, shared_notifier  # noqa: F401 - re-exported
from bot.runtime.http_protocol import with_read_timeout
from bot.runtime.webhook import sync_line, targeted_runner
from bot.slack.app import build_app
from storage.errors import DnaBotError
from storage.persistence import coordination, outbox
from storage.persistence.db import SyncAlreadyRunning, normalise_url, reap_dead_runs, session_factory

log = logging.getLogger(__name__)


@dataclass
class TickResult:
    """What one scheduled tick did."""

    sync: dict[str, Any] | None = None
    published: PublishResult | None = None
    skipped: str | None = None
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def tick(settings: Settings, notifier: Notifier) -> TickResult:
    """One scheduled pass: sync + incidents, then bring Slack up to date (even when the sync failed); logged as
    one line with its figures (INFO, or WARNING when something failed)."""
    began = time.perf_counter()
    result = TickResult()
    try:
        synced = asyncio.run(services.sync(settings))
        result.sync = synced.to_dict()
        if not synced.ok:
            result.errors.append(f"sync failed: {synced.error}")
        else:  # committed: rebuild the warm lineage graph now, not in the next question's time
            services.warm_graphs(settings)
    except SyncAlreadyRunning:
        result.skipped = "another sync is running"
    except DnaBotError as exc:
        result.errors.append(str(exc))
    try:
        engine = services.engine_for(settings)
        notifier.reconcile(engine)
        result.published = notifier.publish(engine)
    except (DnaBotError, SQLAlchemyError) as exc:
        result.errors.append(str(exc))
    result.seconds = round(time.perf_counter() - began, 3)
    log.log(logging.WARNING if result.errors else logging.INFO, "tick: %s", tick_line(result))
    return result


def tick_line(result: TickResult) -> str:
    """The one log line of a tick: the sync's figures, what reached Slack, what failed, how long it all took."""
    if result.sync is not None:
        parts = [sync_line(result.sync)]
    else:
        parts = [f"sync skipped ({result.skipped})" if result.skipped else "no sync"]
    if result.published is not None:
        sent = result.published
        parts.append(f"Slack {len(sent.posted)} posted, {len(sent.updated)} updated, {sent.replies} replies")
        if sent.failed:
            parts.append(f"{len(sent.failed)} incidents not delivered (retried)")
    parts.extend(result.errors)
    return "; ".join(parts) + f"; {result.seconds:.2f} s"


LEADER = coordination.SCHEDULER_LEASE


def lease_ttl(settings: Settings) -> float:
    """How long the leader's lease lasts without renewal: half a sync interval (at least 2 s, at most 5 min), so a
    dead leader is replaced within one interval."""
    return max(2.0, min(300.0, settings.sync_interval_seconds / 2))


class Replica:
    """One `dnabot serve` process's background work, coordinated with the others through the database.

    - every replica renews or tries to take the leader lease (`leases` row "scheduler") every third of its TTL;
    - only the leader runs the sync tick and the daily digest;
    - every replica drains the outbox (claims are exclusive, so replicas share the work without doubling it);
    - expired inbound ids, old mention threads and old delivered outbox rows are purged by the leader.
    """

    def __init__(self, settings: Settings, notifier: Notifier) -> None:
        self.settings = settings
        self.notifier = notifier
        self.holder = notifier.holder
        self.engine = services.engine_for(settings)
        self.leader = False
        self.webhook_worker: Any = None  # bot.runtime.webhook.TargetedSyncWorker when HTTP mode serves the webhook
        self._last_purge = 0.0
        self._lease_lock = threading.Lock()  # a heartbeat under way must not take the lease back after release()
        self._released = False

    def heartbeat(self) -> bool:
        """Renew or take the leader lease; True while this replica leads (never again after `release`)."""
        with self._lease_lock:
            leader = False if self._released else self._try_lease()
        if leader != self.leader:
            log.info("replica %s %s the scheduler lease", self.holder, "took" if leader else "lost")
        self.leader = leader
        return leader

    def _try_lease(self) -> bool:
        try:
            with session_factory(self.engine).begin() as session:
                return coordination.try_lease(
                    session, LEADER, self.holder, ttl_seconds=lease_ttl(self.settings), now=datetime.now(UTC)
                )
        except SQLAlchemyError as exc:
            log.warning("leader lease: the store is unreachable, not leading: %s", exc)
            return False

    def tick(self) -> TickResult | None:
        """The leader's sync tick (the other replicas skip it)."""
        if not self.heartbeat():
            return None
        self.purge()
        result = tick(self.settings, self.notifier)
        if self.webhook_worker is not None:  # webhook requests a dead replica left behind
            self.webhook_worker.kick()
        return result

    def drain(self) -> PublishResult | None:
        try:
            return self.notifier.publish(self.engine)
        except (SQLAlchemyError, DnaBotError) as exc:
            log.warning("outbox drain failed, retried at the next poll: %s", exc)
            return None

    def digest(self) -> dict[str, int]:
        if not self.heartbeat():
            return {}
        return digest.daily_digest(self.settings, self.notifier.client, self.notifier.router, notifier=self.notifier)

    def purge(self, every_seconds: float = 3600.0) -> None:
        if time.monotonic() - self._last_purge < every_seconds:
            return
        self._last_purge = time.monotonic()
        now = datetime.now(UTC)
        try:
            with session_factory(self.engine).begin() as session:
                coordination.purge_inbound(session, now)
                coordination.purge_threads(session, now - timedelta(days=30))
                outbox.purge(session, now - timedelta(days=7))
        except SQLAlchemyError as exc:
            log.warning("purge skipped: %s", exc)

    def release(self) -> None:
        """Give the lease up for good on a clean shutdown, so another replica leads at its next heartbeat."""
        with self._lease_lock:
            self._released = True
            self.leader = False
            try:
                with session_factory(self.engine).begin() as session:
                    if coordination.release_lease(session, LEADER, self.holder):
                        log.info("replica %s released the scheduler lease", self.holder)
            except SQLAlchemyError as exc:
                log.warning("could not release the scheduler lease (it runs out by itself): %s", exc)


def start_scheduler(settings: Settings, notifier: Notifier, replica: Replica | None = None) -> BackgroundScheduler:
    """The replica's jobs: the leader heartbeat, the tick (now and every DNABOT_SYNC_INTERVAL_SECONDS, leader
    only), the outbox drain (every DNABOT_OUTBOX_POLL_SECONDS) and the daily digest at DNABOT_DIGEST_HOUR_UTC."""
    replica = replica or Replica(settings, notifier)
    scheduler = BackgroundScheduler(timezone=UTC)
    common: dict[str, Any] = {"max_instances": 1, "coalesce": True}
    scheduler.add_job(replica.heartbeat, "interval", seconds=lease_ttl(settings) / 3, id="dnabot-heartbeat", **common)
    scheduler.add_job(
        replica.tick,
        "interval",
        seconds=settings.sync_interval_seconds,
        next_run_time=datetime.now(UTC),
        id="dnabot-tick",
        **common,
    )
    scheduler.add_job(replica.drain, "interval", seconds=settings.outbox_poll_seconds, id="dnabot-outbox", **common)
    # every replica: rebuild the warm lineage graph soon after another replica's sync commits (one small query
    # when nothing changed)
    warm = functools.partial(services.warm_graphs, settings)
    scheduler.add_job(warm, "interval", seconds=settings.outbox_poll_seconds, id="dnabot-graph", **common)
    scheduler.add_job(
        replica.digest,
        "cron",
        hour=settings.digest_hour_utc,
        minute=0,
        timezone=UTC,
        misfire_grace_time=3600,
        id="dnabot-digest",
        **common,
    )
    scheduler.start()
    return scheduler


class _StopSignal(Exception):
    """SIGTERM or SIGINT arrived: leave the serving loop and shut down cleanly."""


def _on_stop_signal(signum: int, _frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second signal while shutting down stops the process at once
    raise _StopSignal(signal.Signals(signum).name)


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM/SIGINT end the block with `_StopSignal`. In HTTP mode uvicorn takes the signal first, drains its
    connections, then raises it again, which lands here (by default it would end the process on the spot)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _on_stop_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def shut_down(settings: Settings, replica: Replica, scheduler: BackgroundScheduler) -> None:
    """Stop in order: no new jobs, the lease given up (another replica leads at once), questions and deliveries
    under way finished (for up to DNABOT_SHUTDOWN_GRACE_SECONDS each), the claims left handed back."""
    grace = settings.shutdown_grace_seconds
    scheduler.shutdown(wait=False)
    replica.release()
    if replica.webhook_worker is not None:
        replica.webhook_worker.stop()
    if not answers.shutdown(wait=True, timeout=grace):
        log.warning("shutdown: some questions were still being answered after %.0f s", grace)
    if isinstance(replica.notifier, StoppableNotifier) and not replica.notifier.stop(replica.engine, grace):
        log.warning("shutdown: some outbox deliveries were still under way after %.0f s", grace)
    log.info("replica %s stopped", replica.holder)


def serve(settings: Settings, *, host: str = "0.0.0.0", port: int = 3000, socket_mode: bool | None = None) -> None:
    """Serve Slack (Socket Mode when SLACK_APP_TOKEN is set, else HTTP on `port`) with the scheduler running.

    In order: the settings are checked (every problem at once, nothing touched: `SettingsProblems`), Slack is
    asked about the bot token, and in Socket Mode the app token (`SlackRefused`, `SlackUnreachable`), the store
    is migrated, Socket Mode connects, and only then do the scheduler and the HTTP server start."""
    use_socket = preflight.socket_mode_for(settings, socket_mode)
    preflight.check_settings(settings, socket_mode)
    configure_logging(settings)
    client = build_client(settings)
    me = preflight.verify_bot_token(client)
    if use_socket and settings.slack_app_token:
        preflight.verify_app_token(client, settings.slack_app_token.get_secret_value())
    log.info("Slack: signed in as %s in %s", me.get("user") or me.get("user_id"), me.get("team") or me.get("team_id"))
    _migrate(settings)
    notifier = shared_notifier(settings, client)
    bolt = build_app(settings, client=client)
    handler = _connect_socket(settings, bolt, client) if use_socket else None
    replica = Replica(settings, notifier)
    reaped = reap_dead_runs(replica.engine)  # no sync runs anywhere: runs still `running` were left by dead ones
    if reaped:
        log.warning("marked %d sync runs failed: the process running them stopped before they finished", reaped)
    if not use_socket:  # HTTP mode serves the OpenMetadata webhook: its worker re-syncs what changed
        from bot.runtime.webhook import TargetedSyncWorker

        replica.webhook_worker = TargetedSyncWorker(replica.engine, targeted_runner(settings, notifier)).start()
    heap.keep_long_lived_out_of_full_collections()  # everything served with is imported by now
    scheduler = start_scheduler(settings, notifier, replica)
    try:
        with _stop_signals():
            try:
                if handler is not None:
                    threading.Event().wait()  # Socket Mode's threads serve Slack until a stop signal
                else:
                    _run_http(settings, bolt, replica, host=host, port=port)
            except _StopSignal as stop:
                log.info("%s: shutting down", stop)
    finally:
        if handler is not None:
            handler.close()  # no new events; the ones under way finish in the shutdown that follows
        shut_down(settings, replica, scheduler)


def _migrate(settings: Settings) -> None:
    """Bring the store's schema up to date, or say in one line why the store cannot be used."""
    try:
        services.migrate(settings)
    except SQLAlchemyError as exc:
        where = normalise_url(settings.database_url).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DnaBotError(f"the store at {where} cannot be used ({reason}): check DATABASE_URL") from None


def _connect_socket(settings: Settings, bolt: Any, client: Any) -> Any:
    """Open the Socket Mode connection with the app-level token (its own threads serve it from then on)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk.errors import SlackApiError

    token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else ""
    handler = SocketModeHandler(bolt, app_token=token, web_client=client)
    try:
        handler.connect()
    except SlackApiError as exc:  # the app token was accepted moments ago (`preflight.verify_app_token`)
        handler.close()
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        raise preflight.SlackRefused("SLACK_APP_TOKEN", error, preflight.APP_TOKEN_FIX) from None
    except (OSError, http.client.HTTPException) as exc:
        handler.close()
        raise preflight.SlackUnreachable(f"Socket Mode could not connect to Slack ({exc})") from None
    log.info("Slack: connected over Socket Mode")
    return handler


def _run_http(settings: Settings, bolt: Any, replica: Replica, *, host: str, port: int) -> None:
    """Serve Slack's HTTP requests (and the OpenMetadata webhook) on `port` until a stop signal."""
    import uvicorn

    from bot.runtime.http import create_http_app

    app = create_http_app(settings, bolt_app=bolt, replica=replica)
    # log_config=None: uvicorn logs through our handlers (format, ids, secrets masked)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,
        timeout_keep_alive=settings.http_keepalive_seconds,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),  # on SIGTERM: for requests under way
        http=with_read_timeout(settings.http_read_timeout_seconds),  # idle and slow-loris connections are closed
    )
