"""The simulator's event subscriptions: OM's alerts API, and every change pushed to webhooks, signed and retried."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator import run_in_thread
from storage.openmetadata.fqn import url_segment
from tests.fakes.schemas import validate

STG_ORDERS = "warehouse.shop.staging.stg_orders"
SECRET = "s3cr3t-webhook-key"


@dataclass
class Receiver:
    """A loopback webhook endpoint recording each delivery; `answers` are the statuses it gives, in order."""

    url: str
    deliveries: list[tuple[dict[str, str], bytes, dict[str, str]]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    delay: float = 0.0

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[dict[str, str], bytes, dict[str, str]]]:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count:
            assert time.monotonic() < deadline, f"{len(self.deliveries)} of {count} deliveries arrived"
            time.sleep(0.01)
        return self.deliveries


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver(url="")
    lock = threading.Lock()

    async def hook(request: Request) -> Response:
        body = await request.body()
        if box.delay:
            time.sleep(box.delay)  # a slow receiver (blocks its own server only)
        with lock:
            box.deliveries.append((dict(request.headers), body, dict(request.query_params)))
            status = box.answers.pop(0) if box.answers else 200
        return Response(status_code=status)

    handle = run_in_thread(Starlette(routes=[Route("/om-events", hook, methods=["POST", "PUT"])]))
    box.url = f"{handle.url}/om-events"
    yield box
    handle.stop()


@pytest.fixture
def om(om_demo):
    yield om_demo
    om_demo.catalog.subscriptions.close()


def subscription(endpoint: str, *, name: str = "dnabot", config: dict[str, Any] | None = None, **extra) -> dict:
    """A createEventSubscription body for one generic webhook (OM 1.13 shape)."""
    cfg = {
        "endpoint": endpoint,
        "httpMethod": "POST",
        "headers": {"X-Source": "openmetadata"},
        "authType": {"type": "bearer", "secretKey": SECRET},
    }
    return {
        "name": name,
        "alertType": "Notification",
        "resources": ["all"],
        "enabled": True,
        "trigger": {"triggerType": "RealTime"},
        "destinations": [
            {"category": "External", "type": "Webhook", "timeout": 10, "readTimeout": 12, "config": config or cfg}
        ],
        **extra,
    }


def rename(om, old: str, new: str) -> None:
    om.admin("POST", f"/admin/tables/{url_segment(STG_ORDERS)}/columns/{old}/rename", {"newName": new})


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_a_change_is_pushed_as_the_exact_signed_change_event(om, receiver):
    created = om.request("POST", "/api/v1/events/subscriptions", subscription(receiver.url))
    assert created["name"] == "dnabot" and created["id"]
    assert created["destinations"][0]["config"]["authType"]["secretKey"] != SECRET  # masked, as OM does
    listed = om.get("/api/v1/events/subscriptions")
    assert [s["id"] for s in listed["data"]] == [created["id"]] and SECRET not in json.dumps(listed)
    since = om.catalog.tick()

    rename(om, "status", "order_state")
    [(headers, body, _)] = receiver.wait_for(1)
    assert headers["x-om-signature"] == signed(body)
    assert headers["x-source"] == "openmetadata" and headers["content-type"] == "application/json"
    event = json.loads(body)
    validate("changeEvent", event)
    assert isinstance(event["entity"], str)
    validate("table", json.loads(event["entity"]))
    assert (event["eventType"], event["entityType"], event["entityFullyQualifiedName"]) == (
        "entityUpdated",
        "table",
        STG_ORDERS,
    )
    feed = om.get("/api/v1/events", entityUpdated="table", timestamp=since)["data"]
    assert feed == [event]  # byte for byte what the polled feed serves


def test_legacy_secret_key_signs_and_no_secret_means_no_signature(om, receiver):
    legacy = {"endpoint": receiver.url, "secretKey": "legacy-key", "queryParams": {"source": "om"}}
    om.request("POST", "/api/v1/events/subscriptions", subscription(receiver.url, name="legacy", config=legacy))
    rename(om, "status", "order_state")
    [(headers, body, query)] = receiver.wait_for(1)
    assert headers["x-om-signature"] == signed(body, "legacy-key") and query == {"source": "om"}

    om.request("DELETE", "/api/v1/events/subscriptions/name/legacy")
    om.request(
        "POST",
        "/api/v1/events/subscriptions",
        subscription(receiver.url, name="open", config={"endpoint": receiver.url}),
    )
    rename(om, "order_state", "status")
    headers, _, _ = receiver.wait_for(2)[1]
    assert "x-om-signature" not in headers


def test_non_2xx_answers_are_retried_until_accepted(om, receiver):
    receiver.answers = [500, 503]
    sub = om.request("POST", "/api/v1/events/subscriptions", subscription(receiver.url, retries=3))
    rename(om, "status", "order_state")
    attempts = receiver.wait_for(3)
    assert len({json.loads(body)["id"] for _, body, _ in attempts}) == 1  # the same event, three times
    stats = om.catalog.subscriptions.stats(sub["id"])
    deadline = time.monotonic() + 5
    while stats["delivered"] != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
        stats = om.catalog.subscriptions.stats(sub["id"])
    assert stats == {"delivered": 1, "failed": 0}


def test_a_slow_receiver_never_delays_the_mutation(om, receiver):
    receiver.delay = 1.0
    om.request("POST", "/api/v1/events/subscriptions", subscription(receiver.url))
    started = time.perf_counter()
    rename(om, "status", "order_state")
    assert time.perf_counter() - started < 0.5
    receiver.wait_for(1)


def test_only_matching_resources_and_live_subscriptions_are_delivered(om, receiver):
    om.request("POST", "/api/v1/events/subscriptions", subscription(receiver.url, name="pipes", resources=["pipeline"]))
    gone = om.request("POST", "/api/v1/events/subscriptions", subscription(receiver.url, name="gone"))
    om.request("DELETE", f"/api/v1/events/subscriptions/{gone['id']}")
    assert om.http.get(f"/api/v1/events/subscriptions/{gone['id']}").status_code == 404
    rename(om, "status", "order_state")  # a table event: neither subscription wants it now
    om.admin("POST", f"/admin/pipelines/{url_segment('airflow.shop_staging')}/status", {"executionStatus": "Failed"})
    # one delivery thread per destination, in event order: a table delivery would have come first
    [(_, body, _)] = receiver.wait_for(1)[:1]
    assert json.loads(body)["entityType"] == "pipeline"


@pytest.mark.parametrize(
    ("patch", "status"),
    [
        ({"name": None}, 400),
        ({"alertType": "Sometimes"}, 400),
        ({"colour": "blue"}, 400),
        ({"destinations": [{"category": "External", "type": "Webhook", "config": {"endpoint": "ftp://x"}}]}, 400),
        ({"destinations": [{"category": "Nobody", "type": "Webhook", "config": {"endpoint": "http://x"}}]}, 400),
    ],
)
def test_bad_subscriptions_are_refused(om, receiver, patch, status):
    body = {k: v for k, v in {**subscription(receiver.url), **patch}.items() if v is not None}
    response = om.http.post("/api/v1/events/subscriptions", json=body)
    assert response.status_code == status and response.json()["code"] == status


def test_names_are_unique_and_put_replaces(om, receiver):
    first = om.request("POST", "/api/v1/events/subscriptions", subscription(receiver.url))
    again = om.http.post("/api/v1/events/subscriptions", json=subscription(receiver.url))
    assert again.status_code == 409
    replaced = om.http.put("/api/v1/events/subscriptions", json=subscription(receiver.url, enabled=False))
    assert replaced.status_code == 200 and replaced.json()["id"] == first["id"] and replaced.json()["version"] == 0.2
    assert om.get("/api/v1/events/subscriptions/name/dnabot")["enabled"] is False


def test_the_alerts_api_needs_the_bearer_token(om, receiver):
    response = httpx.post(f"{om.url}/api/v1/events/subscriptions", json=subscription(receiver.url), trust_env=False)
    assert response.status_code == 401
