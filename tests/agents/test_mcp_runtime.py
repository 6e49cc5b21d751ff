"""The process's MCP sessions: one server process for every question and sync, budgets, health, env and stderr."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from agents import mcp_runtime
from agents.config import AgentConfig
from agents.mcp import MCPToolbox
from agents.mcp_config import MCPOptions, load_servers
from agents.pipeline import PipelineResult
from bot.core.logs import configure_logging
from bot.core.settings import Settings, agent_config, mcp_options
from tests.e2e.replicas import wait_until
from tests.fakes.mcp_servers import REPO_ROOT, read_events, stdio_spec

CONFIG = AgentConfig(mcp_call_timeout_seconds=5.0)
OPTIONS = MCPOptions(start_timeout_seconds=10.0)
KEY = "tvly-runtime-key-3f9a1c"
PROXY_PASSWORD = "proxy-pass-77e1b0"


@pytest.fixture(autouse=True)
def fresh_hub() -> Iterator[None]:
    """Each test starts without shared sessions and stops the ones it made."""
    mcp_runtime.close()
    yield
    mcp_runtime.close()


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "mcp-events.jsonl"


def fake_server_pids() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if "tests.fakes" in " ".join(p.cmdline())}


def test_every_question_and_sync_reuses_one_server_process_across_event_loops(record: Path) -> None:
    spec = stdio_spec("tavily", "tavily", record)
    answers = []
    for per in ("question", "sync", "question"):  # each caller runs its own asyncio.run, as listeners and ticks do
        handle = mcp_runtime.shared([spec], CONFIG, OPTIONS, budget_seconds=5.0, per=per)
        answers.append(asyncio.run(handle.call("tavily_search", {"query": "status"})))
        answers.append(asyncio.run(handle.search("status")))

    assert all(a.ok for a in answers[0::2]) and all(len(hits) == 2 for hits in answers[1::2])
    assert len(read_events(record, "start")) == 1  # one process served all three callers
    assert len(read_events(record, "call")) == 6
    health = mcp_runtime.health()
    assert list(health) == ["tavily"] and health["tavily"]["state"] == "up"
    assert health["tavily"]["restarts"] == 0 and health["tavily"]["tools"] == 2

    mcp_runtime.close()
    assert mcp_runtime.health() == {}
    wait_until(lambda: not fake_server_pids())


def test_a_new_configuration_replaces_the_shared_servers_and_stops_the_old_ones(record: Path) -> None:
    first = mcp_runtime.shared([stdio_spec("tavily", "tavily", record)], CONFIG, OPTIONS)
    assert asyncio.run(first.call("tavily_search", {"query": "a"})).ok
    [old_pid] = wait_until(fake_server_pids)

    second = mcp_runtime.shared([stdio_spec("brightdata", "brightdata", record)], CONFIG, OPTIONS)
    assert asyncio.run(second.call("search_engine", {"query": "a"})).ok
    assert old_pid not in fake_server_pids() and list(mcp_runtime.health()) == ["brightdata"]
    stale = asyncio.run(first.call("tavily_search", {"query": "a"}))
    assert not stale.ok and "closed" in (stale.error or "")


def test_a_question_waits_on_outside_context_no_longer_than_its_budget(record: Path) -> None:
    handle = mcp_runtime.shared([stdio_spec("slow", "hang", record)], CONFIG, OPTIONS, budget_seconds=1.0)
    wait_until(lambda: mcp_runtime.health().get("slow", {}).get("state") == "up")

    async def question() -> tuple[Any, ...]:
        started = time.monotonic()
        hung = await handle.call("tavily_search", {"query": "status"})
        cut = time.monotonic() - started
        hits = await handle.search("status")
        return hung, cut, hits, time.monotonic() - started

    hung, cut, hits, total = asyncio.run(question())
    assert not hung.ok and hung.error == "outside-context budget of 1s per call spent"
    assert 0.95 <= cut < 1.5 and total < 1.6  # the second ask returns at once
    assert hits == [] and handle.last_degraded == "outside-context budget of 1s per call spent"
    assert 0.95 <= handle.spent_seconds < 1.6
    assert mcp_runtime.health()["slow"]["state"] == "up"  # a slow upstream is not a dead server


def test_a_one_shot_question_waits_for_the_first_start_apart_from_its_budget(record: Path) -> None:
    """`dnabot why` in a fresh process: the servers start (about a second for this one), then the budget runs."""
    handle = mcp_runtime.shared([stdio_spec("tavily", "tavily", record)], CONFIG, OPTIONS, budget_seconds=0.5)
    found = asyncio.run(handle.call("tavily_search", {"query": "status"}))
    assert found.ok and handle.spent_seconds < 0.5


def test_a_call_in_flight_when_the_sessions_close_fails_instead_of_waiting_forever(record: Path) -> None:
    handle = mcp_runtime.shared([stdio_spec("slow", "hang", record)], CONFIG, OPTIONS)  # no budget at all
    wait_until(lambda: mcp_runtime.health().get("slow", {}).get("state") == "up")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(asyncio.run, handle.call("tavily_search", {"query": "status"}))
        wait_until(lambda: read_events(record, "call"))
        mcp_runtime.close()  # a configuration change, or the process exiting
        hung = pending.result(timeout=15)
    assert not hung.ok and hung.error
    wait_until(lambda: not fake_server_pids())


def test_the_servers_get_the_proxy_the_ca_bundle_and_what_the_config_names(tmp_path: Path, record: Path) -> None:
    config_file = tmp_path / "mcp.json"
    args = ["-m", "tests.fakes.mcp_stdio_server", "--flavor", "noisy", "--record", str(record)]
    server = {"command": sys.executable, "args": args, "cwd": str(REPO_ROOT), "env": {"TAVILY_API_KEY": "${MY_KEY}"}}
    config_file.write_text(json.dumps({"mcpServers": {"web": server}}))
    settings = Settings(
        _env_file=None,
        https_proxy=f"http://bot:{PROXY_PASSWORD}@proxy.internal:3128",
        no_proxy="localhost,.internal",
        node_extra_ca_certs="/etc/ssl/corp-ca.pem",
        ssl_cert_file="/etc/ssl/corp-bundle.pem",
        mcp_pass_env="EXTRA",
        mcp_config=str(config_file),
    )
    env = {"MY_KEY": KEY, "EXTRA": "passed on", "UNRELATED": "not passed"}
    options = mcp_options(settings, env=env)
    [spec] = load_servers(agent_config(settings), env, options)

    async def scenario() -> Any:
        async with MCPToolbox([spec], allowed_tools=CONFIG.mcp_allowed_tools, extra_env=options.env) as tb:
            return await tb.call("tavily_search", {"query": "status"})

    assert asyncio.run(scenario()).ok
    [seen] = [e["env"] for e in read_events(record, "env")]
    assert seen == {
        "HTTPS_PROXY": f"http://bot:{PROXY_PASSWORD}@proxy.internal:3128",
        "HTTP_PROXY": None,
        "NO_PROXY": "localhost,.internal",
        "NODE_EXTRA_CA_CERTS": "/etc/ssl/corp-ca.pem",
        "SSL_CERT_FILE": "/etc/ssl/corp-bundle.pem",
        "TAVILY_API_KEY": KEY,
        "EXTRA": "passed on",
    }


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """DNA Bot's JSON logging (as `dnabot serve` configures it) with the Tavily key as a secret; restored after."""
    root = logging.getLogger()
    saved, factory = (root.level, list(root.handlers)), logging.getLogRecordFactory()
    monkeypatch.setenv("TAVILY_API_KEY", KEY)
    monkeypatch.setenv("DNABOT_LOG_FORMAT", "json")
    stream = io.StringIO()
    configure_logging(Settings(_env_file=None), stream=stream)
    yield stream
    for handler in [h for h in root.handlers if h not in saved[1]]:
        root.removeHandler(handler)
    root.setLevel(saved[0])
    logging.setLogRecordFactory(factory)


def test_a_servers_stderr_reaches_our_json_logs_whole_and_masked(json_logs: io.StringIO, record: Path) -> None:
    spec = replace(stdio_spec("noisy", "noisy", record), env={"TAVILY_API_KEY": KEY})
    proxy = {"HTTPS_PROXY": f"http://bot:{PROXY_PASSWORD}@127.0.0.1:9"}

    async def scenario() -> None:
        async with MCPToolbox([spec], allowed_tools=CONFIG.mcp_allowed_tools, extra_env=proxy):
            pass

    asyncio.run(scenario())

    def stderr_records() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in json_logs.getvalue().splitlines() if line.strip()]
        return [line for line in lines if line["logger"] == "agents.mcp.stderr"]

    [entry] = wait_until(stderr_records)
    assert entry["level"] == "WARNING" and entry["mcp_server"] == "noisy"
    assert entry["message"].startswith("MCP server noisy: [noisy] starting with key *** through http://bot:***@")
    assert "Error: upstream refused the key ***\n    at TavilyClient.search" in entry["message"]  # one record
    assert KEY not in json_logs.getvalue() and PROXY_PASSWORD not in json_logs.getvalue()


def test_the_pipeline_reports_its_time_and_the_part_spent_on_outside_context() -> None:
    reported = PipelineResult(7, pipeline_seconds=1.25, outside_context_seconds=0.5).to_dict()
    assert (reported["pipeline_seconds"], reported["outside_context_seconds"]) == (1.25, 0.5)


def test_many_first_questions_at_once_start_each_server_once(record: Path) -> None:
    """40 mentions in a fresh process: every listener thread asks for the toolbox at the same moment."""
    specs = [stdio_spec("tavily", "tavily", record), stdio_spec("brightdata", "brightdata", record)]
    callers = 32
    barrier = threading.Barrier(callers)

    def first_question(_: int) -> bool:
        barrier.wait(10)
        handle = mcp_runtime.shared(specs, CONFIG, OPTIONS, budget_seconds=10.0, per="question")
        return asyncio.run(handle.call("tavily_search", {"query": "status"})).ok

    with concurrent.futures.ThreadPoolExecutor(callers) as pool:
        answers = list(pool.map(first_question, range(callers)))

    assert all(answers)
    starts = read_events(record, "start")
    assert sorted(e["flavor"] for e in starts) == ["brightdata", "tavily"], starts
    assert len(wait_until(fake_server_pids)) == 2 and len(read_events(record, "call")) == callers
