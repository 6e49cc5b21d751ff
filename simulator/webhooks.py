"""Event subscriptions (OM's alerts API) and their webhook deliveries: one signed POST per ChangeEvent.

`POST|PUT|GET /api/v1/events/subscriptions`, `GET|DELETE …/{id}` and `…/name/{name}` keep subscriptions in the
catalog. Every ChangeEvent the catalog records is then delivered, in the background, to each enabled `Webhook`
destination whose resources match: the exact event JSON `/v1/events` serves, custom headers and query params,
`X-OM-Signature: sha256=<base64 HMAC-SHA256>` when a secret is set, retried on non-2xx (doc §8).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from simulator.records import SimError

log = logging.getLogger(__name__)

ALERT_TYPES = frozenset({"Notification", "Observability", "ActivityFeed", "GovernanceWorkflowChangeEvent", "Custom"})
CATEGORIES = frozenset({"Users", "Teams", "Admins", "Assignees", "Owners", "Mentions", "Followers", "External"})
DESTINATION_TYPES = frozenset({"Webhook", "Slack", "MsTeams", "GChat", "Email", "ActivityFeed"})
CREATE_FIELDS = frozenset(
    {
        "name", "className", "displayName", "description", "owners", "enabled", "batchSize", "alertType", "trigger",
        "resources", "destinations", "provider", "retries", "pollInterval", "input", "notificationTemplate",
        "domains", "config",
    }
)  # fmt: skip
MASK = "*********"
RETRY_WAIT_SECONDS = 0.05  # OM waits `pollInterval` between retries; the simulator keeps tests fast


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one webhook destination delivers, and how it signs."""

    endpoint: str
    method: str
    headers: dict[str, str]
    query: dict[str, str]
    secret: str | None
    timeout: float
    read_timeout: float


@dataclass
class Subscription:
    """One stored subscription: its public document and what delivery needs."""

    doc: dict[str, Any]
    resources: frozenset[str]
    webhooks: list[Destination]
    retries: int
    delivered: int = 0
    failed: int = 0
    workers: list[_Deliverer] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.doc["id"])

    def wants(self, entity_type: str, *, all_only: bool = False) -> bool:
        """Whether this subscription takes an event of `entity_type` (`all_only`: only the `all` resource does,
        as for 2.0's lineage events, `ResourceEventTypes.ALL_ONLY_EVENTS`)."""
        if not self.doc.get("enabled", True):
            return False
        return "all" in self.resources or (not all_only and entity_type in self.resources)


def signature(secret: str, body: bytes) -> str:
    """OM's `X-OM-Signature` value: `sha256=` + Base64 (not hex) of HMAC-SHA256(secret, body)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


class EventSubscriptions:
    """The catalog's subscriptions; `publish` is called (under the catalog lock) for every recorded event."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.by_id: dict[str, Subscription] = {}

    # --- REST ---------------------------------------------------------------------------------------------
    def create(self, body: Any, by: str = "admin", *, replace: bool = False) -> tuple[dict[str, Any], int]:
        """POST (409 on a taken name) or PUT (create or replace by name); the stored document and its status."""
        sub = _parse(body)
        with self.lock:
            old = self.find(sub.doc["name"], by_name=True, missing_ok=True)
            if old is not None and not replace:
                raise SimError(409, f"Entity already exists: eventsubscription {sub.doc['name']}")
            now = self.clock()
            sub.doc.update(id=old.id if old else str(uuid.uuid4()), updatedAt=now, updatedBy=by)
            sub.doc["version"] = round(float(old.doc["version"]) + 0.1, 1) if old else 0.1
            sub.doc["href"] = f"http://localhost:8585/api/v1/events/subscriptions/{sub.doc['id']}"
            if old is not None:
                self._stop(old)
            self.by_id[sub.id] = sub
            sub.workers = [_Deliverer(self, sub, d) for d in sub.webhooks]
            for worker in sub.workers:
                worker.start()
            return _public(sub.doc), 200 if old is not None else 201

    def listing(self) -> dict[str, Any]:
        with self.lock:
            data = [_public(s.doc) for s in sorted(self.by_id.values(), key=lambda s: s.doc["name"])]
        return {"data": data, "paging": {"total": len(data)}}

    def find(self, key: str, *, by_name: bool, missing_ok: bool = False) -> Subscription | None:
        with self.lock:
            if by_name:
                found = next((s for s in self.by_id.values() if s.doc["name"] == key), None)
            else:
                found = self.by_id.get(key)
        if found is None and not missing_ok:
            raise SimError(404, f"eventsubscription instance for {key} not found")
        return found

    def get(self, key: str, *, by_name: bool) -> dict[str, Any]:
        sub = self.find(key, by_name=by_name)
        assert sub is not None
        return _public(sub.doc)

    def delete(self, key: str, *, by_name: bool) -> dict[str, Any]:
        with self.lock:
            sub = self.find(key, by_name=by_name)
            assert sub is not None
            del self.by_id[sub.id]
        self._stop(sub)
        return _public(sub.doc)

    def stats(self, key: str) -> dict[str, int]:
        """Deliveries that succeeded and that gave up after every retry (for tests and the admin API)."""
        sub = self.find(key, by_name=key not in self.by_id)
        assert sub is not None
        return {"delivered": sub.delivered, "failed": sub.failed}

    # --- delivery -----------------------------------------------------------------------------------------
    def publish(self, entity_type: str, raw: bytes, *, all_only: bool = False) -> None:
        """Queue one recorded ChangeEvent (its exact JSON) for every matching destination; never blocks."""
        if not self.by_id:
            return
        with self.lock:
            for sub in self.by_id.values():
                if sub.wants(entity_type, all_only=all_only):
                    for worker in sub.workers:
                        worker.inbox.put(raw)

    def close(self) -> None:
        """Stop every delivery thread (pending deliveries are dropped)."""
        with self.lock:
            subs = list(self.by_id.values())
        for sub in subs:
            self._stop(sub)

    def _stop(self, sub: Subscription) -> None:
        for worker in sub.workers:
            worker.stop()
        sub.workers = []


class _Deliverer(threading.Thread):
    """One destination's delivery thread: events in order, each retried on non-2xx before giving up."""

    def __init__(self, owner: EventSubscriptions, sub: Subscription, dest: Destination) -> None:
        super().__init__(name=f"om-sim-webhook:{sub.doc['name']}", daemon=True)
        self.owner, self.sub, self.dest = owner, sub, dest
        self.inbox: queue.Queue[bytes | None] = queue.Queue()
        timeout = httpx.Timeout(dest.read_timeout, connect=dest.timeout)
        self.http = httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False)

    def stop(self) -> None:
        self.inbox.put(None)

    def run(self) -> None:
        try:
            while (raw := self.inbox.get()) is not None:
                ok = self.deliver(raw)
                with self.owner.lock:
                    if ok:
                        self.sub.delivered += 1
                    else:
                        self.sub.failed += 1
        finally:
            self.http.close()

    def deliver(self, raw: bytes) -> bool:
        headers = {"Content-Type": "application/json", "X-Auth-Params-Email": "admin@open-metadata.org"}
        headers.update(self.dest.headers)
        if self.dest.secret:
            headers["X-OM-Signature"] = signature(self.dest.secret, raw)
        retrying = Retrying(
            stop=stop_after_attempt(self.sub.retries + 1),
            wait=wait_exponential(multiplier=RETRY_WAIT_SECONDS, max=2.0),
            retry=retry_if_exception_type(httpx.HTTPError) | retry_if_result(lambda ok: not ok),
        )
        try:
            return bool(retrying(self._send, raw, headers))
        except (RetryError, httpx.HTTPError) as exc:
            log.info("webhook %s gave up on an event: %s", self.dest.endpoint, exc)
            return False

    def _send(self, raw: bytes, headers: Mapping[str, str]) -> bool:
        started = time.perf_counter()
        response = self.http.request(
            self.dest.method, self.dest.endpoint, content=raw, headers=dict(headers), params=self.dest.query or None
        )
        log.debug(
            "webhook %s answered %s in %.3fs", self.dest.endpoint, response.status_code, time.perf_counter() - started
        )
        return 200 <= response.status_code < 300  # a 3xx is an error too: OM refuses redirects


# --- createEventSubscription, validated leniently (doc §8: the destination `config` oneOf trips strict validators)


def _parse(body: Any) -> Subscription:
    if not isinstance(body, dict):
        raise SimError(400, "the request body must be a createEventSubscription object")
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        raise SimError(400, f'Unrecognized field "{unknown[0]}"')
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 256 or "::" in name:
        raise SimError(400, "name must be a string of 1..256 characters without '::'")
    if body.get("alertType") not in ALERT_TYPES:
        raise SimError(400, f"alertType must be one of {sorted(ALERT_TYPES)}")
    trigger = body.get("trigger") or {"triggerType": "RealTime"}
    if not isinstance(trigger, dict) or trigger.get("triggerType") not in ("RealTime", "Scheduled"):
        raise SimError(400, "trigger.triggerType must be RealTime or Scheduled")
    resources = body.get("resources") or ["all"]
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise SimError(400, "resources must be a list of strings")
    destinations = body.get("destinations") or []
    if not isinstance(destinations, list):
        raise SimError(400, "destinations must be a list")
    docs, webhooks = [], []
    for i, raw in enumerate(destinations):
        doc, webhook = _destination(raw, i)
        docs.append(doc)
        if webhook is not None:
            webhooks.append(webhook)
    retries = _int(body, "retries", 3)
    doc = {k: v for k, v in body.items() if k not in ("resources", "destinations")}
    doc.update(
        name=name,
        fullyQualifiedName=name,
        trigger=trigger,
        filteringRules={"resources": resources, "rules": []},
        destinations=docs,
        enabled=bool(body.get("enabled", True)),
        batchSize=_int(body, "batchSize", 10),
        provider=body.get("provider") or "user",
        retries=retries,
        pollInterval=_int(body, "pollInterval", 10),
    )
    return Subscription(doc=doc, resources=frozenset(resources), webhooks=webhooks, retries=max(0, retries))


def _destination(raw: Any, i: int) -> tuple[dict[str, Any], Destination | None]:
    where = f"destinations[{i}]"
    if not isinstance(raw, dict):
        raise SimError(400, f"{where} must be an object")
    if raw.get("category") not in CATEGORIES or raw.get("type") not in DESTINATION_TYPES:
        raise SimError(
            400, f"{where} needs a category in {sorted(CATEGORIES)} and a type in {sorted(DESTINATION_TYPES)}"
        )
    config = raw.get("config") or {}
    if not isinstance(config, dict):
        raise SimError(400, f"{where}.config must be an object")
    doc = {"id": str(uuid.uuid4()), "timeout": 10, "readTimeout": 12, "enabled": True, **raw, "config": dict(config)}
    if raw["type"] != "Webhook":
        return doc, None
    endpoint = config.get("endpoint")
    if (
        not isinstance(endpoint, str)
        or (parts := urlsplit(endpoint)).scheme not in ("http", "https")
        or not parts.netloc
    ):
        raise SimError(400, f"{where}.config.endpoint must be an http(s) URL")
    method = config.get("httpMethod") or "POST"
    if method not in ("POST", "PUT"):
        raise SimError(400, f"{where}.config.httpMethod must be POST or PUT")
    headers, query = config.get("headers") or {}, config.get("queryParams") or {}
    if not isinstance(headers, dict) or not isinstance(query, dict):
        raise SimError(400, f"{where}.config.headers and queryParams must be objects")
    secret = _secret(config, where)
    if not doc["enabled"]:
        return doc, None
    dest = Destination(
        endpoint=endpoint,
        method=method,
        headers={str(k): str(v) for k, v in headers.items()},
        query={str(k): str(v) for k, v in query.items()},
        secret=secret,
        timeout=float(doc["timeout"]),
        read_timeout=float(doc["readTimeout"]),
    )
    return doc, dest


def _secret(config: dict[str, Any], where: str) -> str | None:
    """The signing key: `authType: {type: bearer, secretKey}` (1.13) or the legacy `secretKey`."""
    auth = config.get("authType")
    if auth is not None:
        if not isinstance(auth, dict) or auth.get("type") not in ("none", "bearer", "oauth2"):
            raise SimError(400, f"{where}.config.authType.type must be none, bearer or oauth2")
        if auth["type"] == "bearer":
            if not isinstance(auth.get("secretKey"), str):
                raise SimError(400, f"{where}.config.authType: bearer needs a secretKey")
            return str(auth["secretKey"])
    legacy = config.get("secretKey")
    return legacy if isinstance(legacy, str) and legacy else None


def _int(body: Mapping[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SimError(400, f"{name} must be an integer")
    return value


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as the API shows it: signing secrets masked, as OM masks `authType`."""
    out = dict(doc)
    dests = []
    for dest in doc.get("destinations", []):
        config = dict(dest.get("config") or {})
        if isinstance(config.get("authType"), dict) and "secretKey" in config["authType"]:
            config["authType"] = {**config["authType"], "secretKey": MASK}
        if "secretKey" in config:
            config["secretKey"] = MASK
        dests.append({**dest, "config": config})
    out["destinations"] = dests
    return out
