"""Signed Slack request helpers: v0 signature headers and the bodies Slack POSTs for commands, events and clicks."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import quote, urlencode

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
TEAM = "T1"
APP_ID = "A1"
BOT_USER = "UBOT"
# Port 9 (discard) refuses connections: a test that forgets to pass a real response_url fails loudly.
UNSET_RESPONSE_URL = "http://127.0.0.1:9/response_url/unset"

Body = tuple[str, str]
_seq = itertools.count(1)


def sign(body: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The `x-slack-request-timestamp` and `x-slack-signature` (v0, HMAC-SHA256) headers for `body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": ts, "x-slack-signature": f"v0={digest}"}


def signed_headers(body: str, content_type: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """`sign()` plus the `content-type` header: everything to POST `body` to `/slack/events`."""
    return {"content-type": content_type} | sign(body, secret, timestamp)


def _trigger_id() -> str:
    return f"{next(_seq)}.{int(time.time())}.fake-trigger"


def _event_ts() -> str:
    return f"{int(time.time())}.{next(_seq):06d}"


def _user(user: str) -> dict[str, str]:
    return {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM}


def slash_command(
    text: str,
    *,
    user: str = "U2",
    channel: str = "C1",
    response_url: str = UNSET_RESPONSE_URL,
    command: str = "/dna",
    trigger_id: str | None = None,
) -> Body:
    """A slash command as Slack POSTs it: `(form body, content_type)`."""
    fields = {
        "token": "legacy-verification-token",
        "team_id": TEAM,
        "team_domain": "dna-test",
        "channel_id": channel,
        "channel_name": channel.lower(),
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or _trigger_id(),
    }
    return urlencode(fields), FORM


def event_callback(event: dict[str, Any], *, event_id: str | None = None) -> Body:
    """Any Events API delivery wrapping `event`: `(JSON body, content_type)`."""
    body = {
        "token": "legacy-verification-token",
        "team_id": TEAM,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_seq):08d}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }
    return json.dumps(body), JSON


def app_mention_event(
    text: str,
    *,
    user: str = "U2",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    event_id: str | None = None,
) -> Body:
    """An `app_mention` event (`text` should contain `<@UBOT>` as Slack's would)."""
    ts = ts or _event_ts()
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": TEAM,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event_callback(event, event_id=event_id)


def app_home_opened(user: str, *, event_id: str | None = None) -> Body:
    """An `app_home_opened` event for the Home tab."""
    event = {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home", "event_ts": _event_ts()}
    return event_callback(event, event_id=event_id)


def url_verification(challenge: str = "challenge-token") -> Body:
    """The one-off `url_verification` handshake Slack sends when the Request URL is saved."""
    return json.dumps({"token": "legacy-verification-token", "challenge": challenge, "type": "url_verification"}), JSON


def interactivity(payload: dict[str, Any]) -> Body:
    """Any interactivity payload as Slack POSTs it: form field `payload=<JSON>`."""
    return "payload=" + quote(json.dumps(payload)), FORM


def _action(
    action_id: str, value: str | None, block_id: str, selected_user: str | None, selected_option: Any
) -> dict[str, Any]:
    action: dict[str, Any] = {"action_id": action_id, "block_id": block_id, "action_ts": _event_ts()}
    if selected_user is not None:
        return action | {"type": "users_select", "selected_user": selected_user}
    if selected_option is not None:
        option = selected_option if isinstance(selected_option, dict) else {"value": str(selected_option)}
        option = {"text": {"type": "plain_text", "text": option["value"]}} | option
        return action | {"type": "static_select", "selected_option": option}
    return action | {"type": "button", "value": value or "", "text": {"type": "plain_text", "text": action_id}}


def block_action(
    action_id: str,
    value: str | None = None,
    *,
    user: str = "U2",
    channel: str = "C1",
    message_ts: str = "",
    response_url: str = UNSET_RESPONSE_URL,
    trigger_id: str | None = None,
    selected_user: str | None = None,
    selected_option: str | dict[str, Any] | None = None,
    block_id: str = "actions",
    message: dict[str, Any] | None = None,
) -> Body:
    """A `block_actions` click on a message button (or a users/static select when `selected_*` is given)."""
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "dna-test"},
        "user": _user(user),
        "api_app_id": APP_ID,
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": trigger_id or _trigger_id(),
        "channel": {"id": channel, "name": channel.lower()},
        "message": message or {"type": "message", "ts": message_ts, "user": BOT_USER, "text": "", "blocks": []},
        "response_url": response_url,
        "actions": [_action(action_id, value, block_id, selected_user, selected_option)],
        "is_enterprise_install": False,
    }
    return interactivity(payload)


def _state_values(values: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    # A bare string is a plain_text_input's value; a dict is passed through as the element state.
    return {
        block: {
            action: v if isinstance(v, dict) else {"type": "plain_text_input", "value": v} for action, v in els.items()
        }
        for block, els in values.items()
    }


def view_submission(
    callback_id: str,
    private_metadata: str,
    values: dict[str, dict[str, Any]],
    user: str = "U2",
    *,
    view_id: str = "V1",
    trigger_id: str | None = None,
) -> Body:
    """A modal `view_submission`; `values` is `{block_id: {action_id: "text" | element-state dict}}`."""
    view = {
        "id": view_id,
        "team_id": TEAM,
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": private_metadata,
        "title": {"type": "plain_text", "text": "DNA Bot"},
        "blocks": [],
        "state": {"values": _state_values(values)},
        "hash": f"{int(time.time())}.hash",
        "app_id": APP_ID,
        "bot_id": "B1",
    }
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "dna-test"},
        "user": _user(user),
        "api_app_id": APP_ID,
        "token": "legacy-verification-token",
        "trigger_id": trigger_id or _trigger_id(),
        "view": view,
        "response_urls": [],
        "is_enterprise_install": False,
    }
    return interactivity(payload)
