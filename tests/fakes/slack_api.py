"""A loopback Slack Web API (Starlette): answers `/api/<method>`, file uploads and `response_url` posts, and refuses
(with Slack's own errors) the messages and views real Slack would refuse."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.slack_blocks import Verdict, check_message, check_view, offending
from tests.fakes.slack_state import BOT, Call, Handler, Refused, SlackError, SlackState, decode_args, truthy

MESSAGE_METHODS = ("chat.postMessage", "chat.update", "chat.postEphemeral", "chat.scheduleMessage")
VIEW_METHODS = ("views.publish", "views.open", "views.update", "views.push")

# ---- chat.* -------------------------------------------------------------------------------------------------


def _post_message(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    channel = _required(args, "channel")
    message = state.store(channel, _new_message(state, channel, args))
    return {"channel": channel, "ts": message["ts"], "message": _public(message)}


def _new_message(state: SlackState, channel: str, args: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "message", "ts": state.next_ts(), "channel": channel, "user": BOT["user_id"]}
    message["bot_id"] = BOT["bot_id"]
    for key in ("text", "blocks", "attachments", "metadata", "thread_ts", "markdown_text"):
        if args.get(key) is not None:
            message[key] = args[key]
    message.setdefault("text", "")
    if truthy(args.get("reply_broadcast")):
        message["reply_broadcast"] = True
    return message


def _update(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    channel = _required(args, "channel")
    message = state.find(channel, _required(args, "ts"))
    for key in ("text", "blocks", "attachments", "metadata", "markdown_text"):
        if args.get(key) is not None:
            message[key] = args[key]
    message["edited"] = {"user": BOT["user_id"], "ts": state.next_ts()}
    return {"channel": channel, "ts": message["ts"], "text": message.get("text", ""), "message": _public(message)}


def _delete(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    channel = _required(args, "channel")
    message = state.find(channel, _required(args, "ts"))
    state.messages[channel].remove(message)
    return {"channel": channel, "ts": message["ts"]}


def _post_ephemeral(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    channel, user = _required(args, "channel"), _required(args, "user")
    message = _new_message(state, channel, args) | {"ephemeral_user": user}
    state.ephemerals.append(message)
    return {"message_ts": message["ts"]}


def _permalink(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    channel, ts = _required(args, "channel"), _required(args, "message_ts")
    state.find(channel, ts)
    return {"channel": channel, "permalink": f"https://dna-test.slack.com/archives/{channel}/p{ts.replace('.', '')}"}


def _reaction(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    message = state.find(_required(args, "channel"), _required(args, "timestamp"))
    name = _required(args, "name")
    reactions = message.setdefault("reactions", [])
    if any(r["name"] == name for r in reactions):
        raise SlackError("already_reacted")
    reactions.append({"name": name, "users": [BOT["user_id"]], "count": 1})
    return {}


# ---- conversations.* ----------------------------------------------------------------------------------------


def _history(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    channel = _required(args, "channel")
    top = [m for m in state.messages.get(channel, []) if _is_top_level(m)]
    top = [m for m in reversed(top) if _in_window(m, args)]  # newest first, as Slack answers
    limit = int(args.get("limit") or 100)
    shown = [_public(m, truthy(args.get("include_all_metadata"))) for m in top[:limit]]
    return {"messages": shown, "has_more": len(top) > limit, "response_metadata": {"next_cursor": ""}}


def _replies(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    channel, ts = _required(args, "channel"), _required(args, "ts")
    known = [m for m in state.messages.get(channel, []) if m["ts"] == ts]
    root = known[0].get("thread_ts", ts) if known else ts  # a reply's ts answers its whole thread
    thread = [m for m in state.messages.get(channel, []) if root in (m["ts"], m.get("thread_ts"))]
    if not thread:
        raise SlackError("thread_not_found")
    thread = [m for m in thread if _in_window(m, args)]
    limit = int(args.get("limit") or 1000)
    shown = [_public(m, truthy(args.get("include_all_metadata"))) for m in thread[:limit]]
    return {"messages": shown, "has_more": len(thread) > limit, "response_metadata": {"next_cursor": ""}}


def _channel(state: SlackState, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The channel `args` names as the bot can see it; `channel_not_found` for one it cannot (a private channel
    the bot is not in looks, to Slack's API, like no channel at all), `missing_scope` without the read scope."""
    channel = _required(args, "channel")
    declared = state.channels.get(channel)
    info = declared if declared is not None else {"is_private": False, "members": [BOT["user_id"]]}
    needed = "groups:read" if info.get("is_private") else "channels:read"
    if needed not in state.scopes:
        raise SlackError("missing_scope", needed=needed, provided=",".join(sorted(state.scopes)))
    if info.get("is_private") and BOT["user_id"] not in info.get("members", []):
        raise SlackError("channel_not_found")
    return channel, info


def _info(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    channel, info = _channel(state, args)
    private = bool(info.get("is_private"))
    member = BOT["user_id"] in info.get("members", [])
    shown = {"id": channel, "name": channel.lower(), "is_channel": not private, "is_group": private}
    return {"channel": shown | {"is_private": private, "is_member": member, "is_archived": False}}


def _members(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    """One page of members: `limit` (default 100, at most 1000) from the opaque `cursor`, as Slack pages them."""
    _, info = _channel(state, args)
    members = list(info.get("members", []))
    try:
        limit = int(args.get("limit") or 100)
    except ValueError:
        raise SlackError("invalid_limit") from None
    if not 1 <= limit <= 1000:
        raise SlackError("invalid_limit")
    cursor = str(args.get("cursor") or "")
    start = 0
    if cursor:
        try:
            raw = base64.b64decode(cursor.encode(), validate=True).decode()
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raw = ""
        if not raw.startswith("members:") or not raw[8:].isdigit():
            raise SlackError("invalid_cursor")
        start = int(raw[8:])
    page = members[start : start + limit]
    more = start + limit < len(members)
    next_cursor = base64.b64encode(f"members:{start + limit}".encode()).decode() if more else ""
    return {"members": page, "response_metadata": {"next_cursor": next_cursor}}


def _is_top_level(message: dict[str, Any]) -> bool:
    return message.get("thread_ts") in (None, message["ts"]) or bool(message.get("reply_broadcast"))


def _in_window(message: dict[str, Any], args: dict[str, Any]) -> bool:
    ts = float(message["ts"])
    return float(args.get("oldest") or 0) <= ts <= float(args.get("latest") or "inf")


def _public(message: dict[str, Any], with_metadata: bool = True) -> dict[str, Any]:
    shown = {k: v for k, v in message.items() if k != "channel"}
    if not with_metadata:
        shown.pop("metadata", None)
    return json.loads(json.dumps(shown))  # a copy: later updates must not change recorded answers


# ---- users.* and usergroups.* -------------------------------------------------------------------------------


def _user(state: SlackState, user_id: str, email: str | None) -> dict[str, Any]:
    """A `users.info` user: a confirmed member of the bot's workspace, unless `state.people` says otherwise."""
    extra = dict(state.people.get(user_id) or {})
    profile = {"real_name": user_id, "display_name": user_id} | ({"email": email} if email else {})
    profile |= extra.pop("profile", None) or {}
    user = {"id": user_id, "team_id": BOT["team_id"], "name": user_id.lower(), "deleted": False, "is_bot": False}
    user |= {"is_restricted": False, "is_ultra_restricted": False, "is_email_confirmed": True}
    return user | extra | {"profile": profile}


def _lookup_by_email(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    email = _required(args, "email")
    if email not in state.directory:
        raise SlackError("users_not_found")
    return {"user": _user(state, state.directory[email], email)}


def _users_info(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    user_id = _required(args, "user")
    emails = {uid: email for email, uid in state.directory.items()}
    if user_id not in emails and user_id not in state.people and user_id != BOT["user_id"]:
        raise SlackError("user_not_found")  # Slack knows only the users it has
    return {"user": _user(state, user_id, emails.get(user_id))}


def _usergroup_users(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    group = _required(args, "usergroup")
    if group not in state.usergroups:
        raise SlackError("no_such_subteam")
    return {"users": list(state.usergroups[group])}


# ---- views.* ------------------------------------------------------------------------------------------------


def _store_view(state: SlackState, view: Any, view_id: str | None = None) -> dict[str, Any]:
    if not isinstance(view, dict):
        raise SlackError("invalid_arguments")
    view_id = view_id or state.next_id("V")
    stored = dict(view) | {"id": view_id, "hash": state.next_ts(), "team_id": BOT["team_id"]}
    state.views[view_id] = stored
    return stored


def _views_publish(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    user = _required(args, "user_id")
    view = _store_view(state, args.get("view"))
    state.published.setdefault(user, []).append(view)
    return {"view": view}


def _views_open(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    _required(args, "trigger_id")
    return {"view": _store_view(state, args.get("view")) | {"trigger_id": args["trigger_id"]}}


def _views_update(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    view_id = args.get("view_id") or next(
        (vid for vid, v in state.views.items() if v.get("external_id") == args.get("external_id")), None
    )
    if view_id not in state.views:
        raise SlackError("not_found")
    return {"view": _store_view(state, args.get("view"), view_id)}


# ---- files (the files_upload_v2 flow) and the rest ----------------------------------------------------------


def _upload_url(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    file_id = state.next_id("F")
    state.pending_uploads[file_id] = {"id": file_id, "name": _required(args, "filename"), "content": None}
    state.pending_uploads[file_id]["length"] = int(args.get("length") or 0)
    return {"file_id": file_id, "upload_url": f"{state.base_url}/upload/{file_id}"}


def _complete_upload(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    done = []
    for item in args.get("files") or []:
        upload = state.pending_uploads.get(item.get("id", ""))
        if upload is None or upload["content"] is None:
            raise SlackError("file_not_found")
        channel, thread_ts = args.get("channel_id") or args.get("channels"), args.get("thread_ts") or None
        record = upload | {"title": item.get("title") or upload["name"], "channel": channel, "thread_ts": thread_ts}
        record["initial_comment"] = args.get("initial_comment")
        state.files.append(record)
        del state.pending_uploads[upload["id"]]
        done.append({"id": record["id"], "name": record["name"], "title": record["title"]})
        if channel:  # Slack shares the file as a message in the channel (or thread)
            share = {"text": record["initial_comment"] or "", "thread_ts": thread_ts}
            posted = _post_message(state, {"channel": channel, **share})
            state.find(channel, posted["ts"])["files"] = [done[-1]]
    return {"files": done}


def _auth_test(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    return dict(BOT) | {"url": "https://dna-test.slack.com/", "is_enterprise_install": False}


def _connections_open(state: SlackState, args: dict[str, Any]) -> dict[str, Any]:
    if state.socket_url is None:
        raise SlackError("socket_mode_not_enabled")
    return {"url": state.socket_url}


def _required(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if value in (None, ""):
        raise SlackError("invalid_arguments")
    return str(value)


METHODS: dict[str, Handler] = {
    "auth.test": _auth_test,
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "chat.delete": _delete,
    "chat.postEphemeral": _post_ephemeral,
    "chat.getPermalink": _permalink,
    "reactions.add": _reaction,
    "conversations.history": _history,
    "conversations.replies": _replies,
    "conversations.info": _info,
    "conversations.members": _members,
    "users.lookupByEmail": _lookup_by_email,
    "users.info": _users_info,
    "usergroups.users.list": _usergroup_users,
    "views.publish": _views_publish,
    "views.open": _views_open,
    "views.update": _views_update,
    "files.getUploadURLExternal": _upload_url,
    "files.completeUploadExternal": _complete_upload,
    "apps.connections.open": _connections_open,
}


# ---- HTTP ---------------------------------------------------------------------------------------------------


def create_app(state: SlackState) -> Starlette:
    """The Starlette app serving `state`: `/api/<method>`, `/upload/<file_id>`, `/response_url/<id>`."""

    async def api(request: Request) -> Response:
        method = request.path_params["method"]
        args = decode_args(await request.body(), request.headers.get("content-type", ""), dict(request.query_params))
        headers = {k.lower(): v for k, v in request.headers.items()}
        with state.cond:
            state.calls.append(Call(method, args, headers, time.monotonic()))
            try:
                response = _answer(state, method, args, headers)
                stall = state.stalls.get(method, []).pop(0) if state.stalls.get(method) else 0.0
            finally:
                state.cond.notify_all()
        if stall:  # done already (the message is posted), but the caller hears nothing for a while
            await asyncio.sleep(stall)
        return response

    async def upload(request: Request) -> Response:
        body = await request.body()
        with state.cond:
            pending = state.pending_uploads.get(request.path_params["file_id"])
            if pending is None:
                return PlainTextResponse("unknown upload", status_code=404)
            pending["content"] = body
            state.cond.notify_all()
        return PlainTextResponse(f"OK - {len(body)}")

    async def respond(request: Request) -> Response:
        body = await request.body()
        payload = json.loads(body) if body.strip() else {}
        rid = request.path_params["rid"]
        with state.cond:
            verdict = check_message(payload, method="response_url") if state.strict else Verdict()
            _record(state, f"response_url {rid}", verdict, payload)
            if verdict.refusal is None:
                state.responses.setdefault(rid, []).append(payload)
            state.cond.notify_all()
        if verdict.refusal is not None:  # a plain-text error and HTTP 400, as Slack answers a response_url
            return PlainTextResponse(verdict.refusal.error, status_code=400)
        return PlainTextResponse("ok")

    routes = [
        Route("/api/{method}", api, methods=["POST", "GET"]),
        Route("/upload/{file_id}", upload, methods=["POST"]),
        Route("/response_url/{rid}", respond, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _answer(state: SlackState, method: str, args: dict[str, Any], headers: dict[str, str]) -> Response:
    fault = state.take_fault(method)
    if fault is not None:
        error_headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        error = fault.error or ("ratelimited" if fault.status == 429 else "fatal_error")
        return JSONResponse({"ok": False, "error": error}, status_code=fault.status, headers=error_headers)
    bearer = headers.get("authorization", "").removeprefix("Bearer ").strip() or str(args.get("token", ""))
    wanted = state.app_token if method == "apps.connections.open" else state.token
    if bearer != wanted:
        return JSONResponse({"ok": False, "error": "invalid_auth"})
    response = _authorised(state, method, args)
    if method != "apps.connections.open":  # as real Slack does: the bot token's scopes on every signed-in answer
        response.headers["x-oauth-scopes"] = ",".join(sorted(state.scopes))
    return response


def _authorised(state: SlackState, method: str, args: dict[str, Any]) -> Response:
    refusal = _judge(state, method, args)
    if refusal is not None:
        return refusal
    stub = state.stubs.get(method)
    if stub is not None:
        return JSONResponse(stub(args) if callable(stub) else {"ok": True} | stub)
    handler = METHODS.get(method)
    if handler is None:
        return JSONResponse({"ok": False, "error": "unknown_method"})
    try:
        return JSONResponse({"ok": True} | handler(state, args))
    except SlackError as exc:
        return JSONResponse({"ok": False, "error": exc.code} | exc.extra)


# ---- what Slack refuses -------------------------------------------------------------------------------------


def _judge(state: SlackState, method: str, args: dict[str, Any]) -> Response | None:
    """Slack's answer to a message or view it refuses (recorded in `state.refused`), else None to carry on."""
    if not state.strict or method not in (*MESSAGE_METHODS, *VIEW_METHODS):
        return None
    if method in VIEW_METHODS:
        verdict = check_view(args.get("view"), method=method)
    else:
        verdict = check_message(args, method=method, previous=_previous_blocks(state, args, method))
    where = f"{method} in {args.get('channel') or args.get('user_id') or '?'}"
    _record(state, where + (f" thread {args['thread_ts']}" if args.get("thread_ts") else ""), verdict, args)
    refusal = verdict.refusal
    if refusal is None:
        return None
    body: dict[str, Any] = {"ok": False, "error": refusal.error}
    if refusal.messages:  # chat.* also lists them bare in `errors`; views.* only in response_metadata
        if refusal.error == "invalid_blocks":
            body["errors"] = [m.removeprefix("[ERROR] ") for m in refusal.messages]
        body["response_metadata"] = {"messages": list(refusal.messages)}
    return JSONResponse(body)


def _previous_blocks(state: SlackState, args: dict[str, Any], method: str) -> list[Any] | None:
    if method != "chat.update":
        return None
    try:
        return state.find(str(args.get("channel")), str(args.get("ts"))).get("blocks")
    except SlackError:
        return None


def _record(state: SlackState, where: str, verdict: Verdict, payload: dict[str, Any]) -> None:
    refusal = verdict.refusal
    if refusal is not None:
        sized = refusal.error == "msg_blocks_too_long"  # no pointer: the biggest blocks are the ones to cut
        excerpt = tuple(offending(payload, refusal.messages)) if refusal.messages or sized else ()
        state.refused.append(Refused(where, refusal.error, "refused", refusal.messages, refusal.detail, excerpt))
    by_code: dict[str, list[str]] = {}
    for finding in verdict.findings:  # one record per rule broken, however many times this payload breaks it
        by_code.setdefault(finding.code, []).append(finding.message)
    for code, messages in by_code.items():
        excerpt = tuple(offending(payload, tuple(messages))[:3])
        state.refused.append(Refused(where, code, "policy", tuple(messages), excerpt=excerpt))
