"""`dnabot serve` explains itself before it starts: every settings problem at once (exit 2, no store file, no
call to Slack), then Slack's refusal or absence in one line (exit 1), never a traceback."""

from __future__ import annotations

import logging
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import commands as cli
from bot.core.settings import get_settings
from bot.slack.app import build_app

CHANNEL = "C0INCIDENTS"
TOUCHED = ("", "slack_bolt", "slack_sdk", "dnabot.slack.bolt", "httpx", "httpx2", "httpcore", "apscheduler", "alembic")


@pytest.fixture(autouse=True)
def logging_restored() -> Iterator[None]:
    """`serve` configures process logging once it gets past the settings: undo it after each test."""
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in TOUCHED}
    handlers, factory = list(root.handlers), logging.getLogRecordFactory()
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.setLogRecordFactory(factory)


@pytest.fixture
def serve(bot_env, slack_api, monkeypatch):
    """`serve(*args, VAR=value…)` runs `dnabot serve ARGS` in a fresh folder with the default store
    (./dnabot.db), the demo OpenMetadata and the loopback Slack; `unset=(…)` removes variables first."""
    bot_env()
    monkeypatch.delenv("DATABASE_URL")  # the default store, ./dnabot.db, is what must not appear
    monkeypatch.setenv("DNABOT_CHANNEL", CHANNEL)
    runner = CliRunner()

    def run(*args: str, unset: tuple[str, ...] = (), **env: str):
        for name in unset:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return runner.invoke(cli.app, ["serve", *args])

    return run


def lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def nothing_touched(folder: Path, slack_api) -> None:
    assert sorted(p.name for p in folder.iterdir()) == []  # no dnabot.db, no lock file
    assert slack_api.calls() == []


def test_no_slack_settings_at_all_lists_both_and_creates_no_store(serve, slack_api, tmp_path):
    result = serve(unset=("SLACK_BOT_TOKEN",))
    assert result.exit_code == 2
    assert lines(result) == [
        "error: dnabot serve cannot start: 2 settings to fix",
        "  - SLACK_BOT_TOKEN is not set: copy the Bot User OAuth Token (xoxb-…) from your Slack app's OAuth & "
        "Permissions page",
        "  - SLACK_SIGNING_SECRET is not set (HTTP mode needs it): copy the Signing Secret from your Slack app's "
        "Basic Information page, or set SLACK_APP_TOKEN (xapp-…) to use Socket Mode",
    ]
    assert "Traceback" not in result.output
    nothing_touched(tmp_path, slack_api)


def test_http_mode_without_a_signing_secret_stops_before_calling_slack(serve, slack_api, tmp_path):
    result = serve("--http")
    assert result.exit_code == 2
    [head, problem] = lines(result)
    assert head == "error: dnabot serve cannot start: 1 setting to fix"
    assert problem.startswith("  - SLACK_SIGNING_SECRET is not set (HTTP mode needs it): copy the Signing Secret")
    nothing_touched(tmp_path, slack_api)


def test_socket_mode_without_an_app_token(serve, slack_api, tmp_path):
    result = serve("--socket")
    assert result.exit_code == 2
    assert lines(result)[1:] == [
        "  - SLACK_APP_TOKEN is not set: create an app-level token with connections:write (Basic Information → "
        "App-Level Tokens), or serve over HTTP with --http and SLACK_SIGNING_SECRET"
    ]
    nothing_touched(tmp_path, slack_api)


def test_a_bot_token_in_the_app_token_setting_is_named_for_what_it_is(serve, slack_api, tmp_path):
    result = serve(SLACK_APP_TOKEN=slack_api.token)  # the xoxb- token pasted into SLACK_APP_TOKEN: Socket Mode
    assert result.exit_code == 2
    assert lines(result)[1].startswith("  - SLACK_APP_TOKEN does not start with xapp- (it is a bot token): ")
    assert slack_api.token not in result.output  # what a token is, never the token
    nothing_touched(tmp_path, slack_api)


def test_a_malformed_bot_token_is_refused_without_asking_slack(serve, slack_api, tmp_path):
    result = serve(SLACK_BOT_TOKEN="xoxp-1234-user-token-pasted", SLACK_APP_TOKEN=slack_api.app_token)
    assert result.exit_code == 2
    assert lines(result) == [
        "error: dnabot serve cannot start: 1 setting to fix",
        "  - SLACK_BOT_TOKEN does not start with xoxb- (it is a user token): copy the Bot User OAuth Token "
        "(xoxb-…) from your Slack app's OAuth & Permissions page",
    ]
    assert "xoxp-1234" not in result.output
    nothing_touched(tmp_path, slack_api)


def test_no_openmetadata_url(serve, slack_api, tmp_path):
    result = serve(unset=("OPENMETADATA_URL",), SLACK_APP_TOKEN=slack_api.app_token)
    assert result.exit_code == 2
    assert lines(result)[1:] == [
        "  - OPENMETADATA_URL is not set: point it at your OpenMetadata server, e.g. http://localhost:8585"
    ]
    nothing_touched(tmp_path, slack_api)


def test_a_bad_routing_file_is_named_with_its_problem(serve, slack_api, tmp_path):
    routing = tmp_path.parent / f"{tmp_path.name}-routing.yaml"  # outside the folder that must stay empty
    routing.write_text("default_channel: C1\nrulez: []\n", encoding="utf-8")
    result = serve(DNABOT_CONFIG=str(routing), SLACK_APP_TOKEN=slack_api.app_token)
    assert result.exit_code == 2
    assert lines(result)[1:] == [
        f"  - DNABOT_CONFIG unknown top-level key(s) rulez: fix the routing file {routing} (see the README)"
    ]
    nothing_touched(tmp_path, slack_api)


def test_a_missing_routing_file(serve, slack_api, tmp_path):
    result = serve(DNABOT_CONFIG="/nowhere/routing.yaml", SLACK_APP_TOKEN=slack_api.app_token)
    assert result.exit_code == 2
    assert lines(result)[1] == (
        "  - DNABOT_CONFIG cannot be read (No such file or directory): fix the routing file /nowhere/routing.yaml "
        "(see the README)"
    )
    nothing_touched(tmp_path, slack_api)


def test_every_problem_is_reported_together(serve, slack_api, tmp_path):
    result = serve(
        "--socket",
        unset=("OPENMETADATA_URL",),
        SLACK_BOT_TOKEN="not-a-token",
        DNABOT_LOG_LEVEL="loud",
        DNABOT_MCP_CONFIG="/nowhere/mcp.json",
    )
    assert result.exit_code == 2
    found = lines(result)
    assert found[0] == "error: dnabot serve cannot start: 5 settings to fix"
    assert [line.split()[1] for line in found[1:]] == [
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "OPENMETADATA_URL",
        "DNABOT_MCP_CONFIG",
        "DNABOT_LOG_LEVEL",
    ]
    assert found[1] == (
        "  - SLACK_BOT_TOKEN does not start with xoxb- (it is not a Slack token): copy the Bot User OAuth Token "
        "(xoxb-…) from your Slack app's OAuth & Permissions page"
    )
    assert found[5] == "  - DNABOT_LOG_LEVEL is 'loud', not a level: use DEBUG, INFO, WARNING, ERROR"
    nothing_touched(tmp_path, slack_api)


def test_a_value_that_cannot_be_read_is_a_settings_problem_too(serve, slack_api, tmp_path):
    result = serve(DNABOT_SYNC_INTERVAL_SECONDS="0", SLACK_APP_TOKEN=slack_api.app_token)
    assert result.exit_code == 2
    assert lines(result) == [
        "error: dnabot serve cannot start: 1 setting to fix",
        "  - DNABOT_SYNC_INTERVAL_SECONDS is invalid (got '0'): Input should be greater than or equal to 1",
    ]
    nothing_touched(tmp_path, slack_api)


# ---- Slack's word -------------------------------------------------------------------------------------------


def test_a_refused_bot_token_is_one_line_and_exit_1(serve, slack_api, tmp_path):
    result = serve(SLACK_BOT_TOKEN="xoxb-0000-revoked-or-mistyped", SLACK_APP_TOKEN=slack_api.app_token)
    assert result.exit_code == 1
    assert lines(result) == [
        "error: Slack refused SLACK_BOT_TOKEN (invalid_auth): copy the Bot User OAuth Token (xoxb-…) from your "
        "Slack app's OAuth & Permissions page (the value set is not a valid token)"
    ]
    assert [c.method for c in slack_api.calls()] == ["auth.test"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # asked before the store was touched


def test_an_uninstalled_app_says_to_reinstall_it(serve, slack_api, tmp_path):
    slack_api.fail("auth.test", error="account_inactive", times=1)
    result = serve(SLACK_APP_TOKEN=slack_api.app_token)
    assert result.exit_code == 1
    assert lines(result) == [
        "error: Slack refused SLACK_BOT_TOKEN (account_inactive): the app was uninstalled or its bot deactivated: "
        "reinstall the app, then copy its new token"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_unreachable_slack_is_one_line_and_exit_1(serve, slack_api, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/"
    result = serve(SLACK_API_URL=url, SLACK_APP_TOKEN=slack_api.app_token)
    assert result.exit_code == 1
    [line] = lines(result)
    assert line.startswith(f"error: Slack is unreachable at {url} (")
    assert line.endswith("): check the network and proxy (HTTPS_PROXY) and SLACK_API_URL")
    assert "refused" in line.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_slack_failing_on_its_side_is_not_called_a_bad_token(serve, slack_api, tmp_path):
    slack_api.fail("auth.test", status=503, times=1)
    result = serve(SLACK_APP_TOKEN=slack_api.app_token)
    assert result.exit_code == 1
    [line] = lines(result)
    assert line.startswith(f"error: Slack answered auth.test at {slack_api.url} with HTTP 503")
    assert "refused" not in line


def test_a_refused_app_token_in_socket_mode_is_one_line(serve, slack_api, tmp_path):
    result = serve(SLACK_APP_TOKEN="xapp-1-A000-wrong-app-token")
    assert result.exit_code == 1
    assert lines(result) == [
        "error: Slack refused SLACK_APP_TOKEN (invalid_auth): copy the app-level token (xapp-…) again from Basic "
        "Information → App-Level Tokens"
    ]
    assert [c.method for c in slack_api.calls()] == ["auth.test", "apps.connections.open"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---- Bolt -------------------------------------------------------------------------------------------------


def test_building_the_app_warns_about_no_unused_token(bot_env, slack_api, caplog):
    """SLACK_BOT_TOKEN is in the environment (Bolt reads it too): no "`token` will be unused" at every start."""
    settings = bot_env()
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        app = build_app(settings)
    said = [r.getMessage() for r in caplog.records] + [str(w.message) for w in warned]
    assert not [m for m in said if "token" in m.lower()], said
    assert app.client.base_url == slack_api.url  # Bolt's requests still go to the configured Slack API
    assert slack_api.calls() == []  # the token is checked by `serve`, once, before the store is touched
