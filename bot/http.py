"""HTTP mode: a Starlette app with `POST /slack/events`, `GET /healthz` and `GET /metrics` (Prometheus text)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import metrics as bot_metrics
from bot import services
from bot.settings import Settings
from storage.errors import DnaBotError


def _last_run(settings: Settings) -> Any:
    try:
        runs = services.runs(settings, 1)
    except DnaBotError:
        return None
    return runs[0] if runs else None


def _duration(run: Any) -> float | None:
    return (run.finished_at - run.started_at).total_seconds() if run and run.finished_at else None


def health(settings: Settings) -> dict[str, Any]:
    """The last sync's status (the process is up whenever this answers)."""
    run = _last_run(settings)
    if run is None:
        return {"status": "ok", "last_sync": None}
    last = {
        "id": run.id,
        "status": run.status,
        "mode": run.mode,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_seconds": _duration(run),
        "age_seconds": round((datetime.now(UTC) - (run.finished_at or run.started_at)).total_seconds(), 1),
    }
    return {"status": "ok", "last_sync": last}


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
        response = await run_in_threadpool(app.dispatch, to_bolt_request(request, body))
        return to_starlette_response(response)

    async def healthz(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(health, settings))

    async def metrics(request: Request) -> Response:
        body, content_type = await run_in_threadpool(bot_metrics.render, settings)
        return Response(body, media_type=content_type)

    routes = [
        Route("/slack/events", slack_events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes)
