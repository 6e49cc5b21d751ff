"""HTTP mode: a Starlette app with `POST /slack/events`, `POST /openmetadata/webhook`, `GET /healthz` and
`GET /metrics` (Prometheus text)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import metrics as bot_metrics
from bot import services
from bot.settings import Settings
from bot.webhook import webhook_routes
from storage import coordination
from storage.db import session_factory
from storage.errors import DnaBotError

log = logging.getLogger(__name__)


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


_SHAPES = {
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
        from bot.app import build_app

        bolt_app = build_app(settings)
    app = bolt_app

    async def slack_events(request: Request) -> Response:
        body = await request.body()
        try:
            bolt_request = to_bolt_request(request, body)
        except (ValueError, AttributeError, TypeError):  # Bolt parses the body before the signature check
            return JSONResponse({"error": "malformed request body"}, status_code=400)
        if _wrong_shape(bolt_request.body):
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
        from bot.runtime import targeted_runner
        from bot.webhook import TargetedSyncWorker

        worker = TargetedSyncWorker(services.engine_for(settings), targeted_runner(settings, None)).start()

    routes = [
        *webhook_routes(settings, worker),
        Route("/slack/events", slack_events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes)
