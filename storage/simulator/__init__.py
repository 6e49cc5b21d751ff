"""OpenMetadata-compatible REST simulator used by the demo, the tests and the benchmarks."""

from __future__ import annotations

from storage.simulator.app import create_app
from storage.simulator.catalog import DEMO_CATALOG, Catalog
from storage.simulator.records import SimError
from storage.simulator.server import ServerHandle, run_in_thread, serve
from storage.simulator.synthetic import synthetic_catalog

__all__ = [
    "DEMO_CATALOG",
    "Catalog",
    "ServerHandle",
    "SimError",
    "create_app",
    "run_in_thread",
    "serve",
    "synthetic_catalog",
]
