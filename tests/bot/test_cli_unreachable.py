"""`dnabot sync` with a wrong OPENMETADATA_URL: one sentence, said once, in the human and the --json output."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from bot.cli import commands as cli
from bot.core.settings import get_settings
from tests.storage.test_om_unreachable import refused_url, web_page

__all__ = ["refused_url", "web_page"]  # fixtures used below

REFUSED = "cannot reach OpenMetadata at {url} (connection refused): is the server running and OPENMETADATA_URL right?"


@pytest.fixture
def sync_at(tmp_path, monkeypatch):
    """Run `dnabot sync ARGS…` in-process against `url` and a fresh SQLite store."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("OPENMETADATA_TOKEN", "tok")
    monkeypatch.chdir(tmp_path)

    def run(url: str, *args: str):
        monkeypatch.setenv("OPENMETADATA_URL", url)
        get_settings.cache_clear()
        return CliRunner().invoke(cli.app, ["sync", *args])

    yield run
    get_settings.cache_clear()


def warnings(caplog) -> list[str]:
    """What the sync logged at WARNING or above: each would be a second copy of the printed error."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_refused_port_is_one_line_said_once(sync_at, refused_url, caplog):
    human = sync_at(refused_url)
    said = REFUSED.format(url=refused_url)
    assert human.exit_code == 1
    assert f"error: {said}\n" in human.stdout
    assert (human.stdout + human.stderr).count("cannot reach OpenMetadata") == 1
    assert "2 requests, 1 retries" in human.stdout  # one quick retry, then the sentence

    scripted = sync_at(refused_url, "--json")
    assert scripted.exit_code == 1 and scripted.stderr == ""  # no log line repeating it
    assert json.loads(scripted.stdout)["error"] == f"OMUnavailable: {said}"
    assert warnings(caplog) == []  # neither a retry warning nor "sync run failed" repeats it on stderr


def test_a_web_page_is_named_not_dumped(sync_at, web_page, caplog):
    url, status, _asked = web_page
    human = sync_at(url)
    out = human.stdout + human.stderr
    assert human.exit_code == 1
    said = f"error: {url} does not look like OpenMetadata (it answered GET /api/v1/system/version with HTTP {status}"
    assert said in human.stdout
    assert out.count("does not look like OpenMetadata") == 1 and out.count("hello world") <= 2

    scripted = sync_at(url, "--json")
    assert scripted.exit_code == 1 and scripted.stderr == ""
    error = json.loads(scripted.stdout)["error"]
    assert "does not look like OpenMetadata" in error and error.count("hello world") <= 2
    assert warnings(caplog) == []
