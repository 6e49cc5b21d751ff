"""Build the Bolt app: the sync `App`, a retrying `WebClient`, the listener and answer pools, and every listener.

Why the sync `App` and not `AsyncApp`: listeners run in worker threads, which fit APScheduler's
`BackgroundScheduler` and the sync SQLAlchemy engine the store uses, and need no aiohttp. Listeners only ack,
parse and hand the slow part (why, blast, sync, …) to the answer pool (`bot.core.answers`), whose workers run the
async agent calls (`services.why`, `services.sync`) with `asyncio.run`; so a listener worker is never held for
long, and an ack never waits behind answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from bot.core import metrics, redact
from bot.core.settings import Settings
from bot.core.slack_client import build_client
from bot.slack.listeners import register_listeners
from storage.persistence import coordination
from storage.persistence.db import session_factory

log = logging.getLogger(__name__)

# Listeners return within a Slack call or two (answers run on the answer pool); buttons and App Home still do
# their store work here, so keep room for bursts of clicks.
LISTENER_WORKERS = 32


def build_app(settings: Settings, *, client: WebClient | None = None) -> App:
    """The DNA Bot Bolt app with every listener registered, calling Slack through `client` (or the settings').

    Bolt is given the token, not the client: it reads SLACK_BOT_TOKEN from the environment itself, and when a
    client comes as well it warns at every start that the token will be unused. Its own client is then pointed at
    ours' API URL, timeout and retries (each request's client is copied from it). The token is not checked here:
    `dnabot serve` asks `auth.test` first (`bot.core.preflight.verify_bot_token`), and Bolt asks once more, lazily,
    for the first request it authorises."""
    web = client or build_client(settings)
    signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    redact.remember(settings)  # error replies, made far from the settings, mask its secrets too
    app = App(
        token=web.token,
        signing_secret=signing_secret,
        # Socket Mode needs no signing secret; in HTTP mode a missing one fails loudly at the first request
        request_verification_enabled=signing_secret is not None,
        token_verification_enabled=False,
        process_before_response=False,  # the HTTP answer goes back at ack(); slow work goes to the answer pool
        listener_executor=ThreadPoolExecutor(max_workers=LISTENER_WORKERS, thread_name_prefix="dnabot-listener"),
        logger=logging.getLogger("dnabot.slack.bolt"),
    )
    _point_at(app.client, web)
    app.use(metrics.count_slack_calls)  # listeners' own clients count their calls too
    app.use(dedup_middleware(settings))
    register_listeners(app, settings)  # with an answer pool of its own (closed by `bot.core.answers.shutdown`)
    from bot.core import services  # late: services pulls in the agents

    services.keep_graphs_warm(settings)  # questions reuse one lineage graph until a sync changes it
    return app


def _point_at(bolt_client: WebClient, ours: WebClient) -> None:
    """Make Bolt's client (the model of each request's client) talk to Slack the way `ours` does."""
    bolt_client.base_url = ours.base_url
    bolt_client.timeout = ours.timeout
    bolt_client.proxy = ours.proxy
    bolt_client.ssl = ours.ssl
    bolt_client.retry_handlers = list(ours.retry_handlers)


def delivery_key(body: dict[str, Any]) -> str | None:
    """The id Slack gives one delivery, the same on its retries: `event_id` for Events API callbacks, the
    `trigger_id` of a slash command, button click or modal submission; None for anything else."""
    if body.get("type") == "event_callback" and body.get("event_id"):
        return f"event:{body['event_id']}"
    trigger = body.get("trigger_id")
    if isinstance(trigger, str) and trigger:
        return f"trigger:{trigger}"
    return None


def dedup_middleware(settings: Settings) -> Callable[..., BoltResponse | None]:
    """A global middleware that acknowledges a delivery seen before (Slack's retries, `X-Slack-Retry-Num`, a load
    balancer replaying a request) without running any listener again — across replicas, through the database.

    If the store cannot be reached the request is processed: a rare double answer beats a lost one."""
    from bot.core import services  # late: services pulls in the agents

    local = _SeenHere(settings.dedup_ttl_seconds)

    def dedup(req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse | None:
        key = delivery_key(req.body if isinstance(req.body, dict) else {})
        if key is None:
            return next()
        try:
            engine = services.engine_for(settings)
            if engine.dialect.name == "sqlite":
                # SQLite means one process: remember ids in memory rather than wait (before the ack) for a
                # database file a sync may be writing for seconds.
                first = local.first(key)
            else:
                with session_factory(engine).begin() as session:
                    first = coordination.first_delivery(
                        session, key, source="slack", ttl_seconds=settings.dedup_ttl_seconds, now=datetime.now(UTC)
                    )
        except SQLAlchemyError as exc:
            log.warning("inbound dedup unavailable, processing %s anyway: %s", key, exc)
            return next()
        if first:
            return next()
        retries = req.headers.get("x-slack-retry-num") or []
        retry = retries[0] if retries else None
        log.info("duplicate Slack delivery %s (retry %s): acknowledged, not processed again", key, retry)
        metrics.observe_duplicate("slack")
        return BoltResponse(status=200, body="")

    return dedup


class _SeenHere:
    """Delivery ids seen by this process in the last `ttl` seconds (the single-process SQLite deployment)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: t for k, t in self._seen.items() if t > now}
            if self._seen.get(key, 0.0) > now:
                return False
            self._seen[key] = now + self.ttl
            return True
