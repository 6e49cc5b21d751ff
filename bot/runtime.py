"""`dnabot serve`: the Slack app (Socket Mode or HTTP) plus a scheduler whose tick syncs, finds incidents, posts.

A tick is: sync OpenMetadata → incident pipeline → publish the incident threads to Slack. APScheduler 3.x runs it
in a background thread every DNABOT_SYNC_INTERVAL_SECONDS (never two at once: `max_instances=1`, and the sync
lock guards the store across processes). Issue 5 makes the tick leader-elected across replicas.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from slack_sdk import WebClient

from bot import digest, services
from bot.app import build_app, build_client
from bot.mentions import SlackMentions
from bot.notifier import Notifier, PublishResult
from bot.routing import Router
from bot.settings import Settings
from storage.db import SyncAlreadyRunning
from storage.errors import DnaBotError

log = logging.getLogger(__name__)


@dataclass
class TickResult:
    """What one scheduled tick did."""

    sync: dict[str, Any] | None = None
    published: PublishResult | None = None
    skipped: str | None = None
    errors: list[str] = field(default_factory=list)


def router_for(settings: Settings) -> Router:
    """The routing rules (DNABOT_CONFIG) or just the default channel (DNABOT_CHANNEL)."""
    if settings.routing_config:
        return Router.from_file(settings.routing_config, default_channel=settings.channel)
    if not settings.channel:
        raise DnaBotError("set DNABOT_CHANNEL (the default incident channel) or DNABOT_CONFIG (routing rules)")
    return Router([], settings.channel)


def notifier_for(settings: Settings, client: WebClient) -> Notifier:
    return Notifier(
        client,
        router_for(settings),
        om_ui_url=settings.openmetadata_ui_url,
        mentions=SlackMentions(services.engine_for(settings), client),
    )


def tick(settings: Settings, notifier: Notifier) -> TickResult:
    """One scheduled pass: sync + incidents, then bring Slack up to date (even when the sync failed)."""
    result = TickResult()
    try:
        synced = asyncio.run(services.sync(settings))
        result.sync = synced.to_dict()
        if not synced.ok:
            result.errors.append(f"sync failed: {synced.error}")
    except SyncAlreadyRunning:
        result.skipped = "another sync is running"
    except DnaBotError as exc:
        result.errors.append(str(exc))
    try:
        result.published = notifier.publish(services.engine_for(settings), now=datetime.now(UTC))
    except DnaBotError as exc:
        result.errors.append(str(exc))
    for error in result.errors:
        log.warning("tick: %s", error)
    return result


def start_scheduler(settings: Settings, notifier: Notifier) -> BackgroundScheduler:
    """Run `tick` now and every DNABOT_SYNC_INTERVAL_SECONDS, one at a time; the daily digest at
    DNABOT_DIGEST_HOUR_UTC:00 UTC."""
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        tick,
        "interval",
        args=(settings, notifier),
        seconds=settings.sync_interval_seconds,
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
        id="dnabot-tick",
    )
    scheduler.add_job(
        digest.daily_digest,
        "cron",
        args=(settings, notifier.client, notifier.router),
        hour=settings.digest_hour_utc,
        minute=0,
        timezone=UTC,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
        id="dnabot-digest",
    )
    scheduler.start()
    return scheduler


def serve(settings: Settings, *, host: str = "0.0.0.0", port: int = 3000, socket_mode: bool | None = None) -> None:
    """Serve Slack (Socket Mode when SLACK_APP_TOKEN is set, else HTTP on `port`) with the scheduler running."""
    services.migrate(settings)
    client = build_client(settings)
    notifier = notifier_for(settings, client)
    bolt = build_app(settings, client=client)
    use_socket = bool(settings.slack_app_token) if socket_mode is None else socket_mode
    if use_socket and not settings.slack_app_token:
        raise DnaBotError("Socket Mode needs SLACK_APP_TOKEN (an app-level token with connections:write)")
    if not use_socket and not settings.slack_signing_secret:
        raise DnaBotError("HTTP mode needs SLACK_SIGNING_SECRET (or set SLACK_APP_TOKEN for Socket Mode)")
    scheduler = start_scheduler(settings, notifier)
    try:
        if use_socket:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else None
            SocketModeHandler(bolt, app_token=token).start()
        else:
            import uvicorn

            from bot.http import create_http_app

            uvicorn.run(create_http_app(settings, bolt_app=bolt), host=host, port=port, log_level="info")
    finally:
        scheduler.shutdown(wait=False)
