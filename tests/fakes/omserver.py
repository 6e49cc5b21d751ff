"""OpenMetadata simulator fixtures: a loopback server seeded with sample data, schema-validated."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from storage.fqn import url_segment
from storage.simulator import Catalog, ServerHandle, create_app, run_in_thread
from tests.conftest import SAMPLE_DATA
from tests.fakes.schemas import response_validator

TOKEN = "sim-token"


@dataclass
class OMServer:
    """A running simulator: `url`, `token`, the live `catalog`, and the schema `violations` seen so far."""

    url: str
    token: str
    catalog: Catalog
    violations: list[str]
    handle: ServerHandle = field(repr=False)
    owns_server: bool = True
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """The bearer header every OM call needs."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def http(self) -> httpx.Client:
        """A shared authenticated client on the server (closed at teardown)."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, headers=self.headers, trust_env=False, timeout=10)
        return self._client

    def get(self, path: str, **params: Any) -> Any:
        """GET an OM path (`/api/v1/...`) and return its JSON (raises on an error status)."""
        response = self.http.get(path, params=params or None)
        response.raise_for_status()
        return response.json()

    def request(self, method: str, path: str, json: Any = None) -> Any:
        """Any authenticated call (OM or admin path); its JSON, or None for an empty body (raises on errors)."""
        response = self.http.request(method, path, json=json)
        response.raise_for_status()
        return response.json() if response.content else None

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        """Call the admin API (`/admin/...`; FQNs percent-encoded, see `seg`) and return its JSON."""
        return self.request(method, path, json)

    def subscribe_webhook(self, base_url: str, secret: str, name: str = "dnabot") -> Any:
        """Create an event subscription delivering every change to `base_url`'s `/openmetadata/webhook`,
        signed with `secret` (OpenMetadata's `X-OM-Signature`)."""
        destination = {
            "category": "External",
            "type": "Webhook",
            "config": {
                "endpoint": f"{base_url}/openmetadata/webhook",
                "authType": {"type": "bearer", "secretKey": secret},
            },
        }
        body = {"name": name, "alertType": "Notification", "resources": ["all"], "destinations": [destination]}
        return self.request("POST", "/api/v1/events/subscriptions", body)

    @staticmethod
    def seg(fqn: str) -> str:
        """An FQN (or column name) encoded as one URL path segment."""
        return url_segment(fqn)

    def close(self) -> None:
        """Close the client, and stop the server unless it is the shared one."""
        if self._client is not None:
            self._client.close()
        if self.owns_server:
            self.handle.stop()


def _recorder(violations: list[str]) -> Callable[[str, Any], None]:
    def record(path: str, payload: Any) -> None:
        try:
            response_validator(path, payload)
        except Exception as exc:  # any rejection is a test failure, reported at teardown
            violations.append(f"{path}: {exc}")

    return record


def start_server(catalog: Catalog, token: str = TOKEN) -> OMServer:
    """Serve `catalog` on 127.0.0.1:<free port>, validating every OM response against the schemas."""
    violations: list[str] = []
    app = create_app(catalog, token=token, validator=_recorder(violations))
    handle = run_in_thread(app)
    return OMServer(url=handle.url, token=token, catalog=catalog, violations=violations, handle=handle)


class _SharedServer:
    """One uvicorn server per session whose catalog, faults and violations are swapped per test.

    Starting and stopping uvicorn costs ~0.15 s, so function-scoped fixtures lease this server instead:
    each test still gets a fresh catalog, no faults, and its own violations list.
    """

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.app = create_app(Catalog(), token=TOKEN, validator=self._record)
        self.handle = run_in_thread(self.app)

    def _record(self, path: str, payload: Any) -> None:
        try:
            response_validator(path, payload)
        except Exception as exc:
            self.violations.append(f"{path}: {exc}")

    def lease(self, catalog: Catalog) -> OMServer:
        sim = self.app.state.simulator
        sim.catalog = catalog
        self.app.state.catalog = catalog
        sim.faults.clear()
        self.violations = []
        return OMServer(
            url=self.handle.url,
            token=TOKEN,
            catalog=catalog,
            violations=self.violations,
            handle=self.handle,
            owns_server=False,
        )


@pytest.fixture(scope="session")
def _om_shared() -> Iterator[dict[str, _SharedServer]]:
    servers: dict[str, _SharedServer] = {}
    yield servers
    for server in servers.values():
        server.handle.stop()


def _leased(shared: dict[str, _SharedServer], key: str, catalog: Catalog) -> Iterator[OMServer]:
    if key not in shared:
        shared[key] = _SharedServer()
    server = shared[key].lease(catalog)
    try:
        yield server
    finally:
        server.close()
    assert not server.violations, "simulator responses broke the OM schemas:\n" + "\n".join(server.violations)


@pytest.fixture
def om_sample(_om_shared: dict[str, _SharedServer]) -> Iterator[OMServer]:
    """The simulator seeded with OpenMetadata's official sample data (a fresh catalog per test)."""
    yield from _leased(_om_shared, "sample", Catalog.from_sample_data(SAMPLE_DATA))


@pytest.fixture
def om_demo(_om_shared: dict[str, _SharedServer]) -> Iterator[OMServer]:
    """The simulator seeded with the project's demo warehouse (`storage/simulator/demo_catalog.json`)."""
    yield from _leased(_om_shared, "demo", Catalog.demo())


@pytest.fixture
def om_factory() -> Iterator[Callable[[Catalog], OMServer]]:
    """Start simulators over catalogs of your own (e.g. `synthetic_catalog(200)`); all stopped at teardown.

    Every response is schema-validated (about 2-3 ms per entity), so keep such catalogs small; benchmarks
    should serve `create_app(catalog)` without a validator instead.
    """
    servers: list[OMServer] = []

    def start(catalog: Catalog) -> OMServer:
        server = start_server(catalog)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    problems = [v for s in servers for v in s.violations]
    assert not problems, "simulator responses broke the OM schemas:\n" + "\n".join(problems)
