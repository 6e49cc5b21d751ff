"""The doctor's checks of the services DNA Bot talks to: OpenMetadata and Slack.

OpenMetadata (version, token, fields, events, webhook) and Slack (token, scopes, channels, mode): one cheap call
each, with no retries, so a dead service answers at once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.core.doctor_report import CHECK_SECONDS, Check, fail, ok, short, skip, warn
from bot.core.settings import Settings

OM_NAMES = (
    "openmetadata",
    "openmetadata version",
    "openmetadata token",
    "openmetadata fields",
    "openmetadata events",
    "openmetadata webhook",
)
SLACK_NAMES = ("slack", "slack scopes", "slack channels")
# What manifest.yml asks for (tests/bot/test_doctor.py keeps the two equal): the bot needs every one of them.
BOT_SCOPES = (
    "app_mentions:read",
    "chat:write",
    "commands",
    "users:read",
    "users:read.email",
    "usergroups:read",
    "files:write",
    "channels:history",
    "groups:history",
    "channels:read",
    "groups:read",
)
TEST_CASES = "dataQuality/testCases"
WEBHOOK_PATH = "/openmetadata/webhook"
TOKEN_FIX = "set OPENMETADATA_TOKEN to a bot's JWT (OpenMetadata → Settings → Bots → ingestion-bot or your own)"


def _not_checked(names: tuple[str, ...], why: str) -> list[Check]:
    return [skip(name, f"not checked: {why}") for name in names]


# ---- OpenMetadata ---------------------------------------------------------------------------------------------


async def check_openmetadata(settings: Settings) -> list[Check]:
    """Reachable, a supported version, the token accepted, this version's `fields` accepted, events readable, and
    the webhook subscription present (when OPENMETADATA_WEBHOOK_SECRET says one is wanted)."""
    from storage.openmetadata.http import OMHttp

    if not settings.openmetadata_url:
        fix = "set OPENMETADATA_URL to your server, e.g. http://localhost:8585"
        return [fail("openmetadata", "OPENMETADATA_URL is not set", fix), *_not_checked(OM_NAMES[1:], "no server")]
    token = settings.openmetadata_token.get_secret_value() if settings.openmetadata_token else None
    http = OMHttp(
        settings.openmetadata_url, token, timeout=min(settings.om_timeout_seconds, CHECK_SECONDS), max_retries=0
    )
    try:
        return await _openmetadata(http, settings, has_token=token is not None)
    finally:
        await http.aclose()


async def _openmetadata(http: Any, settings: Settings, *, has_token: bool) -> list[Check]:
    from pydantic import ValidationError

    from storage.errors import OMAuthError, OMUnavailable, OMUnsupportedVersion, OpenMetadataError
    from storage.openmetadata import versions as om_versions
    from storage.openmetadata.models import ServerVersion

    base = http.base_url.removesuffix("api/")
    try:
        version = ServerVersion.model_validate(await http.get_json("v1/system/version")).version
    except ValidationError:
        version, said = None, ""
    except OMUnavailable as exc:
        reason = getattr(exc.__cause__, "reason", None) or short(exc)  # the one attempt's own words
        fix = "check OPENMETADATA_URL and that the server is up"
        return [fail("openmetadata", f"cannot reach {base}: {reason}", fix), *_not_checked(OM_NAMES[1:], "no server")]
    except OpenMetadataError as exc:  # an answer, but not OpenMetadata's (HTML, a 404, bad JSON)
        version, said = None, f" ({short(exc)})"
    else:
        said = ""
    if version is None:
        detail = f"{base}api/v1/system/version answers no OpenMetadata version{said}"
        fix = "point OPENMETADATA_URL at the OpenMetadata server (the port of its API, 8585 by default)"
        return [fail("openmetadata", detail, fix), *_not_checked(OM_NAMES[1:], "not OpenMetadata")]
    checks = [ok("openmetadata", f"reachable at {base}")]
    try:
        profile = om_versions.profile_for(version)
    except OMUnsupportedVersion as exc:
        fix = f"run OpenMetadata {om_versions.SUPPORTED}"
        return [*checks, fail("openmetadata version", str(exc), fix), *_not_checked(OM_NAMES[2:], "version")]
    checks.append(ok("openmetadata version", f"{version} is supported (request shapes of {profile.range})"))
    try:
        await http.get_json("v1/tables", {"limit": 1})
    except OMAuthError as exc:
        detail = short(exc) if has_token else "OPENMETADATA_TOKEN is not set and the server wants one"
        return [*checks, fail("openmetadata token", detail, TOKEN_FIX), *_not_checked(OM_NAMES[3:], "token")]
    except OpenMetadataError as exc:
        fix = "check the server's logs"
        return [*checks, fail("openmetadata token", short(exc), fix), *_not_checked(OM_NAMES[3:], "token")]
    checks.append(ok("openmetadata token", "accepted" if has_token else "the server asks for no token"))
    checks.append(await _fields(http, profile))
    checks.append(await _events(http))
    checks.append(await _webhook(http, settings))
    return checks


async def _fields(http: Any, profile: Any) -> Check:
    """One `limit=1` list per entity type the sync reads, with the `fields` this version is sent."""
    from storage.errors import OpenMetadataError
    from storage.openmetadata import versions as om_versions
    from storage.openmetadata.models import ENTITY_COLLECTIONS

    collections = {etype: path for etype, (path, _) in ENTITY_COLLECTIONS.items()} | {"testCase": TEST_CASES}

    async def one(etype: str) -> str | None:
        fields = profile.fields(etype)
        try:
            await http.get_json(f"v1/{collections[etype]}", {"fields": fields, "limit": 1, "include": "non-deleted"})
        except OpenMetadataError as exc:
            said = exc.message or short(exc)
            return f"{collections[etype]} refused fields={fields} ({exc.status or 'error'}: {said})"
        return None

    problems = [p for p in await asyncio.gather(*(one(e) for e in om_versions.WANTED_FIELDS)) if p]
    if problems:
        fix = f"the server does not take OpenMetadata {profile.range}'s fields: check the version it reports"
        return fail("openmetadata fields", "; ".join(problems), fix)
    return ok("openmetadata fields", f"all {len(om_versions.WANTED_FIELDS)} entity types accept this version's fields")


async def _events(http: Any) -> Check:
    from storage.errors import OpenMetadataError
    from storage.openmetadata.client import EVENT_ENTITY_TYPES, EVENT_KINDS
    from storage.openmetadata.http import split_page

    params: dict[str, str | int] = {kind: ",".join(EVENT_ENTITY_TYPES) for kind in EVENT_KINDS}
    params["timestamp"] = int(time.time() * 1000) - 3_600_000  # an hour: a busy catalog's day could be large
    try:
        data, _ = split_page(await http.get_json("v1/events", params), "v1/events")
    except OpenMetadataError as exc:
        fix = "incremental syncs read /api/v1/events: give the bot's role read access to events"
        return fail("openmetadata events", short(exc), fix)
    return ok("openmetadata events", f"the change-events feed answers ({len(data)} in the last hour)")


async def _webhook(http: Any, settings: Settings) -> Check:
    """Optional: OPENMETADATA_WEBHOOK_SECRET says a subscription should push changes to `/openmetadata/webhook`."""
    from storage.errors import OpenMetadataError

    name = "openmetadata webhook"
    if settings.webhook_secret is None:
        return skip(name, "OPENMETADATA_WEBHOOK_SECRET not set: changes arrive with the scheduled syncs")
    if settings.slack_app_token is not None:
        fix = "serve in HTTP mode (unset SLACK_APP_TOKEN), or unset OPENMETADATA_WEBHOOK_SECRET"
        return warn(name, "Socket Mode serves no HTTP endpoint for the webhook", fix)
    try:
        body = await http.get_json("v1/events/subscriptions", {"limit": 100})
    except OpenMetadataError as exc:
        return warn(name, f"cannot list event subscriptions: {short(exc)}", "give the bot's role read access to alerts")
    subscriptions = body.get("data") if isinstance(body, dict) else None
    for sub in subscriptions if isinstance(subscriptions, list) else []:
        for destination in sub.get("destinations") or [] if isinstance(sub, dict) else []:
            endpoint = str(((destination or {}).get("config") or {}).get("endpoint") or "")
            if destination.get("type") == "Webhook" and endpoint.rstrip("/").endswith(WEBHOOK_PATH):
                if sub.get("enabled") is False:
                    return warn(name, f"subscription {sub.get('name')!r} is disabled", "enable it in OpenMetadata")
                return ok(name, f"subscription {sub.get('name')!r} delivers to {endpoint}")
    fix = (
        f"add an alert in OpenMetadata (Settings → Notifications) with a Webhook destination "
        f"https://<this bot>{WEBHOOK_PATH} and OPENMETADATA_WEBHOOK_SECRET as its secret"
    )
    return warn(name, f"no event subscription delivers to {WEBHOOK_PATH}", fix)


# ---- Slack ----------------------------------------------------------------------------------------------------


def check_slack(settings: Settings) -> list[Check]:
    """`auth.test`, the granted scopes against the manifest's, the bot in every routed channel, and what the mode
    (Socket Mode with SLACK_APP_TOKEN, else HTTP) needs."""
    from slack_sdk import WebClient

    mode = _mode(settings)
    if settings.slack_bot_token is None:
        from bot.core.preflight import BOT_TOKEN_FIX

        fix = f"set SLACK_BOT_TOKEN: {BOT_TOKEN_FIX}"
        return [fail("slack", "SLACK_BOT_TOKEN is not set", fix), *_not_checked(SLACK_NAMES[1:], "no token"), mode]
    base = settings.slack_api_url or WebClient.BASE_URL
    client = WebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=base, timeout=int(CHECK_SECONDS), retry_handlers=[]
    )
    try:
        response = client.auth_test()
    except Exception as exc:  # SlackApiError (ok: false) or a transport error
        detail, fix = _slack_problem(exc, base)
        return [fail("slack", detail, fix), *_not_checked(SLACK_NAMES[1:], "auth.test failed"), mode]
    who = f"signed in as {response.get('user')} ({response.get('user_id')}) in {response.get('team')}"
    return [ok("slack", who), _scopes(response.headers), _channels(settings, client), mode]


def _slack_problem(exc: Exception, base: str) -> tuple[str, str]:
    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error") or "error")
        from bot.core.preflight import REFUSALS, refusal_fix  # the words `dnabot serve` uses for the same refusal

        if error in REFUSALS:
            return f"Slack refused SLACK_BOT_TOKEN ({error})", refusal_fix(error)
        return f"auth.test failed: {error}", refusal_fix(error)
    reason = short(getattr(exc, "reason", None) or exc)
    return f"cannot reach Slack at {base}: {reason}", "check the network (proxy, firewall) or SLACK_API_URL"


def _scopes(headers: Any) -> Check:
    granted_header = next((v for k, v in dict(headers or {}).items() if k.lower() == "x-oauth-scopes"), None)
    if granted_header is None:
        return warn("slack scopes", "Slack did not say which scopes the token has", "compare with manifest.yml by hand")
    value = granted_header[0] if isinstance(granted_header, list) else granted_header
    granted = {s.strip() for s in str(value).split(",") if s.strip()}
    missing = [s for s in BOT_SCOPES if s not in granted]
    if missing:
        fix = "add them in the Slack app (OAuth & Permissions → Scopes, or from manifest.yml), then reinstall it"
        return fail("slack scopes", f"missing {', '.join(missing)}", fix)
    return ok("slack scopes", f"all {len(BOT_SCOPES)} scopes of manifest.yml granted")


def _channels(settings: Settings, client: Any) -> Check:
    """Every channel incidents are routed to (DNABOT_CONFIG's rules and default, else DNABOT_CHANNEL)."""
    from slack_sdk.errors import SlackApiError

    from bot.core.routing import Router, RoutingConfigError

    name = "slack channels"
    try:
        if settings.routing_config:
            router = Router.from_file(settings.routing_config, default_channel=settings.channel)
        elif settings.channel:
            router = Router([], settings.channel)
        else:
            fix = "set DNABOT_CHANNEL to the incident channel's id (C…), or DNABOT_CONFIG to routing rules"
            return fail(name, "no incident channel: new incidents would wait in the outbox", fix)
    except RoutingConfigError as exc:
        return fail(name, short(exc), "fix the routing file DNABOT_CONFIG names")
    channels = list(dict.fromkeys([router.default_channel, *(rule.channel for rule in router.rules)]))
    problems, shown = [], []
    for channel in channels:
        try:
            info = client.conversations_info(channel=channel).get("channel") or {}
        except SlackApiError as exc:
            error = exc.response.get("error")
            problems.append(
                f"{channel} not found (an id is needed; a private channel the bot is not in looks the same)"
                if error == "channel_not_found"
                else f"{channel}: {error}"
            )
            continue
        except Exception as exc:  # a transport error half-way
            problems.append(f"{channel}: {short(exc)}")
            continue
        label = f"#{info.get('name')} ({channel})" if info.get("name") else channel
        if not info.get("is_member"):
            problems.append(f"the bot is not in {label}")
        elif info.get("is_archived"):
            problems.append(f"{label} is archived")
        else:
            shown.append(label)
    if problems:
        return fail(name, "; ".join(problems), "invite the bot (/invite @DNA Bot) to each routed channel, by id")
    return ok(name, f"the bot is in {', '.join(shown)}")


def _mode(settings: Settings) -> Check:
    """Socket Mode (SLACK_APP_TOKEN set) needs an app-level token that opens a connection; HTTP mode a signing
    secret."""
    from bot.core.preflight import mode_problems  # the words `dnabot serve` stops with

    name = "slack mode"
    mode = "Socket Mode" if settings.slack_app_token is not None else "HTTP mode"
    problems = mode_problems(settings)
    if problems:
        detail = f"{mode}: " + "; ".join(f"{p.setting} {p.message}" for p in problems)
        return fail(name, detail, "; ".join(dict.fromkeys(p.fix for p in problems)))
    if settings.slack_app_token is not None:
        return _socket_mode(settings, settings.slack_app_token.get_secret_value().strip())
    return ok(name, "HTTP mode: signing secret set; Slack must reach /slack/events on this host")


def _socket_mode(settings: Settings, token: str) -> Check:
    from slack_sdk import WebClient

    name = "slack mode"
    client = WebClient(
        base_url=settings.slack_api_url or WebClient.BASE_URL, timeout=int(CHECK_SECONDS), retry_handlers=[]
    )
    try:
        client.apps_connections_open(app_token=token)
    except Exception as exc:
        detail, _ = _slack_problem(exc, client.base_url)
        fix = "check SLACK_APP_TOKEN (connections:write) and that Socket Mode is on in the app's settings"
        return fail(name, f"Socket Mode: apps.connections.open failed: {detail}", fix)
    return ok(name, "Socket Mode: the app token opens a connection")
