"""Bot test fixtures: settings pointed at the demo simulator, the loopback Slack API and a throwaway store."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from typer.testing import CliRunner

from bot.cli import commands as cli
from bot.core.settings import Settings, get_settings

NO_KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TAVILY_API_KEY", "BRIGHTDATA_API_TOKEN", "DNABOT_MCP_CONFIG")


@pytest.fixture
def bot_env(tmp_path, om_demo, slack_api, monkeypatch) -> Iterator[Callable[..., Settings]]:
    """`bot_env(DNABOT_CHANNEL="C1", …)` → fresh Settings: no LLM/MCP keys, demo OpenMetadata, fake Slack."""
    for var in NO_KEYS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    monkeypatch.setenv("OPENMETADATA_URL", om_demo.url)
    monkeypatch.setenv("OPENMETADATA_TOKEN", om_demo.token)
    monkeypatch.setenv("SLACK_API_URL", slack_api.url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack_api.token)
    monkeypatch.chdir(tmp_path)

    def settings(**env: str) -> Settings:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return get_settings()

    yield settings
    get_settings.cache_clear()


@pytest.fixture
def dnabot(tmp_path, om_demo, monkeypatch):
    """Run `dnabot ARGS…` in-process against the demo simulator and a fresh SQLite store (no LLM, no MCP)."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TAVILY_API_KEY", "BRIGHTDATA_API_TOKEN", "DNABOT_MCP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("OPENMETADATA_URL", om_demo.url)
    monkeypatch.setenv("OPENMETADATA_TOKEN", om_demo.token)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str):
        get_settings.cache_clear()
        return runner.invoke(cli.app, list(args))

    yield run
    get_settings.cache_clear()
