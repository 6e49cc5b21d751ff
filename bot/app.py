"""Build the Bolt app: the sync `App`, a retrying `WebClient`, a roomy listener pool, and every listener.

Why the sync `App` and not `AsyncApp`: listeners run in worker threads, which fit APScheduler's
`BackgroundScheduler` and the sync SQLAlchemy engine the store uses, and need no aiohttp. The async agent
calls (`services.why`, `services.sync`) run with `asyncio.run` inside the listener's own worker thread.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.listeners import register_listeners
from bot.settings import Settings
from storage.errors import DnaBotError

# why-answers and syncs may take tens of seconds each; Bolt's default of 5 workers would queue clicks behind them
LISTENER_WORKERS = 32
DEFAULT_API_URL = "https://slack.com/api/"


def build_client(settings: Settings) -> WebClient:
    """The Web API client: the bot token, SLACK_API_URL when set, and retries on 429 (Retry-After) and resets."""
    if settings.slack_bot_token is None:
        raise DnaBotError("SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token (xoxb-…) from your Slack app")
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url or DEFAULT_API_URL,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3), ConnectionErrorRetryHandler(max_retry_count=2)],
    )


def build_app(settings: Settings, *, client: WebClient | None = None) -> App:
    """The DNA Bot Bolt app with every listener registered (checks the token with `auth.test` once, here)."""
    signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    app = App(
        client=client or build_client(settings),
        signing_secret=signing_secret,
        # Socket Mode needs no signing secret; in HTTP mode a missing one fails loudly at the first request
        request_verification_enabled=signing_secret is not None,
        token_verification_enabled=True,
        process_before_response=False,  # the HTTP answer goes back at ack(); work after it runs in the pool
        listener_executor=ThreadPoolExecutor(max_workers=LISTENER_WORKERS, thread_name_prefix="dnabot-listener"),
        logger=logging.getLogger("dnabot.slack.bolt"),
    )
    register_listeners(app, settings)
    return app
