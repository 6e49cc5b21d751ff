"""OpenMetadata simulator fixtures: a loopback server seeded with sample data, schema-validated, per version.

`om_sample`, `om_demo` and `om_factory` serve the OpenMetadata version of the `om_version` fixture (default
1.13.6); a test module or conftest overrides it, e.g. over every profile:

    @pytest.fixture(params=PROFILE_VERSIONS)
    def om_version(request): return request.param

Every answer is validated against the schemas reshaped to that version (`tests.fakes.schemas.validator_for`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from simulator import Catalog, ServerHandle, create_app, run_in_thread
from storage.openmetadata.fqn import url_segment
from tests.conftest import SAMPLE_DATA
from tests.fakes.schemas import validator_for

TOKEN = "sim-token"
DEFAULT_VERSION = "1.13.6"
# One release per row of the version table the simulator follows: 1.5–1.8, 1.9–1.13, 2.0.
PROFILE_VERSIONS = ["1.5.15", "1.8.12", "1.13.6", "2.0.7"]


@dataclass
class OMServer:
    """A running simulator: `url`, `token`, the live `catalog`, and the schema `violations` seen so far."""

    url: str
    token: str
    catalog: Catalog
    violations: list[str]
    handle: ServerHandle = field(repr=False)
    version: str = DEFAULT_VERSION
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


def _recorder(violations: list[str], version: str) -> Callable[[str, Any], None]:
    check = validator_for(version)

    def record(path: str, payload: Any) -> None:
        try:
            check(path, payload)
        except Exception as exc:  # any rejection is a test failure, reported at teardown
            violations.append(f"{path}: {exc}")

    return record


def start_server(catalog: Catalog, token: str = TOKEN, version: str = DEFAULT_VERSION) -> OMServer:
    """Serve `catalog` as OpenMetadata `version` on 127.0.0.1:<free port>, every answer schema-validated."""
    violations: list[str] = []
    app = create_app(catalog, token=token, validator=_recorder(violations, version), version=version)
    handle = run_in_thread(app)
    return OMServer(url=handle.url, token=token, catalog=catalog, violations=violations, handle=handle, version=version)


class _SharedServer:
    """One uvicorn server per session whose catalog, faults and violations are swapped per test.

    Starting and stopping uvicorn costs ~0.15 s, so function-scoped fixtures lease this server instead:
    each test still gets a fresh catalog, no faults, and its own violations list.
    """

    def __init__(self, version: str) -> None:
        self.version = version
        self.violations: list[str] = []
        self._check = validator_for(version)
        self.app = create_app(Catalog(), token=TOKEN, validator=self._record, version=version)
        self.handle = run_in_thread(self.app)

    def _record(self, path: str, payload: Any) -> None:
        try:
            self._check(path, payload)
        except Exception as exc:
            self.violations.append(f"{path}: {exc}")

    def lease(self, catalog: Catalog) -> OMServer:
        sim = self.app.state.simulator
        sim.attach(catalog)
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
            version=self.version,
        )


SharedServers = dict[tuple[str, str], _SharedServer]


@pytest.fixture(scope="session")
def _om_shared() -> Iterator[SharedServers]:
    servers: SharedServers = {}
    yield servers
    for server in servers.values():
        server.handle.stop()


@pytest.fixture
def om_version() -> str:
    """The OpenMetadata version the simulator fixtures serve (override with `params=PROFILE_VERSIONS`)."""
    return DEFAULT_VERSION


def _leased(shared: SharedServers, kind: str, version: str, catalog: Catalog) -> Iterator[OMServer]:
    key = (kind, version)
    if key not in shared:
        shared[key] = _SharedServer(version)
    server = shared[key].lease(catalog)
    try:
        yield server
    finally:
        server.close()
    assert not server.violations, "simulator responses broke the OM schemas:\n" + "\n".join(server.violations)


@pytest.fixture
def om_sample(_om_shared: SharedServers, om_version: str) -> Iterator[OMServer]:
    """The simulator seeded with OpenMetadata's official sample data (a fresh catalog per test)."""
    yield from _leased(_om_shared, "sample", om_version, Catalog.from_sample_data(SAMPLE_DATA))


@pytest.fixture
def om_demo(_om_shared: SharedServers, om_version: str) -> Iterator[OMServer]:
    """The simulator seeded with the project's demo warehouse (`simulator/demo_catalog.json`)."""
    yield from _leased(_om_shared, "demo", om_version, Catalog.demo())


@pytest.fixture
def om_factory(om_version: str) -> Iterator[Callable[[Catalog], OMServer]]:
    """Start simulators over catalogs of your own (e.g. `synthetic_catalog(200)`); all stopped at teardown.

    Every response is schema-validated (about 2-3 ms per entity), so keep such catalogs small; benchmarks
    should serve `create_app(catalog)` without a validator instead.
    """
    servers: list[OMServer] = []

    def start(catalog: Catalog) -> OMServer:
        server = start_server(catalog, version=om_version)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    problems = [v for s in servers for v in s.violations]
    assert not problems, "simulator responses broke the OM schemas:\n" + "\n".join(problems)
