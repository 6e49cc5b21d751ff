"""The Slack Web API client the bot talks through: the bot token, SLACK_API_URL, retries, every call counted."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.core import metrics
from bot.core.settings import Settings
from storage.errors import DnaBotError

DEFAULT_API_URL = "https://slack.com/api/"


def build_client(settings: Settings) -> WebClient:
    """The Web API client: the bot token, SLACK_API_URL when set, and retries on 429 (Retry-After) and resets."""
    if settings.slack_bot_token is None:
        raise DnaBotError("SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token (xoxb-…) from your Slack app")
    return metrics.CountingWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url or DEFAULT_API_URL,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3), ConnectionErrorRetryHandler(max_retry_count=2)],
    )
