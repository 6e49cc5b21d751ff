"""`POST /openmetadata/webhook`: signed OpenMetadata change events in, targeted re-sync requests out, 200 at once.

OpenMetadata's event subscriptions deliver one ChangeEvent per request, signed with `X-OM-Signature: sha256=` +
Base64 HMAC-SHA256 of the raw body (no timestamp, at-least-once): the signature is checked before anything is
parsed, each event id is accepted once (`inbound_events`), and each event becomes a `sync_requests` row in the
same transaction. No sync runs inside the request: `TargetedSyncWorker` picks the rows up in the background and
runs `targeted_runner` on them (the re-sync of those entities, the incident pipeline, the outbox drained).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.core import metrics, services
from bot.core.settings import Settings
from storage.openmetadata.models import ChangeEvent
from storage.persistence import coordination
from storage.persistence.db import SyncAlreadyRunning, session_factory
from storage.persistence.models import FQN_LENGTH
from storage.sync.events import event_targets

if TYPE_CHECKING:
    from bot.delivery.notifier import Notifier

log = logging.getLogger(__name__)

PATH = "/openmetadata/webhook"
MAX_BODY_BYTES = 1_048_576  # 1 MiB, on every route (bot/runtime/http.py BodyLimit)
SIGNATURE_HEADER = "x-om-signature"
MAX_EVENT_ID = 200
MAX_TYPE_CHARS = 64  # sync_requests.entity_type
SOURCE = "openmetadata"

Targets = list[tuple[str, str]]


def signature(secret: str, body: bytes) -> str:
    """What OpenMetadata sends in `X-OM-Signature` for `body` (Base64, not hex)."""
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of an `X-OM-Signature` header against the raw body."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().encode(), signature(secret, body).encode())


def events_of(payload: Any) -> list[Any] | None:
    """The events in a delivery: one ChangeEvent, a list of them, or `{"data": [...]}`; None for another shape."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get("data"), list) and "eventType" not in payload:
        return payload["data"]
    if isinstance(payload, dict):
        return [payload]
    return None


@dataclass(frozen=True, slots=True)
class Accepted:
    """What one delivery did: events new to us, repeats, events of no interest, sync requests stored."""

    events: int = 0
    duplicates: int = 0
    ignored: int = 0
    requested: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "events": self.events,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "requests": self.requested,
        }


def _targets(event: ChangeEvent) -> Targets:
    """What the event asks to re-sync, leaving out what no column can hold; nothing for an entity that fails to
    parse (a signed event may still carry junk: it is counted as ignored, never a 500)."""
    try:
        targets = event_targets(event)
    except (ValueError, TypeError, RecursionError):
        return []
    return [(kind, fqn) for kind, fqn in targets if len(kind) <= MAX_TYPE_CHARS and len(fqn) <= FQN_LENGTH]


def record_events(engine: Engine, items: Iterable[Any], *, ttl_seconds: float, now: datetime | None = None) -> Accepted:
    """Dedup each event by id and store a sync request for what it names, in one transaction."""
    now = now or datetime.now(UTC)
    events = duplicates = ignored = requested = 0
    with session_factory(engine).begin() as session:
        for item in items:
            try:
                event = ChangeEvent.model_validate(item)
            except (ValidationError, RecursionError):
                ignored += 1
                continue
            if len(event.id) > MAX_EVENT_ID:  # no real event id is that long (the dedup key has 255 characters)
                ignored += 1
                continue
            if not coordination.first_delivery(
                session, f"om-event:{event.id}", source=SOURCE, ttl_seconds=ttl_seconds, now=now
            ):
                duplicates += 1
                continue
            events += 1
            targets = _targets(event)
            if not targets:
                ignored += 1
                continue
            for entity_type, fqn in targets:
                coordination.request_sync(session, entity_type, fqn, now=now)
                requested += 1
    return Accepted(events, duplicates, ignored, requested)


def _refuse(result: str, status: int, message: str) -> JSONResponse:
    metrics.observe_webhook(result)
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None once it exceeds `limit` bytes (read no further)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def webhook_endpoint(
    settings: Settings, engine: Engine, on_requested: Callable[[], None], *, max_body: int = MAX_BODY_BYTES
) -> Callable[[Request], Any]:
    """The Starlette endpoint: verify, dedup, store sync requests, call `on_requested()`, answer 200."""

    def store(items: list[Any]) -> Accepted:
        return record_events(engine, items, ttl_seconds=settings.dedup_ttl_seconds)

    async def endpoint(request: Request) -> Response:
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
        if not secret:  # never accept unsigned deliveries
            return _refuse("not_configured", 503, "webhook not configured")
        try:
            body = await _body(request, max_body)
        except ClientDisconnect:
            return _refuse("bad_request", 400, "request body incomplete")
        if body is None:
            return _refuse("too_large", 413, "request body too large")
        if not signature_ok(secret, body, request.headers.get(SIGNATURE_HEADER)):
            return _refuse("bad_signature", 401, "missing or bad X-OM-Signature")
        try:
            items = events_of(json.loads(body))
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser's depth
            items = None
        if items is None:
            return _refuse("bad_request", 400, "expected a ChangeEvent JSON object or a list of them")
        accepted = await run_in_threadpool(store, items)
        metrics.observe_webhook("accepted")
        for _ in range(accepted.duplicates):
            metrics.observe_duplicate(SOURCE)
        if accepted.requested:
            on_requested()
        log.info("openmetadata webhook: %s", accepted.to_dict())
        # 200, not 202: some OpenMetadata releases count only 200 as delivered and retry anything else
        return JSONResponse(accepted.to_dict(), status_code=200)

    return endpoint


def webhook_routes(settings: Settings, worker: TargetedSyncWorker) -> list[Route]:
    """`POST /openmetadata/webhook`, storing requests in the worker's database and kicking it."""
    endpoint = webhook_endpoint(settings, worker.engine, worker.kick)
    return [Route(PATH, endpoint, methods=["POST"])]


class TargetedSyncWorker:
    """A daemon thread running targeted syncs of the pending webhook requests each time it is kicked.

    `run(targets) -> bool` does the work (sync, incident pipeline, outbox drain); requests are removed only when
    it returns True. While another sync holds the lock (`SyncAlreadyRunning`, e.g. the leader's tick) it retries
    every `busy_wait` seconds for up to `busy_timeout`, then leaves the requests for the next kick or tick.
    """

    def __init__(
        self,
        engine: Engine,
        run: Callable[[Targets], bool],
        *,
        busy_wait: float = 0.3,
        busy_timeout: float = 60.0,
        batch: int = 500,
    ) -> None:
        self.engine = engine
        self.run = run
        self.busy_wait = busy_wait
        self.busy_timeout = busy_timeout
        self.batch = batch
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0  # successful runs, for tests and logs

    def start(self) -> TargetedSyncWorker:
        if self._thread is None or not self._thread.is_alive():
            self._stopping.clear()
            self._thread = threading.Thread(target=self._loop, name="targeted-sync", daemon=True)
            self._thread.start()
        return self

    def kick(self) -> None:
        """Wake the worker: new requests are waiting (cheap, never blocks)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            try:
                while not self._stopping.is_set() and self.drain_once():
                    pass
            except Exception:  # a broken database must not kill the thread: the next kick tries again
                log.exception("targeted sync worker failed; requests stay for the next kick or sync tick")

    def _pending(self) -> list[tuple[int, str, str]]:
        with session_factory(self.engine)() as session:
            return coordination.pending_sync_requests(session, self.batch)

    def drain_once(self) -> bool:
        """Run one batch of pending requests; True when it succeeded and more may be waiting."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            pending = self._pending()
            if not pending:
                return False
            targets = [(entity_type, fqn) for _, entity_type, fqn in pending]
            started = datetime.now(UTC)
            try:
                ok = self.run(targets)
            except SyncAlreadyRunning:
                if time.monotonic() >= deadline or self._stopping.wait(self.busy_wait):
                    log.info("targeted sync: the sync lock stayed busy; %d requests wait", len(pending))
                    return False
                continue
            except Exception:
                log.exception("targeted sync of %d entities failed; the requests stay", len(targets))
                return False
            if not ok:
                return False
            with session_factory(self.engine).begin() as session:
                ids = [request_id for request_id, _, _ in pending]  # asked again meanwhile: kept for the next run
                coordination.done_sync_requests(session, ids, requested_before=started)
            self.runs += 1
            return True


# ------------------------------------------------------------------------------------------ what the worker runs


def sync_line(sync: dict[str, Any]) -> str:
    """A sync run in a few figures: `sync run 12 (incremental) 74 entities, 2 changes, incidents 1 opened, …`."""
    head = f"sync run {sync.get('run_id')} ({sync.get('mode')})"
    if sync.get("status") != "succeeded":
        return f"{head} {sync.get('status')}"
    changes = sum((sync.get("changes_by_kind") or {}).values())
    line = f"{head} {sync.get('entities_seen', 0)} entities, {changes} changes"
    found = sync.get("incidents")
    if found:
        opened = set(found.get("opened") or [])
        touched = {*found.get("reopened", []), *map(int, found.get("attached") or {}), *found.get("unsnoozed", [])}
        touched |= set(found.get("mirrored") or [])
        line += (
            f", incidents {len(opened)} opened, {len(touched - opened)} updated, {len(found.get('resolved') or [])}"
            " resolved"
        )
    return f"{line} in {float(sync.get('duration_seconds') or 0):.2f} s"


def targeted_runner(settings: Settings, notifier: Notifier | None) -> Callable[[list[tuple[str, str]]], bool]:
    """What the webhook worker runs: a targeted re-sync of the changed entities, the incident pipeline on it,
    then the outbox drained at once (so a breaking change reaches Slack in about a second). Raises
    `SyncAlreadyRunning` while another sync holds the lock (the worker waits and retries)."""

    def run(targets: list[tuple[str, str]]) -> bool:
        synced = asyncio.run(services.sync(settings, targets=targets))
        if not synced.ok:
            log.warning("targeted sync of %d entities failed: %s", len(targets), synced.error)
            return False
        log.info("targeted sync of %d entities: %s", len(targets), sync_line(synced.to_dict()))
        services.warm_graphs(settings)
        if notifier is not None:
            notifier.publish(services.engine_for(settings))
        return True

    return run
