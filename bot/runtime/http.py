"""HTTP mode: the Starlette app of `/slack/events`, `/openmetadata/webhook`, `/healthz` and `/metrics`.

`POST /slack/events`, `POST /openmetadata/webhook`, `GET /healthz` and `GET /metrics` (Prometheus text).

Every route reads at most `MAX_BODY_BYTES` of a body (`BodyLimit`, 413 past it), and `/slack/events` checks the
signature headers and the signature itself before Bolt parses anything: an unsigned request is refused with a
401 without being parsed or logged, and a body Slack never sends gets a 4xx, never a 500.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.core import metrics as bot_metrics
from bot.core import services
from bot.core.settings import Settings
from bot.runtime.webhook import MAX_BODY_BYTES, webhook_routes
from storage.errors import DnaBotError
from storage.persistence import coordination
from storage.persistence.db import session_factory

log = logging.getLogger(__name__)

SLACK_MEDIA_TYPES = ("application/x-www-form-urlencoded", "application/json")
MAX_DEPTH = 64  # Slack's deepest payloads (a modal's state, rich text) nest about 15 levels
MAX_TIMESTAMP_DIGITS = 12


class _TooLarge(Exception):
    """Raised from the receive channel once a body passes the limit (caught by `BodyLimit`)."""


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    # `Connection: close` makes uvicorn drop the connection instead of reading (and discarding) the rest
    response = PlainTextResponse("request body too large", status_code=413, headers={"connection": "close"})
    await response(scope, receive, send)


class BodyLimit:
    """Pure ASGI middleware: a request body over `max_bytes` gets a 413, and no more than that is ever read; a
    declared Content-Length over it is refused before reading anything, a chunked body once it passes it. A
    route that answers without reading its body closes the connection, so the server reads no more of it."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [value for name, value in scope["headers"] if name.lower() == b"content-length"]
        if declared and (not declared[0].strip().isdigit() or len(set(declared)) > 1):
            await PlainTextResponse("bad Content-Length", status_code=400)(scope, receive, send)
            return
        if declared and int(declared[0]) > self.max_bytes:
            await _too_large(scope, receive, send)
            return
        received = 0
        started = False
        # a body left unread (a route that never reads it) must not be drained by the server after the answer
        unread = bool(declared and int(declared[0])) or any(
            name.lower() == b"transfer-encoding" for name, _ in scope["headers"]
        )

        async def limited_receive() -> Message:
            nonlocal received, unread
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
                unread = unread and bool(message.get("more_body"))
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if unread:  # `Connection: close` makes uvicorn drop the rest instead of reading it
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _TooLarge:
            if not started:  # once a response is under way there is nothing more to say
                await _too_large(scope, receive, send)


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a parsed body nests deeper than `limit` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _ssl_check(body: bytes) -> bool:
    """Whether the body is Slack's certificate probe, which Bolt answers 200 without a signature check (and
    without parsing more: a body with a `payload` field is parsed as that payload, which then must be signed)."""
    if b"payload" in body or not (body.startswith(b"ssl_check=") or b"&ssl_check=" in body):
        return False
    return dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True)).get("ssl_check") == "1"


def _unsigned(request: Request, body: bytes, verifier: SignatureVerifier | None) -> str | None:
    """Why a request to /slack/events is not Slack's (None when it is): checked on the raw bytes, before Bolt
    parses the body or logs it, and without its `int()` on a timestamp that is no number."""
    if verifier is None:  # no signing secret: Bolt refuses the request itself
        return None
    if _ssl_check(body):
        return None
    timestamps = request.headers.getlist("x-slack-request-timestamp")
    signatures = request.headers.getlist("x-slack-signature")
    if len(timestamps) != 1 or len(signatures) != 1:
        return "missing or repeated Slack signature headers"
    timestamp, signature = timestamps[0].strip(), signatures[0].strip()
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= MAX_TIMESTAMP_DIGITS):
        return "bad X-Slack-Request-Timestamp"
    if not signature.isascii():  # hmac.compare_digest raises on other text
        return "invalid request"
    try:
        text = body.decode("utf-8")  # Slack signs and sends UTF-8; the verifier would raise on anything else
    except UnicodeDecodeError:
        return "invalid request"
    return None if verifier.is_valid(text, timestamp, signature) else "invalid request"


def _last_run(settings: Settings) -> Any:
    try:
        runs = services.runs(settings, 1)
    except DnaBotError:
        return None
    return runs[0] if runs else None


def _duration(run: Any) -> float | None:
    return (run.finished_at - run.started_at).total_seconds() if run and run.finished_at else None


def _leads(settings: Settings, holder: str) -> bool | None:
    """Whether `holder` holds the scheduler lease now (None when the store cannot tell)."""
    try:
        with session_factory(services.engine_for(settings))() as session:
            return coordination.holder_of(session, coordination.SCHEDULER_LEASE, now=datetime.now(UTC)) == holder
    except SQLAlchemyError:
        return None


def health(settings: Settings, replica: Any = None) -> dict[str, Any]:
    """The last sync's status, and this replica's part (leader or not); the process is up whenever this answers.
    Always 200: a failed sync or an unreachable store is reported, not a reason to restart the replica."""
    answer: dict[str, Any] = {"status": "ok", "last_sync": None}
    if replica is not None:
        answer["replica"] = {"id": replica.holder, "leader": _leads(settings, replica.holder)}
    run = _last_run(settings)
    if run is None:
        return answer
    answer["last_sync"] = {
        "id": run.id,
        "status": run.status,
        "mode": run.mode,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_seconds": _duration(run),
        "age_seconds": round((datetime.now(UTC) - (run.finished_at or run.started_at)).total_seconds(), 1),
    }
    return answer


_SHAPES: dict[str, type | tuple[type, ...]] = {
    "event": dict,
    "view": dict,
    "actions": list,
    "user": (dict, str),
    "channel": (dict, str),
    "team": (dict, str),
}


def _wrong_shape(body: Any) -> bool:
    """A body Slack never sends (Bolt's middleware would fail on it with a 500): refused with a 400 instead."""
    if not isinstance(body, dict):
        return True
    return any(key in body and not isinstance(body[key], kind) for key, kind in _SHAPES.items())


def create_http_app(settings: Settings, *, bolt_app: App | None = None, replica: Any = None) -> Starlette:
    """The ASGI app for HTTP mode. The sync Bolt `dispatch` runs in Starlette's thread pool so that its
    signature check, `ack()` wait and middleware never block the event loop (Bolt's own Starlette handler
    calls it inline)."""
    if bolt_app is None:
        from bot.slack.app import build_app

        bolt_app = build_app(settings)
    app = bolt_app
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    verifier = SignatureVerifier(secret) if secret else None

    async def slack_events(request: Request) -> Response:
        try:
            body = await request.body()
        except ClientDisconnect:
            return JSONResponse({"error": "request body incomplete"}, status_code=400)
        refusal = _unsigned(request, body, verifier)
        if refusal is not None:
            return JSONResponse({"error": refusal}, status_code=401)
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type not in SLACK_MEDIA_TYPES:
            return JSONResponse({"error": "expected a form or JSON body"}, status_code=415)
        try:
            bolt_request = to_bolt_request(request, body)
        except (ValueError, AttributeError, TypeError, RecursionError):  # Bolt parses the body as it is made
            return JSONResponse({"error": "malformed request body"}, status_code=400)
        if _wrong_shape(bolt_request.body) or _too_deep(bolt_request.body):
            return JSONResponse({"error": "malformed request body"}, status_code=400)
        try:
            response = await run_in_threadpool(app.dispatch, bolt_request)
        except (AttributeError, TypeError, KeyError) as exc:  # a payload of the wrong shape, e.g. "event": "x"
            log.warning("refused a Slack request of an unexpected shape: %s", type(exc).__name__)
            return JSONResponse({"error": "malformed request body"}, status_code=400)
        return to_starlette_response(response)

    async def healthz(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(health, settings, replica))

    async def metrics(request: Request) -> Response:
        body, content_type = await run_in_threadpool(bot_metrics.render, settings)
        return Response(body, media_type=content_type)

    worker = getattr(replica, "webhook_worker", None)
    if worker is None:  # no replica runtime (tests, a bare ASGI deployment): a worker of this app's own
        from bot.runtime.webhook import TargetedSyncWorker, targeted_runner

        worker = TargetedSyncWorker(services.engine_for(settings), targeted_runner(settings, None)).start()

    routes = [
        *webhook_routes(settings, worker),
        Route("/slack/events", slack_events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(BodyLimit)])
