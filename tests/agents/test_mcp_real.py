"""The real servers users run (`tavily-mcp` 0.2.22, `@brightdata/mcp` 2.11.3, from agents/mcp_servers' lockfile),
launched with `node` exactly as the bot launches them, against loopback Tavily and BrightData APIs.

The servers hard-code their API hosts, so the fake APIs sit behind a CONNECT proxy with a throwaway CA, and the
only way the servers find them is the proxy and CA settings the bot passes on (tests/fakes/mcp_upstreams.py).
CI installs the servers (`make mcp`); when they are missing these tests fail and say so, they are never skipped.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agents import mcp_runtime, why
from agents.llm import LLMClient, LLMConfig
from agents.mcp import MCPToolbox
from agents.mcp_config import SERVERS_DIR, MCPConfigError, ServerSpec, installed_bin, load_servers
from bot.core import services
from bot.core.settings import Settings, agent_config, mcp_options
from tests.agents.test_pipeline import rename
from tests.agents.test_why import FINAL, MART, MemoryTools
from tests.e2e.replicas import wait_until
from tests.fakes.mcp_servers import PAGES
from tests.fakes.mcp_upstreams import BRIGHTDATA_HOST, BRIGHTDATA_TOKEN, TAVILY_HOST, TAVILY_KEY, FakeAPIs
from tests.fakes.mcp_upstreams import fake_apis as fake_apis  # a fixture
from tests.fakes.omserver import PROFILE_VERSIONS

RELEASE_NOTES, FORUM = PAGES[0]["url"], PAGES[1]["url"]
QUESTION = f"why did {MART} break?"


@pytest.fixture
def om_version() -> str:
    """One OpenMetadata release is enough here: these tests are about the MCP servers."""
    return PROFILE_VERSIONS[-1]


@pytest.fixture(autouse=True)
def no_shared_sessions() -> Iterator[None]:
    mcp_runtime.close()
    yield
    mcp_runtime.close()


def require_installed() -> None:
    """The servers must be installed (CI runs `make mcp`): a missing one fails the test with how to install it."""
    problems = [] if shutil.which("node") else ["node is not on PATH: apt-get install -y nodejs npm, then run make mcp"]
    for package in ("tavily-mcp", "@brightdata/mcp"):
        try:
            installed_bin(SERVERS_DIR, package)
        except MCPConfigError as exc:
            problems.append(str(exc))
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def settings_for(apis: FakeAPIs, **over: Any) -> Settings:
    """The bot's settings with both keys and the proxy/CA an operator behind a proxy would set (every test starts
    here, so a server that is not installed fails it, never skips it)."""
    require_installed()
    values: dict[str, Any] = {
        "tavily_api_key": TAVILY_KEY,
        "brightdata_api_token": BRIGHTDATA_TOKEN,
        "https_proxy": apis.proxy.url,
        "node_extra_ca_certs": str(apis.ca_file),
        "mcp_timeout_seconds": 10.0,
        "mcp_start_timeout_seconds": 30.0,
    }
    return Settings(_env_file=None, **(values | over))


def real_toolbox(settings: Settings, **kwargs: Any) -> MCPToolbox:
    return MCPToolbox.from_config(agent_config(settings), {}, mcp_options(settings, env={}), **kwargs)


def node_servers() -> dict[str, int]:
    """The running Node MCP servers started by this process: package → pid."""
    found = {}
    for proc in psutil.Process().children(recursive=True):
        command = " ".join(proc.cmdline())
        for package in ("tavily-mcp", "@brightdata/mcp"):
            if "node" in command and package in command:
                found[package] = proc.pid
    return found


def settled(*names: str) -> bool:
    health = mcp_runtime.health()
    return all(health.get(name, {}).get("state") in ("up", "down") for name in names)


def ask(fake_llm: Any, config: Any, handle: Any) -> why.WhyAnswer:
    """One why-question on its own event loop (as a Slack listener asks it), the loopback LLM answering."""
    llm = LLMClient(LLMConfig(fake_llm.url, "sk-test", "fake-model", timeout_seconds=5.0, max_retries=0))
    return asyncio.run(why.answer(QUESTION, tools=MemoryTools(), llm=llm, mcp=handle, config=config))


def web_then_answer(fake_llm: Any, final: str) -> list[dict[str, Any]]:
    """The model asks Tavily, then BrightData, then answers `final`."""
    return [
        fake_llm.tool_completion(fake_llm.tool_call("tavily_search", {"query": "snowflake connector STATUS renamed"})),
        fake_llm.tool_completion(fake_llm.tool_call("search_engine", {"query": "snowflake STATUS"}, "call_2")),
        fake_llm.completion(final),
    ]


# --------------------------------------------------------------------------------------------- they start


def test_the_installed_servers_start_with_node_and_answer_through_the_proxy_and_our_ca(fake_apis, caplog) -> None:
    caplog.set_level(logging.INFO, logger="agents.mcp.stderr")
    fake_apis.state.zones = []  # a fresh BrightData account: the server creates its zones at start-up
    settings = settings_for(fake_apis)
    specs = load_servers(agent_config(settings), {}, mcp_options(settings, env={}))

    async def scenario() -> tuple[Any, ...]:
        async with real_toolbox(settings) as tb:
            tools = {t["name"]: t["server"] for t in await tb.list_tools()}
            hits = await tb.search("snowflake connector STATUS renamed")
            serp = await tb.call("search_engine", {"query": "snowflake STATUS"})
            page = await tb.call("scrape_as_markdown", {"url": RELEASE_NOTES})
            return tools, hits, serp, page, tb.health()

    tools, hits, serp, page, health = asyncio.run(scenario())

    assert [(s.command, Path(s.args[0]).relative_to(SERVERS_DIR).as_posix()) for s in specs] == [
        ("node", "node_modules/tavily-mcp/build/index.js"),
        ("node", "node_modules/@brightdata/mcp/server.js"),
    ]
    assert tools == {
        "tavily_search": "tavily",
        "tavily_extract": "tavily",
        "search_engine": "brightdata",
        "scrape_as_markdown": "brightdata",
    }
    assert [(h.url, h.source_tool) for h in hits] == [(RELEASE_NOTES, "tavily_search"), (FORUM, "tavily_search")]
    assert serp.ok and serp.urls == (RELEASE_NOTES, FORUM) and page.ok and RELEASE_NOTES in page.urls
    assert {name: h["state"] for name, h in health.items()} == {"tavily": "up", "brightdata": "up"}

    [search] = fake_apis.state.seen(TAVILY_HOST, "/search")
    assert search["authorization"] == f"Bearer {TAVILY_KEY}" and search["body"]["api_key"] == TAVILY_KEY
    assert search["body"]["query"] == "snowflake connector STATUS renamed" and search["body"]["max_results"] == 5
    brightdata = [(r["method"], r["path"]) for r in fake_apis.state.seen(BRIGHTDATA_HOST)]
    assert brightdata[:3] == [("GET", "/zone/get_active_zones"), ("POST", "/zone"), ("POST", "/zone")]
    assert fake_apis.state.zones == ["mcp_unlocker", "mcp_browser"]  # written to the account (README)
    requests = [r["body"] for r in fake_apis.state.seen(BRIGHTDATA_HOST, "/request")]
    assert [(b["zone"], b["data_format"]) for b in requests] == [
        ("mcp_unlocker", "parsed_light"),
        ("mcp_unlocker", "markdown"),
    ]
    assert {"CONNECT api.tavily.com:443", "CONNECT api.brightdata.com:443"} <= set(fake_apis.proxy.connects)

    stderr = [r.getMessage() for r in caplog.records if r.name == "agents.mcp.stderr"]
    assert any("MCP server tavily: Tavily MCP server running on stdio" in line for line in stderr)
    assert any("MCP server brightdata: Checking for required zones" in line for line in stderr)
    assert not any(TAVILY_KEY in line or BRIGHTDATA_TOKEN in line for line in stderr)


def test_why_cites_what_the_real_servers_found_and_every_question_reuses_their_processes(fake_apis, fake_llm) -> None:
    settings = settings_for(fake_apis)
    config, options = agent_config(settings), mcp_options(settings, env={})
    mcp_runtime.toolbox_for(config, {}, options)  # as `dnabot serve` warms them at start-up
    wait_until(lambda: settled("tavily", "brightdata"), timeout=40)
    started = node_servers()
    final = f"{FINAL} The connector's release notes describe the rename: {RELEASE_NOTES}"
    fake_llm.script(web_then_answer(fake_llm, final) * 2)

    answers = []
    for _ in range(2):  # two questions, each on its own event loop, as two Slack listeners run them
        handle = mcp_runtime.toolbox_for(config, {}, options, budget_seconds=5.0, per="question")
        answers.append(ask(fake_llm, config, handle))

    for answer in answers:
        assert (answer.source, answer.fallback_reason) == ("llm", None), answer
        assert RELEASE_NOTES in answer.citations and RELEASE_NOTES in answer.answer
    web = [m["content"] for m in fake_llm.requests[1]["messages"] if m["role"] == "tool"]
    assert web[0].startswith('<<<UNTRUSTED source="web tool tavily_search">>>') and FORUM in web[0]
    assert len(fake_api_calls(fake_apis)) == 4  # two searches per question, one upstream request each
    assert node_servers() == started and len(started) == 2  # the same two processes answered both questions
    assert all(h["restarts"] == 0 for h in mcp_runtime.health().values())


def fake_api_calls(apis: FakeAPIs) -> list[dict[str, Any]]:
    return apis.state.seen(TAVILY_HOST, "/search") + apis.state.seen(BRIGHTDATA_HOST, "/request")


# --------------------------------------------------------------------------------------------- they fail


def test_a_real_server_that_dies_mid_call_fails_that_call_and_is_restarted(fake_apis) -> None:
    settings = settings_for(fake_apis, brightdata_api_token=None)
    killed: list[int] = []

    def kill_tavily(request: dict[str, Any]) -> None:
        if request["path"] == "/search" and not killed:
            pid = node_servers()["tavily-mcp"]
            killed.append(pid)
            psutil.Process(pid).kill()

    async def scenario() -> tuple[Any, ...]:
        async with real_toolbox(settings, backoff_seconds=0.2) as tb:
            fake_apis.state.on_request = kill_tavily
            died = await tb.call("tavily_search", {"query": "status"})
            after = tb.health()["tavily"]
            while tb.health()["tavily"]["state"] != "up":
                await asyncio.sleep(0.05)
            again = await tb.call("tavily_search", {"query": "status"})
            return died, after, again, tb.health()["tavily"], node_servers()

    died, after, again, health, running = asyncio.run(scenario())
    assert not died.ok and died.server == "tavily" and "Connection closed" in (died.error or "")
    assert after["state"] in ("down", "starting") and after["error"]
    assert again.ok and again.urls == (RELEASE_NOTES, FORUM)
    assert health["restarts"] == 1 and running["tavily-mcp"] != killed[0]


def test_a_real_server_that_cannot_start_is_down_in_its_own_words_and_the_other_works(fake_apis, caplog) -> None:
    caplog.set_level(logging.INFO, logger="agents.mcp.stderr")
    settings = settings_for(fake_apis)
    config, options = agent_config(settings), mcp_options(settings, env={})
    [tavily, brightdata] = load_servers(config, {}, options)
    no_token = ServerSpec("brightdata", "stdio", command="node", args=brightdata.args, cwd=brightdata.cwd)

    async def scenario() -> tuple[Any, ...]:
        servers = [tavily, no_token]
        tb = MCPToolbox(servers, allowed_tools=config.mcp_allowed_tools, extra_env=options.env, backoff_seconds=5)
        async with tb:
            return tb.health()["brightdata"], await tb.search("status"), await tb.call("search_engine", {"query": "x"})

    health, hits, serp = asyncio.run(scenario())
    assert health["state"] == "down" and "Cannot run MCP server without API_TOKEN env" in health["error"]
    assert health["retry_in_seconds"] is not None and health["retry_in_seconds"] > 0  # backing off
    assert [h.url for h in hits] == [RELEASE_NOTES, FORUM]
    assert not serp.ok and "API_TOKEN" in (serp.error or "")
    traces = [r.getMessage() for r in caplog.records if r.name == "agents.mcp.stderr" and "API_TOKEN" in r.getMessage()]
    assert traces and any("Error: Cannot run MCP server without API_TOKEN env\n    at " in t for t in traces)  # whole


# --------------------------------------------------------------------------- bounded: questions and syncs


@pytest.fixture
def refused_proxy() -> Iterator[str]:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("upstream", ["refused", "black-holed"])
def test_why_with_an_unreachable_upstream_degrades_within_five_seconds_a_question(
    fake_apis, fake_llm, refused_proxy, upstream
) -> None:
    if upstream == "refused":
        settings = settings_for(fake_apis, https_proxy=refused_proxy)
    else:
        fake_apis.proxy.blackhole = True  # accepts, never answers: BrightData's start-up zone check hangs too
        settings = settings_for(fake_apis, mcp_start_timeout_seconds=8.0)
    config, options = agent_config(settings), mcp_options(settings, env={})
    mcp_runtime.toolbox_for(config, {}, options)
    wait_until(lambda: settled("tavily", "brightdata"), timeout=40)  # after start-up
    fake_llm.script(web_then_answer(fake_llm, FINAL) * 3)

    seconds = []
    for _ in range(3):
        budget = options.question_budget_seconds
        handle = mcp_runtime.toolbox_for(config, {}, options, budget_seconds=budget, per="question")
        started = time.monotonic()
        answer = ask(fake_llm, config, handle)
        seconds.append(time.monotonic() - started)
        assert answer.source == "llm" and "outside context unavailable" in answer.degraded
    print(f"why, {upstream} upstream: {', '.join(f'{s:.2f}' for s in seconds)} s per question", file=sys.stderr)
    assert max(seconds) <= 5.0
    # BrightData's start-up zone check never returns through a black hole: it is down, its tools not offered
    offered = {"tavily_search", "search_engine"} if upstream == "refused" else {"tavily_search"}
    for first, second in zip(fake_llm.requests[0::3], fake_llm.requests[1::3], strict=True):
        assert offered <= {t["function"]["name"] for t in first["tools"]}
        assert second["messages"][-1]["content"].startswith("error: outside context unavailable")  # it was tried
    assert mcp_runtime.health()["tavily"]["state"] == "up"  # an unreachable upstream is not a dead server


def test_a_syncs_time_on_outside_context_is_bounded_and_reported(fake_apis, om_demo, tmp_path) -> None:
    fake_apis.proxy.blackhole = True
    database = f"sqlite:///{tmp_path / 'sync.db'}"
    settings = settings_for(
        fake_apis,
        database_url=database,
        openmetadata_url=om_demo.url,
        openmetadata_token=om_demo.token,
        mcp_sync_budget_seconds=3.0,
        mcp_start_timeout_seconds=5.0,
    )
    assert asyncio.run(services.sync(settings)).ok  # the first sync takes over what OpenMetadata tracks
    rename(om_demo, "status", "order_state")
    result = asyncio.run(services.sync(settings))

    assert result.ok and result.incidents is not None
    reported = result.incidents
    print(
        f"sync with a black-holed upstream: duration {result.duration_seconds:.2f} s, pipeline "
        f"{reported['pipeline_seconds']:.2f} s, outside context {reported['outside_context_seconds']:.2f} s",
        file=sys.stderr,
    )
    assert 2.9 <= reported["outside_context_seconds"] <= 3.5  # the budget, not 15 s per search
    assert reported["pipeline_seconds"] >= reported["outside_context_seconds"]
    assert result.duration_seconds >= reported["pipeline_seconds"]
    assert any("outside-context budget of 3s per sync spent" in note for note in reported["degraded"])
    assert result.incidents["opened"]
