"""`dnabot doctor` as a new user runs it: a healthy setup says so; each broken part is one line with its fix."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from bot.cli import commands as cli
from bot.core.doctor_remote import BOT_SCOPES, check_openmetadata
from bot.core.preflight import BOT_TOKEN_FIX, SIGNING_FIX
from bot.core.settings import Settings, get_settings
from storage.persistence import db
from tests.fakes.omserver import PROFILE_VERSIONS

REPO_ROOT = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "signing-secret-0123456789"


@pytest.fixture
def doctor(bot_env, tmp_path, monkeypatch):
    """Run `dnabot doctor [--json]` in-process: a migrated store, the demo simulator, the loopback Slack (HTTP mode,
    incident channel C1), no LLM, no MCP. Returns (exit code, output, checks by name when --json)."""
    bot_env(DNABOT_CHANNEL="C1", SLACK_SIGNING_SECRET=SIGNING_SECRET)
    monkeypatch.delenv("OPENMETADATA_WEBHOOK_SECRET", raising=False)
    db.migrate(f"sqlite:///{tmp_path / 'bot.db'}")
    runner = CliRunner()

    def run(*args: str, **env: str):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        result = runner.invoke(cli.app, ["doctor", *args])
        checks = {c["name"]: c for c in json.loads(result.stdout)} if "--json" in args else {}
        return result.exit_code, result.output, checks

    return run


def statuses(checks: dict) -> dict[str, str]:
    return {name: c["status"] for name, c in checks.items()}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_healthy_setup_is_all_ok_and_exits_0(doctor, fake_llm):
    fake_llm.script([fake_llm.completion("OK")])
    code, _, checks = doctor("--json", OPENAI_BASE_URL=fake_llm.url, OPENAI_API_KEY="sk-test-key-123456")
    assert code == 0
    assert statuses(checks) == {
        "settings": "ok",
        "database": "ok",
        "database schema": "ok",
        "openmetadata": "ok",
        "openmetadata version": "ok",
        "openmetadata token": "ok",
        "openmetadata fields": "ok",
        "openmetadata events": "ok",
        "openmetadata webhook": "skip",
        "slack": "ok",
        "slack scopes": "ok",
        "slack channels": "ok",
        "slack mode": "ok",
        "llm": "ok",
        "mcp": "skip",
    }
    assert checks["openmetadata version"]["detail"].startswith("1.13.6 is supported")
    assert checks["slack"]["detail"] == "signed in as dna-bot (UBOT) in dna-test"
    assert checks["slack channels"]["detail"] == "the bot is in #c1 (C1)"
    assert checks["slack scopes"]["detail"] == f"all {len(BOT_SCOPES)} scopes of manifest.yml granted"
    assert all(c["fix"] is None for c in checks.values() if c["status"] == "ok")
    [asked] = fake_llm.requests
    assert asked["max_tokens"] == 1


def test_the_human_report_is_one_line_per_check_and_a_verdict(doctor):
    code, out, _ = doctor()
    lines = out.strip().splitlines()
    assert code == 0
    assert lines[0].split()[:2] == ["ok", "settings"]
    assert lines[1].split() == ["ok", "database", "sqlite", "at", lines[1].split()[-1]]
    assert any(line.startswith("skip  llm ") for line in lines)
    assert lines[-1] == "12 ok, 3 skip: nothing blocks serving"


@pytest.mark.parametrize("om_version", PROFILE_VERSIONS)
def test_every_supported_version_accepts_the_fields_its_profile_sends(bot_env, om_version):
    checks = asyncio.run(check_openmetadata(bot_env()))
    assert [(c.name, c.status) for c in checks if c.status != "ok"] == [("openmetadata webhook", "skip")]
    assert checks[1].detail.startswith(f"{om_version} is supported")


def test_unreachable_openmetadata_is_one_failure_and_the_rest_not_checked(doctor):
    url = f"http://127.0.0.1:{closed_port()}"
    code, _, checks = doctor("--json", OPENMETADATA_URL=url)
    assert code == 1
    assert checks["openmetadata"]["status"] == "fail"
    assert checks["openmetadata"]["detail"].startswith(f"cannot reach {url}/: ")
    assert checks["openmetadata"]["fix"] == "check OPENMETADATA_URL and that the server is up"
    assert checks["openmetadata token"] == {
        "name": "openmetadata token",
        "status": "skip",
        "detail": "not checked: no server",
        "fix": None,
    }
    assert checks["slack"]["status"] == "ok"  # the other parts are still checked


def test_a_server_that_does_not_answer_is_cut_off_after_its_timeout(doctor, om_demo):
    om_demo.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/system/version$", "delay_seconds": 3})
    code, _, checks = doctor("--json", DNABOT_OM_TIMEOUT_SECONDS="0.5")
    assert code == 1
    assert checks["openmetadata"]["status"] == "fail"
    assert checks["openmetadata"]["detail"].endswith(": ReadTimeout")


def test_a_refused_openmetadata_token_fails_without_showing_it(doctor):
    code, out, _ = doctor(OPENMETADATA_TOKEN="wrong-token-0123456789")
    assert code == 1
    assert "fail  openmetadata token" in out and "rejected the token (401)" in out
    assert "fix: set OPENMETADATA_TOKEN" in out
    assert "wrong-token-0123456789" not in out


def test_a_server_that_is_not_openmetadata_is_told_apart_from_one_that_is_down(doctor, om_demo):
    html = "<!doctype html><html><body>Grafana</body></html>"
    om_demo.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/system/version$", "body": html})
    code, _, checks = doctor("--json")
    assert code == 1
    assert checks["openmetadata"]["detail"] == (
        f"{om_demo.url}/api/v1/system/version answers no OpenMetadata version "
        "(OpenMetadata answered GET /api/v1/system/version with invalid JSON)"
    )
    assert checks["openmetadata"]["fix"].startswith("point OPENMETADATA_URL at the OpenMetadata server")


def test_no_openmetadata_token_when_the_server_wants_one(doctor, monkeypatch):
    monkeypatch.delenv("OPENMETADATA_TOKEN")
    code, _, checks = doctor("--json")
    assert code == 1
    assert checks["openmetadata token"]["detail"] == "OPENMETADATA_TOKEN is not set and the server wants one"


def test_an_unsupported_version_is_named_with_the_supported_range(doctor, om_demo):
    om_demo.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/system/version$", "body": {"version": "1.4.2"}})
    code, _, checks = doctor("--json")
    assert code == 1
    version = checks["openmetadata version"]
    assert version["status"] == "fail"
    assert "OpenMetadata 1.4.2 is not supported: DNA Bot works with OpenMetadata 1.5 to 2.x" in version["detail"]
    assert version["fix"] == "run OpenMetadata 1.5 to 2.x"
    assert checks["openmetadata fields"]["status"] == "skip"


def test_a_field_the_server_refuses_is_named(doctor, om_demo):
    fault = {"path_regex": "^/api/v1/charts$", "status": 400, "message": "Invalid field name dashboards"}
    om_demo.admin("POST", "/admin/faults", fault)
    code, _, checks = doctor("--json")
    assert code == 1
    fields = checks["openmetadata fields"]
    assert fields["status"] == "fail"
    assert fields["detail"].startswith("charts refused fields=owners,tags,followers,dashboards,domains (400: ")
    assert "Invalid field name dashboards" in fields["detail"]


def test_a_server_message_quoting_a_secret_is_masked(doctor, om_demo):
    fault = {"path_regex": "^/api/v1/events$", "status": 403, "message": f"denied for {SIGNING_SECRET}"}
    om_demo.admin("POST", "/admin/faults", fault)
    code, out, _ = doctor()
    assert code == 1
    assert "fail  openmetadata events" in out
    assert SIGNING_SECRET not in out and "denied for ***" in out


def test_the_webhook_subscription_is_looked_for_only_when_a_secret_is_set(doctor, om_demo):
    code, _, checks = doctor("--json", OPENMETADATA_WEBHOOK_SECRET="hook-secret-123456")
    assert code == 0  # optional: a missing subscription is a warning
    assert checks["openmetadata webhook"]["status"] == "warn"
    assert checks["openmetadata webhook"]["detail"] == "no event subscription delivers to /openmetadata/webhook"
    om_demo.subscribe_webhook("https://dna.example.com", "hook-secret-123456")
    _, _, checks = doctor("--json")
    assert checks["openmetadata webhook"] == {
        "name": "openmetadata webhook",
        "status": "ok",
        "detail": "subscription 'dnabot' delivers to https://dna.example.com/openmetadata/webhook",
        "fix": None,
    }


def test_a_missing_scope_is_named_with_how_to_grant_it(doctor, slack_api):
    with slack_api.state.cond:
        slack_api.state.scopes.discard("files:write")
    code, _, checks = doctor("--json")
    assert code == 1
    assert checks["slack scopes"]["status"] == "fail"
    assert checks["slack scopes"]["detail"] == "missing files:write"
    assert "reinstall" in checks["slack scopes"]["fix"]


def test_the_bot_must_be_in_every_routed_channel(doctor, slack_api, tmp_path):
    rules = {"default_channel": "C1", "rules": [{"match": {"service": "warehouse"}, "channel": "C2"}]}
    (tmp_path / "routing.yml").write_text(yaml.safe_dump(rules))
    with slack_api.state.cond:
        slack_api.state.channels["C2"] = {"is_private": False, "members": ["U7"]}
    code, out, _ = doctor(DNABOT_CONFIG=str(tmp_path / "routing.yml"))
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("fail  slack channels"))
    assert "the bot is not in #c2 (C2)" in line and "/invite @DNA Bot" in line


def test_http_mode_without_a_signing_secret_fails_and_socket_mode_needs_a_working_app_token(
    doctor, monkeypatch, slack_api, slack_socket
):
    monkeypatch.delenv("SLACK_SIGNING_SECRET")
    code, _, checks = doctor("--json")
    assert code == 1
    assert checks["slack mode"]["detail"] == "HTTP mode: SLACK_SIGNING_SECRET is not set (HTTP mode needs it)"
    assert checks["slack mode"]["fix"] == SIGNING_FIX  # the words `dnabot serve` stops with
    code, _, checks = doctor("--json", SLACK_APP_TOKEN=slack_api.app_token)
    assert code == 0
    assert checks["slack mode"]["detail"] == "Socket Mode: the app token opens a connection"


def test_no_bot_token_or_a_refused_one(doctor, monkeypatch):
    monkeypatch.delenv("SLACK_BOT_TOKEN")
    code, _, checks = doctor("--json")
    assert code == 1
    assert checks["slack"]["detail"] == "SLACK_BOT_TOKEN is not set"
    assert checks["slack"]["fix"] == f"set SLACK_BOT_TOKEN: {BOT_TOKEN_FIX}"
    assert checks["slack scopes"]["status"] == "skip"
    code, out, _ = doctor(SLACK_BOT_TOKEN="xoxb-revoked-0123456789")
    assert code == 1 and "fail  slack" in out and "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in out
    assert "xoxb-revoked-0123456789" not in out


def test_an_llm_that_is_down_is_a_warning_not_a_blocker(doctor, fake_llm):
    fake_llm.script([{"status": 500}])
    code, _, checks = doctor("--json", OPENAI_BASE_URL=fake_llm.url, OPENAI_API_KEY="sk-test-key-123456")
    assert code == 0
    assert checks["llm"]["status"] == "warn"
    assert checks["llm"]["detail"] == f"model gpt-4o-mini at {fake_llm.url}: LLM HTTP 500"
    assert len(fake_llm.requests) == 1  # no retries: the doctor says at once


def test_no_store_file_is_reported_and_not_created(doctor, tmp_path):
    missing = tmp_path / "nowhere.db"
    code, _, checks = doctor("--json", DATABASE_URL=f"sqlite:///{missing}")
    assert code == 0  # `dnabot serve` migrates at start
    assert checks["database"]["detail"] == f"no store yet at sqlite:///{missing}"
    assert checks["database"]["fix"].startswith("run `dnabot migrate`")
    assert not missing.exists()


def test_a_store_behind_or_ahead_of_the_code(doctor, tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db.migrate(url, "0004")
    code, _, checks = doctor("--json", DATABASE_URL=url)
    head = db.head_revision()
    assert code == 0
    assert checks["database schema"]["status"] == "warn"
    assert checks["database schema"]["detail"] == f"at revision 0004, the code needs {head}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    code, _, checks = doctor("--json")
    assert code == 1
    assert (
        checks["database schema"]["detail"]
        == f"revision 9999_future is newer than this DNA Bot (it knows up to {head})"
    )


def test_each_mcp_server_starts_and_lists_its_allow_listed_tools(doctor, tmp_path):
    fake = {"command": sys.executable, "args": ["-m", "tests.fakes.mcp_stdio_server", "--flavor", "brightdata"]}
    servers = {"web": fake | {"cwd": str(REPO_ROOT)}, "gone": {"command": str(tmp_path / "no-such-server")}}
    (tmp_path / "mcp.json").write_text(json.dumps({"mcpServers": servers}))
    code, _, checks = doctor("--json", DNABOT_MCP_CONFIG=str(tmp_path / "mcp.json"))
    assert code == 0
    assert checks["mcp web"] == {
        "name": "mcp web",
        "status": "ok",
        "detail": "up, allow-listed tools: scrape_as_markdown, search_engine",  # not scrape_batch
        "fix": None,
    }
    assert checks["mcp gone"]["status"] == "warn"


def test_the_real_tavily_server_a_key_starts_is_up_with_its_tools(doctor):
    """With TAVILY_API_KEY the bot runs the installed tavily-mcp (`make mcp`; never skipped: a missing install
    shows in the detail); it lists its tools without calling Tavily."""
    code, _, checks = doctor("--json", TAVILY_API_KEY="tvly-doctor-0123456789")
    assert code == 0
    assert checks["mcp tavily"]["detail"] == "up, allow-listed tools: tavily_extract, tavily_search"


def test_the_scopes_checked_are_the_manifests():
    manifest = yaml.safe_load((REPO_ROOT / "manifest.yml").read_text())
    assert sorted(BOT_SCOPES) == sorted(manifest["oauth_config"]["scopes"]["bot"])


def test_settings_alone_say_what_is_missing(tmp_path, monkeypatch):
    """A fresh clone with nothing set: every blocker named, nothing created, no traceback."""
    monkeypatch.chdir(tmp_path)
    for var in ("DATABASE_URL", "OPENMETADATA_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    checks = asyncio.run(check_openmetadata(Settings(_env_file=None)))
    assert checks[0].detail == "OPENMETADATA_URL is not set"
    get_settings.cache_clear()
    result = CliRunner().invoke(cli.app, ["doctor"])
    get_settings.cache_clear()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "fail  openmetadata          OPENMETADATA_URL is not set" in result.output
    assert not (tmp_path / "dnabot.db").exists()


def test_a_setting_out_of_range_is_named_without_its_value(doctor):
    code, out, _ = doctor(DNABOT_OM_CONCURRENCY="0", DNABOT_LOG_FORMAT="xml-secret-ish")
    assert code == 1 and "Traceback" not in out
    assert out.splitlines()[0] == (
        "fail  settings  DNABOT_OM_CONCURRENCY: Input should be greater than or equal to 1; "
        "DNABOT_LOG_FORMAT: String should match pattern '^(text|json)$' → fix: correct these in the environment "
        "or .env (see the README's Settings)"
    )
    assert "xml-secret-ish" not in out


def test_the_store_checks_on_sqlite_and_postgresql(db_url):
    from bot.core.doctor import check_database

    checks = check_database(Settings(_env_file=None, DATABASE_URL=db_url))
    assert [(c.name, c.status) for c in checks] == [("database", "ok"), ("database schema", "ok")]
    assert checks[1].detail == f"at the newest revision {db.head_revision()}"


def test_an_unreachable_postgresql_is_named_with_its_password_masked(doctor):
    url = f"postgresql://dnabot:pg-password-0123@127.0.0.1:{closed_port()}/dnabot"
    code, out, checks = doctor("--json", DATABASE_URL=url)
    assert code == 1
    detail = checks["database"]["detail"]
    assert detail.startswith(f"cannot reach postgresql+psycopg://dnabot:***@127.0.0.1:{url.rsplit(':', 1)[1]}: ")
    assert "pg-password-0123" not in out
    assert checks["database schema"]["status"] == "skip"


def test_a_check_that_breaks_is_one_line_not_a_traceback(doctor, monkeypatch):
    from bot.core import doctor_remote

    def broken(settings):
        raise RuntimeError("the Slack SDK changed under us")

    monkeypatch.setattr(doctor_remote, "check_slack", broken)
    code, out, _ = doctor()
    assert code == 1 and "Traceback" not in out
    assert "fail  slack" in out and "the check failed: the Slack SDK changed under us" in out


def test_settings_serve_would_refuse_fail_in_serves_own_words(doctor, tmp_path):
    routing = tmp_path / "routing.yml"
    routing.write_text("rules: [not a mapping]\n", encoding="utf-8")
    code, _, checks = doctor("--json", DNABOT_CONFIG=str(routing), DNABOT_LOG_LEVEL="LOUD")
    assert code == 1
    assert checks["settings DNABOT_LOG_LEVEL"]["status"] == "fail"
    assert checks["settings DNABOT_LOG_LEVEL"]["detail"] == "is 'LOUD', not a level"
    assert checks["settings DNABOT_CONFIG"]["status"] == "fail"
    assert "settings" not in checks
