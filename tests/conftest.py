"""Shared test fixtures: throwaway databases (SQLite and PostgreSQL) and a loopback OpenMetadata simulator."""

from __future__ import annotations

import os
from pathlib import Path

# Fixture modules live in tests/fakes/ (one per loopback service); pytest loads them as plugins.
pytest_plugins = [
    "tests.fakes.db",  # throwaway SQLite and PostgreSQL databases
    "tests.fakes.omserver",  # the OpenMetadata simulator, responses validated against the official schemas
    "tests.fakes.llm",  # a loopback OpenAI-compatible server
    "tests.fakes.mcp_servers",  # real MCP servers with Tavily's and BrightData's tools
    "tests.fakes.slack",  # the loopback Slack Web API and Socket Mode server
]

SHARED = Path(os.environ.get("DNABOT_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
SAMPLE_DATA = SHARED / "fixtures" / "openmetadata" / "sample_data"
SCHEMA_DIR = SHARED / "fixtures" / "openmetadata" / "schema"

# Loopback servers must never go through a proxy.
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
