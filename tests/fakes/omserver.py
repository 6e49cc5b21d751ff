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

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        """Call the admin API (`/admin/...`; FQNs percent-encoded, see `seg`) and return its JSON."""
        response = self.http.request(method, path, json=json)
        response.raise_for_status()
        return response.json() if response.content else None

    @staticmethod
    def seg(fqn: str) -> str:
        """An FQN (or column name) encoded as one URL path segment."""
        return url_segment(fqn)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
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


def _serve(catalog: Catalog) -> Iterator[OMServer]:
    server = start_server(catalog)
    try:
        yield server
    finally:
        server.close()
    assert not server.violations, "simulator responses broke the OM schemas:\n" + "\n".join(server.violations)


@pytest.fixture
def om_sample() -> Iterator[OMServer]:
    """The simulator seeded with OpenMetadata's official sample data."""
    yield from _serve(Catalog.from_sample_data(SAMPLE_DATA))


@pytest.fixture
def om_demo() -> Iterator[OMServer]:
    """The simulator seeded with the project's demo warehouse (`storage/simulator/demo_catalog.json`)."""
    yield from _serve(Catalog.demo())


@pytest.fixture
def om_factory() -> Iterator[Callable[[Catalog], OMServer]]:
    """Start simulators over catalogs of your own (e.g. `synthetic_catalog(200)`); all stopped at teardown."""
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
