"""`/dna status` tells the health of each outside-context (MCP) server, secrets scrubbed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from agents import mcp_runtime
from bot.blocks.home import render_status
from bot.core import freshness


def test_status_names_each_mcp_server_and_why_one_is_down():
    servers = {
        "tavily": {"state": "down", "error": "not installed: run make mcp"},
        "brightdata": {"state": "up", "tools": ["search_engine", "scrape_as_markdown"]},
    }
    blocks = render_status(None, open_by_severity={}, stale_after=60, mcp=servers, now=datetime.now(UTC))
    text = json.dumps(blocks)
    assert "Outside context (MCP)" in text
    assert "`tavily` down: not installed: run make mcp" in text
    assert "`brightdata` up (2 tools)" in text


def test_mcp_errors_are_scrubbed_of_secrets(bot_env, monkeypatch):
    settings = bot_env(TAVILY_API_KEY="tvly-secret-123456")
    monkeypatch.setattr(
        mcp_runtime, "health", lambda: {"tavily": {"state": "down", "error": "401 for key tvly-secret-123456"}}
    )
    health = freshness.mcp_health(settings)
    assert "tvly-secret-123456" not in json.dumps(health)
    assert health["tavily"]["state"] == "down"
