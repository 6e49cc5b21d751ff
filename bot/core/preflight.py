"""What `dnabot serve` checks before it starts: its settings (no store, no network), then Slack's word on the token.

`serve_problems` is pure: it reads the settings (and the routing and MCP files they name) and lists every problem
at once, each with the setting, what is wrong and how to fix it; `check_settings` raises them together as
`SettingsProblems` (exit code 2). Only then does `verify_bot_token` ask Slack (`auth.test`): a refused token or an
unreachable Slack is one `SlackRefused` / `SlackUnreachable` line (exit code 1), never a traceback.
"""

from __future__ import annotations

import http.client
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.core.settings import Settings, process_env
from storage.errors import DnaBotError

BOT_TOKEN_FIX = "copy the Bot User OAuth Token (xoxb-…) from your Slack app's OAuth & Permissions page"
APP_TOKEN_FIX = (
    "create an app-level token with connections:write (Basic Information → App-Level Tokens), "
    "or serve over HTTP with --http and SLACK_SIGNING_SECRET"
)
SIGNING_FIX = (
    "copy the Signing Secret from your Slack app's Basic Information page, "
    "or set SLACK_APP_TOKEN (xapp-…) to use Socket Mode"
)
TOKEN_KINDS = {
    "xoxb-": "a bot token",
    "xapp-": "an app-level token",
    "xoxp-": "a user token",
    "xoxe": "a refresh token",
}
PROBE_TIMEOUT_SECONDS = 10
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# auth.test errors that mean the token itself is no good, with what to do about each
REFUSALS = {
    "invalid_auth": BOT_TOKEN_FIX + " (the value set is not a valid token)",
    "not_authed": BOT_TOKEN_FIX,
    "account_inactive": "the app was uninstalled or its bot deactivated: reinstall the app, then copy its new token",
    "token_revoked": "the token was revoked: reinstall the app to the workspace, then copy its new bot token",
    "token_expired": "the token expired (token rotation is on): turn rotation off or copy a fresh bot token",
    "no_permission": "the workspace does not let this app in: ask a workspace admin to approve it",
    "org_login_required": "the workspace is migrating to Enterprise Grid: try again in a few minutes",
    "team_access_not_granted": "the app is not installed in this workspace: install it, then copy its bot token",
}


@dataclass(frozen=True)
class Problem:
    """One setting that stops `serve`: which, what is wrong with it, and how to fix it."""

    setting: str
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.setting} {self.message}: {self.fix}"


class SettingsProblems(DnaBotError):
    """The settings stop `serve` before it touches the store or the network (exit code 2)."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"dnabot serve cannot start: {count} setting{'s' if count != 1 else ''} to fix"
        super().__init__("\n".join([head, *(f"  - {p.line()}" for p in self.problems)]))


class SlackRefused(DnaBotError):
    """Slack answered, and said no (a bad, revoked or inactive token); exit code 1."""

    def __init__(self, setting: str, error: str, fix: str) -> None:
        super().__init__(f"Slack refused {setting} ({error}): {fix}")
        self.setting = setting
        self.error = error


class SlackUnreachable(DnaBotError):
    """Slack could not be reached (network, proxy, DNS, SLACK_API_URL) or answered with a server error."""


def socket_mode_for(settings: Settings, socket_mode: bool | None) -> bool:
    """Socket Mode when asked (`--socket`), else when SLACK_APP_TOKEN is set; HTTP otherwise."""
    return bool(settings.slack_app_token) if socket_mode is None else socket_mode


def serve_problems(settings: Settings, socket_mode: bool | None) -> list[Problem]:
    """Every problem in `settings` that would stop `dnabot serve` (in `socket_mode`, or the mode it would pick)."""
    use_socket = socket_mode_for(settings, socket_mode)
    return [*_slack_problems(settings, use_socket), *_openmetadata_problems(settings), *local_problems(settings)]


def local_problems(settings: Settings) -> list[Problem]:
    """The problems `serve_problems` finds outside Slack and OpenMetadata: the store's URL, the log level, the
    routing and MCP files (`dnabot doctor` reports them in these words too)."""
    return [*_database_problems(settings), *_file_problems(settings), *_log_problems(settings)]


def mode_problems(settings: Settings, socket_mode: bool | None = None) -> list[Problem]:
    """What the mode `serve` would pick needs and lacks: SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET."""
    return [
        p for p in _slack_problems(settings, socket_mode_for(settings, socket_mode)) if p.setting != "SLACK_BOT_TOKEN"
    ]


def refusal_fix(error: str) -> str:
    """What to do when Slack refuses the bot token with `error`."""
    return REFUSALS.get(error, "check SLACK_BOT_TOKEN and the app's installation in this workspace")


def check_settings(settings: Settings, socket_mode: bool | None) -> None:
    """Raise `SettingsProblems` listing every problem, if there is any."""
    problems = serve_problems(settings, socket_mode)
    if problems:
        raise SettingsProblems(problems)


def invalid_values(error: ValidationError) -> SettingsProblems:
    """The settings that could not even be read (a number that is not one, a value out of range), as problems."""
    problems = []
    for item in error.errors():
        setting = ".".join(str(part) for part in item.get("loc", ())) or "settings"
        got = "" if _secretish(setting) else f" (got {str(item.get('input'))[:40]!r})"
        problems.append(Problem(setting, f"is invalid{got}", item.get("msg", "see the README").rstrip(".")))
    return SettingsProblems(problems)


def _secretish(setting: str) -> bool:
    return any(word in setting.upper() for word in ("TOKEN", "SECRET", "KEY", "PASSWORD", "DATABASE_URL"))


def _token_kind(value: str) -> str:
    for prefix, kind in TOKEN_KINDS.items():
        if value.startswith(prefix):
            return kind
    return "not a Slack token"


def _token_problem(setting: str, secret: SecretStr | None, prefix: str, fix: str) -> Problem | None:
    value = secret.get_secret_value().strip() if secret is not None else ""
    if not value:
        return Problem(setting, "is not set", fix)
    if not value.startswith(prefix):
        return Problem(setting, f"does not start with {prefix} (it is {_token_kind(value)})", fix)
    if re.search(r"\s", value):
        return Problem(setting, "contains spaces or line breaks", "copy the token again, in one piece")
    return None


def _slack_problems(settings: Settings, use_socket: bool) -> list[Problem]:
    found = [_token_problem("SLACK_BOT_TOKEN", settings.slack_bot_token, "xoxb-", BOT_TOKEN_FIX)]
    if use_socket:
        found.append(_token_problem("SLACK_APP_TOKEN", settings.slack_app_token, "xapp-", APP_TOKEN_FIX))
    elif not (settings.slack_signing_secret and settings.slack_signing_secret.get_secret_value().strip()):
        found.append(Problem("SLACK_SIGNING_SECRET", "is not set (HTTP mode needs it)", SIGNING_FIX))
    if settings.slack_api_url and not _http_url(settings.slack_api_url):
        found.append(Problem("SLACK_API_URL", "is not an http(s) URL", "unset it to talk to slack.com"))
    return [p for p in found if p is not None]


def _http_url(value: str) -> bool:
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _openmetadata_problems(settings: Settings) -> list[Problem]:
    url = (settings.openmetadata_url or "").strip()
    if not url:
        return [
            Problem(
                "OPENMETADATA_URL", "is not set", "point it at your OpenMetadata server, e.g. http://localhost:8585"
            )
        ]
    if not _http_url(url):
        return [Problem("OPENMETADATA_URL", f"is not an http(s) URL ({url[:60]!r})", "e.g. http://localhost:8585")]
    return []


def _database_problems(settings: Settings) -> list[Problem]:
    if not settings.database_url:
        return []  # ./dnabot.db
    try:
        backend = make_url(settings.database_url).get_backend_name()
    except ArgumentError:
        return [
            Problem(
                "DATABASE_URL", "cannot be parsed", "e.g. postgresql://user:pass@host/dnabot or sqlite:///dnabot.db"
            )
        ]
    if backend not in ("sqlite", "postgresql", "postgres"):
        return [Problem("DATABASE_URL", f"names {backend!r}", "DNA Bot stores in PostgreSQL or SQLite only")]
    return []


def _file_problems(settings: Settings) -> list[Problem]:
    from agents.mcp_config import MCPConfigError, parse_config_file
    from bot.core.routing import Router, RoutingConfigError

    found = []
    if settings.routing_config:
        try:
            Router.from_file(settings.routing_config, default_channel=settings.channel)
        except RoutingConfigError as exc:
            found.append(Problem("DNABOT_CONFIG", exc.problem, f"fix the routing file {exc.source} (see the README)"))
    if settings.mcp_config:
        try:
            parse_config_file(Path(settings.mcp_config), process_env())
        except MCPConfigError as exc:
            found.append(Problem("DNABOT_MCP_CONFIG", "is not usable", f"{exc} (or unset it to run without MCP)"))
    return found


def _log_problems(settings: Settings) -> list[Problem]:
    if settings.log_level.strip().upper() not in LEVELS:
        return [Problem("DNABOT_LOG_LEVEL", f"is {settings.log_level!r}, not a level", "use " + ", ".join(LEVELS[:4]))]
    return []


# ---- Slack's word -------------------------------------------------------------------------------------------


_PROBE_LOG = logging.getLogger("dnabot.preflight.slack")
_PROBE_LOG.propagate = False
_PROBE_LOG.addHandler(logging.NullHandler())


def verify_bot_token(client: WebClient) -> dict[str, Any]:
    """`auth.test` with the bot token: the bot's identity, else `SlackRefused` or `SlackUnreachable`."""
    try:
        return dict(_probe(client).auth_test().data)  # type: ignore[arg-type]
    except SlackApiError as exc:
        raise _refusal("SLACK_BOT_TOKEN", "auth.test", client.base_url, exc) from None
    except (OSError, http.client.HTTPException) as exc:  # URLError, refused, reset, DNS, timeouts
        raise _unreachable(client.base_url, exc) from None


def verify_app_token(client: WebClient, app_token: str) -> None:
    """Socket Mode: ask Slack for a connection URL with the app-level token (the URL itself is left unused), so a
    refused SLACK_APP_TOKEN stops the start before the store is touched."""
    try:
        _probe(client).apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        raise _refusal("SLACK_APP_TOKEN", "apps.connections.open", client.base_url, exc) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _unreachable(client.base_url, exc) from None


def _probe(client: WebClient) -> WebClient:
    """`client` with a short timeout and one retry: a start that hangs for minutes on a black-holed address
    explains nothing."""
    return type(client)(
        token=client.token,
        base_url=client.base_url,
        timeout=PROBE_TIMEOUT_SECONDS,
        ssl=client.ssl,
        proxy=client.proxy,
        retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)],
        logger=_PROBE_LOG,  # slack_sdk logs each failed attempt at ERROR: the one line raised instead says it all
    )


def _refusal(setting: str, method: str, where: str, exc: SlackApiError) -> DnaBotError:
    status = getattr(exc.response, "status_code", 200)
    error = str(exc.response.get("error") or "") if exc.response is not None else ""
    if status >= 500 or status == 429 or not error:
        return SlackUnreachable(
            f"Slack answered {method} at {where} with HTTP {status}{f' ({error})' if error else ''}: "
            "Slack may be having trouble (https://slack-status.com); try again in a minute"
        )
    fix = APP_TOKEN_FIX if setting == "SLACK_APP_TOKEN" else REFUSALS.get(error, BOT_TOKEN_FIX)
    if setting == "SLACK_APP_TOKEN" and error == "invalid_auth":
        fix = "copy the app-level token (xapp-…) again from Basic Information → App-Level Tokens"
    return SlackRefused(setting, error, fix)


def _unreachable(where: str, exc: Exception) -> SlackUnreachable:
    reason = getattr(exc, "reason", None) or exc
    also = " and SLACK_API_URL" if "slack.com" not in where else ""
    return SlackUnreachable(
        f"Slack is unreachable at {where} ({reason}): check the network and proxy (HTTPS_PROXY){also}"
    )
