"""HTTP mode: a Starlette app with `POST /slack/events`, `GET /healthz` and `GET /metrics` (Prometheus text)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot import services
from bot.settings import Settings
from storage.errors import DnaBotError

SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")


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


def metrics_text(settings: Settings) -> str:
    """A few gauges in the Prometheus text format, formatted by hand (prometheus_client is not a dependency)."""
    run = _last_run(settings)
    try:
        counts = Counter(i.severity for i in services.incidents_list(settings, "open"))
    except DnaBotError:
        counts = Counter()
    lines = [
        "# HELP dnabot_open_incidents Open incidents by severity.",
        "# TYPE dnabot_open_incidents gauge",
    ]
    for sev in sorted(set(SEVERITIES) | set(counts)):
        lines.append(f'dnabot_open_incidents{{severity="{sev}"}} {counts.get(sev, 0)}')
    duration = _duration(run)
    gauges = [
        ("dnabot_last_sync_duration_seconds", "Duration of the last sync run.", duration),
        (
            "dnabot_last_sync_success",
            "1 if the last sync run succeeded, else 0.",
            None if run is None else int(run.status == "succeeded"),
        ),
        (
            "dnabot_last_sync_timestamp_seconds",
            "When the last sync run finished (Unix time).",
            (run.finished_at or run.started_at).timestamp() if run else None,
        ),
    ]
    for name, text, value in gauges:
        if value is not None:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value}"]
    return "\n".join(lines) + "\n"


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
        text = await run_in_threadpool(metrics_text, settings)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    routes = [
        Route("/slack/events", slack_events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes)
