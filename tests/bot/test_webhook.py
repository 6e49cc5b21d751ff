"""OpenMetadata webhooks over real HTTP: signed deliveries become targeted re-syncs; bad ones change nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from bot.core import services
from bot.runtime.webhook import TargetedSyncWorker, webhook_routes
from simulator import run_in_thread
from storage.openmetadata.fqn import url_segment
from storage.persistence import coordination, incidents, store
from storage.persistence.db import SyncAlreadyRunning, make_engine, session_factory
from storage.persistence.models import InboundEvent
from storage.sync.run import SyncResult
from tests.e2e.replicas import wait_until
from tests.fakes.omserver import PROFILE_VERSIONS

SECRET = "om-webhook-secret"
STG_ORDERS = "warehouse.shop.staging.stg_orders"
RAW_ORDERS = "warehouse.shop.raw.orders"
ORDERS = "warehouse.shop.analytics.orders"


@pytest.fixture(params=PROFILE_VERSIONS)
def om_version(request: pytest.FixtureRequest) -> str:
    """Write-backs and webhooks run against every simulated OpenMetadata release line."""
    return request.param


def sign(body: bytes, secret: str = SECRET) -> str:
    """OpenMetadata's X-OM-Signature (doc §8): sha256= + Base64 HMAC-SHA256 of the exact body."""
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def change_event(fqn: str = STG_ORDERS, entity_type: str = "table", **extra) -> dict:
    entity = {"id": str(uuid.uuid4()), "name": fqn.rsplit(".", 1)[-1], "fullyQualifiedName": fqn}
    return {
        "id": str(uuid.uuid4()),
        "eventType": "entityUpdated",
        "entityType": entity_type,
        "entityId": entity["id"],
        "entityFullyQualifiedName": fqn,
        "timestamp": int(time.time() * 1000),
        "entity": json.dumps(entity),
        **extra,
    }


@dataclass
class Hook:
    """The webhook served on a loopback port, its store, and a worker whose `run` records what it was given."""

    url: str
    engine: sa.Engine
    worker: TargetedSyncWorker
    calls: list[list[tuple[str, str]]] = field(default_factory=list)
    kicks: int = 0

    def post(self, payload: object, *, signature: str | None = "sign", raw: bytes | None = None) -> httpx.Response:
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            headers["X-OM-Signature"] = sign(body)
        elif signature is not None:
            headers["X-OM-Signature"] = signature
        return httpx.post(self.url, content=body, headers=headers, trust_env=False, timeout=10)

    def pending(self) -> list[tuple[str, str]]:
        with session_factory(self.engine)() as session:
            return [(t, f) for _, t, f in coordination.pending_sync_requests(session)]

    def inbound(self) -> int:
        with session_factory(self.engine)() as session:
            return session.scalar(sa.select(sa.func.count()).select_from(InboundEvent)) or 0


def serve(settings, worker: TargetedSyncWorker):
    return run_in_thread(Starlette(routes=webhook_routes(settings, worker)))


@pytest.fixture
def hook(bot_env, db_url) -> Iterator[Hook]:
    settings = bot_env(DATABASE_URL=db_url, OPENMETADATA_WEBHOOK_SECRET=SECRET)
    engine = make_engine(db_url)
    box = Hook(url="", engine=engine, worker=TargetedSyncWorker(engine, lambda targets: True))

    def run(targets: list[tuple[str, str]]) -> bool:
        box.calls.append(targets)
        return True

    box.worker.run = run
    kick = box.worker.kick

    def counted_kick() -> None:
        box.kicks += 1
        kick()

    box.worker.kick = counted_kick  # type: ignore[method-assign]
    handle = serve(settings, box.worker)
    box.url = f"{handle.url}/openmetadata/webhook"
    yield box
    handle.stop()
    box.worker.stop()
    engine.dispose()


def test_a_signed_event_is_accepted_at_once_as_a_sync_request(hook):
    response = hook.post(change_event())
    assert response.status_code == 200
    assert response.json() == {"events": 1, "duplicates": 0, "ignored": 0, "requests": 1}
    assert hook.pending() == [("table", STG_ORDERS)]
    assert hook.kicks == 1 and hook.calls == []  # nothing synced inside the request


@pytest.mark.parametrize("signature", [None, "", "sha256=AAAA", sign(b"another body"), "sha1=whatever"])
def test_a_missing_or_bad_signature_is_refused_and_stores_nothing(hook, signature):
    before = refused()
    response = hook.post(change_event(), signature=signature)
    assert response.status_code == 401 and response.json() == {"error": "missing or bad X-OM-Signature"}
    assert hook.pending() == [] and hook.inbound() == 0 and hook.kicks == 0
    assert refused() == before + 1  # visible on /metrics


def refused() -> float:
    labels = {"result": "bad_signature"}
    return REGISTRY.get_sample_value("dnabot_webhook_requests_total", labels) or 0.0


def test_the_same_event_delivered_twice_is_stored_once(hook):
    event = change_event()
    assert hook.post(event).json()["requests"] == 1
    again = hook.post(event)
    assert again.status_code == 200 and again.json() == {"events": 0, "duplicates": 1, "ignored": 0, "requests": 0}
    assert hook.post(change_event()).json()["requests"] == 1  # a new event on the same table: one request still
    assert hook.pending() == [("table", STG_ORDERS)] and hook.inbound() == 2


def test_batches_test_cases_and_foreign_entities(hook):
    test_case = {
        "id": str(uuid.uuid4()),
        "name": "status_in_accepted_set",
        "fullyQualifiedName": f"{ORDERS}.status.status_in_accepted_set",
        "entityLink": f"<#E::table::{ORDERS}::columns::status>",
        "testDefinition": {"id": str(uuid.uuid4()), "type": "testDefinition", "name": "columnValuesToBeInSet"},
        "testSuite": {"id": str(uuid.uuid4()), "type": "testSuite", "name": f"{ORDERS}.testSuite"},
    }
    events = [
        change_event(f"{ORDERS}.status.status_in_accepted_set", "testCase", entity=json.dumps(test_case)),
        change_event("ana", "user"),
        {"not": "an event"},
    ]
    response = hook.post({"data": events})
    assert response.json() == {"events": 2, "duplicates": 0, "ignored": 2, "requests": 1}
    assert hook.pending() == [("table", ORDERS)]
    assert hook.post([change_event("airflow.shop_staging", "pipeline")]).status_code == 200
    assert sorted(hook.pending()) == [("pipeline", "airflow.shop_staging"), ("table", ORDERS)]


def test_malformed_and_oversized_bodies(hook):
    assert hook.post(None, raw=b"{not json").status_code == 400
    assert hook.post(None, raw=b'"a string"').status_code == 400
    huge = json.dumps(change_event(description="x" * 1_100_000)).encode()
    response = hook.post(None, raw=huge)
    assert response.status_code == 413
    assert hook.pending() == [] and hook.inbound() == 0


def test_signed_json_nested_200k_deep_is_a_400_not_a_500(hook):
    for opener in ("[", '{"data":'):
        response = hook.post(None, raw=(opener * (200_000 // len(opener))).encode())
        assert response.status_code == 400, f"{opener!r} * 200k: HTTP {response.status_code}"
    assert hook.pending() == [] and hook.inbound() == 0


@pytest.mark.parametrize(
    "event",
    [
        change_event(id="i" * 5000),
        change_event(fqn="warehouse.shop." + "f" * 5000),
        change_event(entityType="lineage", entity="[" * 200_000),
        change_event(entityType="lineage", entity=json.dumps({"edge": json.loads("[" * 900 + "]" * 900)})),
    ],
    ids=["id-longer-than-its-column", "fqn-longer-than-its-column", "entity-nested-200k-deep", "odd-edge"],
)
def test_a_signed_event_no_store_could_hold_is_ignored_not_a_500(hook, event):
    response = hook.post(event)
    assert response.status_code == 200, f"HTTP {response.status_code}: {response.text[:200]}"
    assert response.json()["ignored"] == 1 and response.json()["requests"] == 0
    assert hook.pending() == []


def test_without_a_secret_the_webhook_refuses_everything(bot_env, db_url):
    settings = bot_env(DATABASE_URL=db_url, OPENMETADATA_WEBHOOK_SECRET="")
    engine = make_engine(db_url)
    handle = serve(settings, TargetedSyncWorker(engine, lambda targets: True))
    try:
        body = json.dumps(change_event()).encode()
        response = httpx.post(
            f"{handle.url}/openmetadata/webhook",
            content=body,
            headers={"X-OM-Signature": sign(body, "")},
            trust_env=False,
        )
        assert response.status_code == 503 and response.json() == {"error": "webhook not configured"}
    finally:
        handle.stop()
        engine.dispose()


def test_the_worker_removes_requests_only_after_a_good_run_and_waits_out_a_busy_lock(hook):
    outcomes: list[object] = [SyncAlreadyRunning(), SyncAlreadyRunning(), False, True]

    def run(targets: list[tuple[str, str]]) -> bool:
        hook.calls.append(targets)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return bool(outcome)

    hook.worker.run = run
    hook.worker.busy_wait = 0.01
    hook.worker.start()
    hook.post(change_event())
    wait_until(lambda: len(hook.calls) == 3)  # busy, busy, then a failed run: the request stays
    assert hook.pending() == [("table", STG_ORDERS)]
    hook.worker.kick()
    wait_until(lambda: hook.worker.runs == 1)
    assert hook.calls == [[("table", STG_ORDERS)]] * 4
    assert hook.pending() == []


def test_a_lock_busy_for_too_long_leaves_the_requests_for_later(hook):
    def run(targets: list[tuple[str, str]]) -> bool:
        hook.calls.append(targets)
        raise SyncAlreadyRunning()

    hook.worker.run = run
    hook.worker.busy_wait, hook.worker.busy_timeout = 0.01, 0.1
    hook.post(change_event())
    assert hook.worker.drain_once() is False
    assert len(hook.calls) >= 2 and hook.pending() == [("table", STG_ORDERS)]


def syncing_worker(settings, engine: sa.Engine) -> tuple[TargetedSyncWorker, list[SyncResult]]:
    """A started worker whose runs are real targeted syncs, and the results they gave."""
    results: list[SyncResult] = []

    def run(targets: list[tuple[str, str]]) -> bool:
        results.append(asyncio.run(services.sync(settings, targets=targets)))
        return results[-1].ok

    return TargetedSyncWorker(engine, run).start(), results


def test_an_openmetadata_change_reaches_the_store_through_the_webhook(bot_env, db_url, om_demo):
    settings = bot_env(DATABASE_URL=db_url, OPENMETADATA_WEBHOOK_SECRET=SECRET)
    first = asyncio.run(services.sync(settings))
    assert first.ok and first.mode == "full"
    engine = make_engine(db_url)
    worker, results = syncing_worker(settings, engine)
    handle = serve(settings, worker)
    try:
        om_demo.subscribe_webhook(handle.url, SECRET)
        rename = {"newName": "order_state"}
        om_demo.admin("POST", f"/admin/tables/{url_segment(STG_ORDERS)}/columns/status/rename", rename)
        wait_until(lambda: worker.runs == 1, timeout=20)
        [result] = results
        assert result.mode == "targeted" and result.entities_seen == 1
        assert result.changes_by_kind.get("column_renamed") == 1
        [opened] = result.incidents["opened"]
        with session_factory(engine)() as session:
            assert incidents.get_incident(session, opened).incident.root_fqn == STG_ORDERS
            targeted, full = store.last_runs(session, 2)
            assert (targeted.mode, full.id) == ("targeted", first.run_id)
            assert targeted.events_cursor == full.events_cursor  # polling still covers the change
            assert coordination.pending_sync_requests(session) == []
    finally:
        om_demo.catalog.subscriptions.close()
        handle.stop()
        worker.stop()
        engine.dispose()


@pytest.mark.parametrize("om_version", ["2.0.7"])
def test_on_2_0_a_removed_lineage_edge_reaches_the_store_through_the_webhook(bot_env, db_url, om_demo, om_version):
    """2.0 sends lineage edits to subscriptions on `all`: both ends are re-read at once, no sweep needed."""
    settings = bot_env(DATABASE_URL=db_url, OPENMETADATA_WEBHOOK_SECRET=SECRET)
    assert asyncio.run(services.sync(settings)).ok
    engine = make_engine(db_url)
    worker, results = syncing_worker(settings, engine)
    handle = serve(settings, worker)
    try:
        om_demo.subscribe_webhook(handle.url, SECRET)
        om_demo.admin("DELETE", "/admin/lineage", {"from": RAW_ORDERS, "to": STG_ORDERS})
        wait_until(lambda: worker.runs >= 1, timeout=20)
        result = results[-1]
        assert result.mode == "targeted" and result.ok, result.error
        assert result.changes_by_kind.get("lineage_edge_removed", 0) >= 1
        with session_factory(engine)() as session:
            edges = store.live_edges(session)
        assert not any(e.from_fqn == RAW_ORDERS and e.to_fqn == STG_ORDERS for e in edges)
    finally:
        om_demo.catalog.subscriptions.close()
        worker.stop()
        handle.stop()
