"""OpenMetadata-compatible REST simulator used by the demo, the tests and the benchmarks."""

from __future__ import annotations

from simulator.app import create_app
from simulator.catalog import DEMO_CATALOG, Catalog
from simulator.records import SimError
from simulator.server import ServerHandle, run_in_thread, serve
from simulator.synthetic import synthetic_catalog

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
