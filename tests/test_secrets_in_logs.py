"""Secrets never leak: one full run with every secret set to a distinctive value, then every trace is searched.

The run: two scheduled ticks (sync, incident pipeline with the LLM and three MCP servers, one of which crashes,
the incident threads posted to Slack), signed `/dna` commands and a mention over HTTP, an OpenMetadata webhook,
a write-back that OpenMetadata refuses, a Slack 500, a sync with the wrong OpenMetadata token (401), LLM 500s.
Searched afterwards: every log record (message, arguments, extras, exception text) at DEBUG, the process's
stdout and stderr (DNA Bot's own log handler included), every Slack API call and response_url post the fake
received (its Authorization header excepted: that is where the bot token belongs), every request the fake LLM
received (its Authorization header excepted), what the MCP servers were asked, and every row of the store.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, select

from bot.blocks import incident_value
from bot.core import services
from bot.core.actions import ActionId
from bot.core.logs import configure_logging
from bot.core.settings import get_settings
from bot.delivery import writeback
from bot.runtime import serve as runtime
from bot.runtime.http import create_http_app
from bot.slack.app import build_client
from simulator import Catalog, run_in_thread
from storage.openmetadata.fqn import url_segment
from storage.persistence.db import make_engine
from tests.fakes.mcp_servers import REPO_ROOT, read_events
from tests.fakes.omserver import start_server
from tests.fakes.slack_signing import app_mention_event, block_action, signed_headers, slash_command

CHANNEL = "C0INCIDENTS"
ADMIN = "UADMIN"
STG_ORDERS = "warehouse.shop.staging.stg_orders"
STG_CUSTOMERS = "warehouse.shop.staging.stg_customers"

# Distinctive values nobody would write by accident; none contains another.
SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-4242-leakcheck-bot-Q7kP2m",
    "SLACK_SIGNING_SECRET": "leakcheck-signing-9f8e7d6c5b4a",
    "SLACK_APP_TOKEN": "xapp-1-leakcheck-app-Z3rW8n",
    "OPENMETADATA_TOKEN": "eyJleakcheck.om-token.Hs5Vb2",
    "OPENAI_API_KEY": "sk-leakcheck-llm-Jd81Lq0x",
    "TAVILY_API_KEY": "tvly-leakcheck-Pm4Nc7Rt",
    "BRIGHTDATA_API_TOKEN": "bd-leakcheck-Wy6Ux9Ke",
    "OPENMETADATA_WEBHOOK_SECRET": "whsec-leakcheck-Gh2Ja5Qs",
}
WRONG_OM_TOKEN = "eyJleakcheck.wrong-token.Ty3Mz8"  # a mistyped token is a secret too
SEARCHED = {**SECRETS, "OPENMETADATA_TOKEN (wrong)": WRONG_OM_TOKEN}
FIRST_PARTY = ("bot", "storage", "agents", "dnabot", "tests")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class Capture(logging.Handler):
    """Keeps each record as text at emit time: the formatted message, exception and stack, plus its extras."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception as exc:  # a broken record must not hide the others
            text = f"{record.name} <unformattable: {exc!r}> {record.msg!r} {record.args!r}"
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        self.lines.append(f"{text} {extras!r}" if extras else text)


class RawRecords:
    """A log record factory that keeps each record's text as it is made, before DNA Bot's redacting factory
    (installed later by `configure_logging`, on top of this one) masks anything: what the code itself logs."""

    def __init__(self, base: Callable[..., logging.LogRecord]) -> None:
        self.base = base
        self.texts: list[tuple[str, str]] = []  # (logger name, message + exception + extras)

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.base(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception as exc:
            text = f"<unformattable: {exc!r}> {record.msg!r} {record.args!r}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.texts.append((record.name, text))
        return record


class AllLogs:
    """Every logger at DEBUG into one `Capture`, including those that do not propagate; undone by `close()`."""

    def __init__(self) -> None:
        self.raw = RawRecords(logging.getLogRecordFactory())
        logging.setLogRecordFactory(self.raw)
        self.capture = Capture()
        self._levels: dict[logging.Logger, int] = {}
        self._direct: set[logging.Logger] = set()
        self._root_level = logging.root.level
        self._disabled = logging.root.manager.disable
        logging.disable(logging.NOTSET)
        logging.root.addHandler(self.capture)
        self.widen()

    def widen(self) -> None:
        """Open up loggers made since the last call (uvicorn configures its own when a server starts)."""
        logging.root.setLevel(logging.DEBUG)
        for logger in list(logging.root.manager.loggerDict.values()):
            if not isinstance(logger, logging.Logger):
                continue
            if logger.level > logging.DEBUG:
                self._levels.setdefault(logger, logger.level)
                logger.setLevel(logging.DEBUG)
            if not logger.propagate and logger not in self._direct:
                logger.addHandler(self.capture)
                self._direct.add(logger)

    def close(self) -> None:
        logging.root.removeHandler(self.capture)
        for logger in self._direct:
            logger.removeHandler(self.capture)
        for logger, level in self._levels.items():
            logger.setLevel(level)
        logging.root.setLevel(self._root_level)
        logging.disable(self._disabled)


@pytest.fixture
def all_logs() -> Iterator[AllLogs]:
    factory = logging.getLogRecordFactory()
    dnabot_handlers = list(logging.root.handlers)
    logs = AllLogs()
    try:
        yield logs
    finally:
        logs.close()
        logging.setLogRecordFactory(factory)  # configure_logging installs a redacting factory: undo it
        for handler in [h for h in logging.root.handlers if h not in dnabot_handlers]:
            logging.root.removeHandler(handler)


@pytest.fixture
def om_secret() -> Iterator[Any]:
    """The demo simulator behind its own distinctive token."""
    server = start_server(Catalog.demo(), token=SECRETS["OPENMETADATA_TOKEN"])
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def slack_secret(slack_api) -> Iterator[Any]:
    """The loopback Slack accepting only the distinctive bot and app tokens (the usual ones come back after)."""
    state = slack_api.state
    old = (state.token, state.app_token)
    state.token, state.app_token = SECRETS["SLACK_BOT_TOKEN"], SECRETS["SLACK_APP_TOKEN"]
    try:
        yield slack_api
    finally:
        state.token, state.app_token = old


def mcp_config(path: Path, brightdata_url: str, record: Path) -> Path:
    """A crashing server first (so its `tavily_search` is tried and dies), then Tavily over stdio with its key in
    the environment, then BrightData over HTTP with its token in the URL and in a header, as hosted MCPs take it."""

    def stdio(flavor: str, env: dict[str, str]) -> dict[str, Any]:
        args = ["-m", "tests.fakes.mcp_stdio_server", "--flavor", flavor, "--record", str(record)]
        return {"command": sys.executable, "args": args, "cwd": str(REPO_ROOT), "env": env}

    servers = {
        "crashy": stdio("crash", {"API_TOKEN": "${BRIGHTDATA_API_TOKEN}"}),
        "tavily": stdio("tavily", {"TAVILY_API_KEY": "${TAVILY_API_KEY}"}),
        "brightdata": {
            "url": brightdata_url + "?token=${BRIGHTDATA_API_TOKEN}",
            "headers": {"Authorization": "Bearer ${BRIGHTDATA_API_TOKEN}"},
        },
    }
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def om_change_event(fqn: str) -> bytes:
    event = {
        "id": str(uuid.uuid4()),
        "eventType": "entityUpdated",
        "entityType": "table",
        "entityFullyQualifiedName": fqn,
        "timestamp": int(time.time() * 1000),
        "userName": "admin",
    }
    return json.dumps(event).encode()


def leaks_in(where: str, texts: list[str]) -> list[str]:
    """`where: SECRET_NAME in «…context…»` for every secret found in any of `texts`."""
    found = []
    for text in texts:
        for name, value in SEARCHED.items():
            at = text.find(value)
            if at >= 0:
                context = text[max(0, at - 120) : at + len(value) + 60].replace("\n", "\\n")
                found.append(f"{where}: {name} in «{context}»")
    return found


def write_back_noted(settings: Any, incident_id: int) -> Any:
    """The incident's detail once it carries the note that OpenMetadata could not be updated, else None."""
    detail = services.incident_detail(settings, incident_id)
    notes = [e.note or "" for e in detail.events if e.kind == "note"]
    return detail if any("Could not update OpenMetadata" in n for n in notes) else None


def store_rows(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return [
                f"{table.name} {tuple(row)!r}" for table in meta.tables.values() for row in conn.execute(select(table))
            ]
    finally:
        engine.dispose()


def test_no_secret_reaches_a_log_slack_an_llm_prompt_or_the_store(
    all_logs, capfd, om_secret, slack_secret, fake_llm, mcp_http_server, tmp_path, monkeypatch
):
    slack, om = slack_secret, om_secret
    record = tmp_path / "mcp-calls.jsonl"
    config = mcp_config(tmp_path / "mcp.json", mcp_http_server("brightdata", record), record)
    env = {
        **SECRETS,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'leak.db'}",
        "OPENMETADATA_URL": om.url,
        "SLACK_API_URL": slack.url,
        "OPENAI_BASE_URL": fake_llm.url,
        "DNABOT_MCP_CONFIG": str(config),
        "DNABOT_MCP_TIMEOUT_SECONDS": "5",
        "DNABOT_LLM_TIMEOUT_SECONDS": "5",
        "DNABOT_OM_MAX_RETRIES": "1",
        "DNABOT_CHANNEL": CHANNEL,
        "DNABOT_ADMINS": ADMIN,
        "DNABOT_LOG_LEVEL": "DEBUG",
        "DNABOT_LOG_FORMAT": "json",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    settings = get_settings()
    configure_logging(settings)  # as `dnabot serve` starts: DNA Bot's own stderr handler, at DEBUG
    all_logs.widen()

    # 1. two scheduled ticks: the first sync opens the test incident; a rename opens a breaking one.
    #    The LLM answers nothing but 500s; the crashing MCP server dies on its first search.
    fake_llm.script([])
    notifier = runtime.notifier_for(settings, build_client(settings))
    first = runtime.tick(settings, notifier)
    assert first.sync and first.sync["status"] == "succeeded", first
    om.admin("POST", f"/admin/tables/{url_segment(STG_ORDERS)}/columns/status/rename", {"newName": "order_state"})
    second = runtime.tick(settings, notifier)
    assert second.sync and second.sync["status"] == "succeeded", second
    assert len(slack.parents(CHANNEL)) >= 2  # both incidents have their thread
    assert any(e["event"] == "call" for e in read_events(record))  # the MCP servers were asked

    # 2. Slack over signed HTTP: commands, a why with a tool call, a mention, a webhook, a refused write-back
    handle = run_in_thread(create_http_app(settings))
    all_logs.widen()
    http = httpx.Client(trust_env=False, timeout=30)
    try:

        def post(body: tuple[str, str]) -> httpx.Response:
            text, content_type = body
            headers = signed_headers(text, content_type, SECRETS["SLACK_SIGNING_SECRET"])
            return http.post(f"{handle.url}/slack/events", content=text.encode(), headers=headers)

        def ask(text: str, user: str = "U2") -> list[dict[str, Any]]:
            rid = f"leak-{uuid.uuid4().hex[:8]}"
            assert post(slash_command(text, user=user, response_url=slack.response_url(rid))).status_code == 200
            return slack.wait_for(lambda: slack.responses(rid), 60)

        fake_llm.script(
            [
                fake_llm.tool_completion(fake_llm.tool_call("tavily_search", {"query": "stg_orders status renamed"})),
                fake_llm.completion(f"`{STG_ORDERS}` broke because `status` was renamed to `order_state`."),
            ]
        )
        for text in ("help", "show stg_orders", "why stg_orders", "status", "blast stg_orders status", "nonsense"):
            ask(text)
        ask("sync", user=ADMIN)

        ts = slack.user_message("C1", "<@UBOT> why did stg_orders break?")
        assert post(app_mention_event("<@UBOT> why did stg_orders break?", ts=ts)).status_code == 200
        slack.wait_for(lambda: [m for m in slack.thread("C1", ts) if m.get("edited")], 60)

        body = om_change_event(STG_ORDERS)
        good = base64.b64encode(
            hmac.new(SECRETS["OPENMETADATA_WEBHOOK_SECRET"].encode(), body, hashlib.sha256).digest()
        )
        for sig in ("sha256=" + good.decode(), "sha256=bm90LXRoZS1zaWduYXR1cmU="):
            http.post(f"{handle.url}/openmetadata/webhook", content=body, headers={"x-om-signature": sig})

        # the test incident's card: Acknowledge it while OpenMetadata refuses the write-back and Slack fails once
        test_incident = next(i for i in services.incidents_list(settings, "open") if i.root_fqn == STG_CUSTOMERS)
        card = next(m for m in slack.parents(CHANNEL) if str(test_incident.id) in json.dumps(m.get("metadata")))
        # OpenMetadata has it Assigned, so ours starts acknowledged: reopen it (nothing is written back for that)
        test_incident = writeback.set_incident_status(settings, test_incident.id, "open", actor=ADMIN)
        # the write-back reads OpenMetadata's current state first: that read fails
        om.admin("POST", "/admin/faults", {"path_regex": "/testCases/name/", "method": "GET", "status": 500})
        slack.fail("chat.update", status=500, times=1)
        click = block_action(
            ActionId.ACK,
            incident_value(test_incident),
            user=ADMIN,
            channel=CHANNEL,
            message_ts=card["ts"],
            response_url=slack.response_url("ack"),
        )
        assert post(click).status_code == 200
        slack.wait_for(lambda: slack.calls("chat.update"), 30)
        detail = slack.wait_for(lambda: write_back_noted(settings, test_incident.id), 30)
        assert detail.incident.status == "acknowledged"
        om.admin("DELETE", "/admin/faults")
    finally:
        http.close()
        handle.stop()

    # 3. a sync with a mistyped OpenMetadata token: 401, the run fails and says which setting to check
    monkeypatch.setenv("OPENMETADATA_TOKEN", WRONG_OM_TOKEN)
    get_settings.cache_clear()
    wrong = get_settings()
    refused = runtime.tick(wrong, runtime.notifier_for(wrong, build_client(wrong)))
    assert refused.errors and "OPENMETADATA_TOKEN" in refused.errors[0]
    asyncio.run(services.sync(wrong))  # and once more as `dnabot sync` runs it
    get_settings.cache_clear()

    # the secrets were really in use, where they belong: the search below would find them
    assert fake_llm.requests and SECRETS["OPENAI_API_KEY"] in fake_llm.headers[0]["authorization"]
    assert all(SECRETS["SLACK_BOT_TOKEN"] in c.headers.get("authorization", "") for c in slack.calls())
    assert any(e["event"] == "start" and e["flavor"] == "crash" for e in read_events(record))
    out, err = capfd.readouterr()
    assert '"logger": "storage.sync.run"' in err  # DNA Bot's own handler wrote its JSON lines to stderr
    sys.stdout.write(out[-2000:])  # keep a tail visible when the test fails
    leaks = leaks_in("log record", all_logs.capture.lines)
    # Before masking, only libraries may log a secret (a token in a configured URL); DNA Bot's own code never.
    ours = [text for name, text in all_logs.raw.texts if name.split(".")[0] in FIRST_PARTY]
    leaks += leaks_in("log record as DNA Bot's code made it (before masking)", ours)
    leaks += leaks_in("stderr", [err]) + leaks_in("stdout", [out])
    for call in slack.calls():
        headers = {k: v for k, v in call.headers.items() if k != "authorization"}
        leaks += leaks_in(f"Slack {call.method} args", [json.dumps(call.args, default=str)])
        leaks += leaks_in(f"Slack {call.method} headers", [json.dumps(headers)])
    with slack.state.cond:
        answered = json.dumps(slack.state.responses, default=str) + json.dumps(slack.state.messages, default=str)
        files = [f.get("content") or b"" for f in slack.state.files]
    leaks += leaks_in("Slack response_url / messages", [answered])
    leaks += [f"Slack file upload: {n}" for f in files for n, v in SEARCHED.items() if v.encode() in f]
    leaks += leaks_in("LLM request body", [json.dumps(r) for r in fake_llm.requests])
    for headers in fake_llm.headers:
        leaks += leaks_in(
            "LLM request headers", [json.dumps({k: v for k, v in headers.items() if k != "authorization"})]
        )
    leaks += leaks_in("MCP tool call", [json.dumps(e) for e in read_events(record, "call")])
    leaks += leaks_in("store row", store_rows(env["DATABASE_URL"]))
    assert not leaks, "secrets leaked:\n" + "\n".join(dict.fromkeys(leaks))
