"""Outside context over MCP: configuration, real fake servers over stdio and HTTP, and every way a server fails."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from agents.config import AgentConfig
from agents.mcp import MCPConfigError, MCPOptions, MCPToolbox, ServerSpec, load_servers
from agents.mcp_config import BRIGHTDATA_PACKAGE, SERVERS_DIR, TAVILY_PACKAGE
from agents.mcp_results import extract_urls, parse_web_results
from tests.fakes.mcp_servers import INJECTION, PAGES, read_events, stdio_spec
from tests.fakes.mcp_servers import mcp_http_server as mcp_http_server  # a fixture

T = TypeVar("T")
ALLOWED = frozenset({"tavily_search", "tavily_extract", "search_engine", "scrape_as_markdown"})
RELEASE_NOTES, FORUM = PAGES[0]["url"], PAGES[1]["url"]
HttpServer = Callable[..., str]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def toolbox(*servers: ServerSpec, call_timeout: float = 5.0, **kwargs: Any) -> MCPToolbox:
    return MCPToolbox(servers, allowed_tools=ALLOWED, call_timeout=call_timeout, max_chars=4_000, **kwargs)


@pytest.fixture(autouse=True)
def no_server_left_behind() -> Iterator[None]:
    """Every test must leave no server process it started running once its toolbox is closed (processes of the
    shared, process-wide sessions that an earlier test in this worker left are not this test's)."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    deadline = time.monotonic() + 5
    while (left := [p for p in psutil.Process().children(recursive=True) if p.pid not in before]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert left == [], f"MCP server processes left behind: {left}"


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "mcp-events.jsonl"


def write_config(tmp_path: Path, document: Any) -> AgentConfig:
    path = tmp_path / "mcp.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return AgentConfig(mcp_config_path=str(path))


# ------------------------------------------------------------------------------------------ configuration


def test_config_file_expands_variables_from_the_env_it_is_given(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("FROM_OS_ONLY", "must-not-be-used")
    config = write_config(
        tmp_path,
        {
            "mcpServers": {
                "tavily": {"command": "npx", "args": ["-y", "tavily-mcp"], "env": {"TAVILY_API_KEY": "${TVLY}"}},
                "remote": {
                    "url": "https://mcp.example.com/mcp?region=${REGION:-eu}",
                    "headers": {"Authorization": "Bearer ${BD_TOKEN}"},
                },
                "off": {"command": "never-started", "disabled": True},
            }
        },
    )
    tavily, remote = load_servers(config, {"TVLY": "tvly-123", "BD_TOKEN": "bd-456"})
    assert (tavily.name, tavily.transport, tavily.command, tavily.args) == (
        "tavily",
        "stdio",
        "npx",
        ("-y", "tavily-mcp"),
    )
    assert tavily.env == {"TAVILY_API_KEY": "tvly-123"}
    assert (remote.transport, remote.url) == ("http", "https://mcp.example.com/mcp?region=eu")
    assert remote.headers == {"Authorization": "Bearer bd-456"}
    assert "tvly-123" not in repr(tavily) and "bd-456" not in repr(remote)
    assert tavily.redact("auth failed for key tvly-123") == "auth failed for key ***"
    quoted = ServerSpec("bd", "http", url="https://mcp.example.com/mcp?token=bd-secret-9").redact(
        "401 for url 'https://mcp.example.com/mcp?token=bd-secret-9'"
    )
    assert "bd-secret-9" not in quoted

    with pytest.raises(MCPConfigError, match=r"mcp\.json.*\$\{FROM_OS_ONLY\} is not set"):
        load_servers(write_config(tmp_path, {"mcpServers": {"x": {"command": "${FROM_OS_ONLY}"}}}), {})


def test_without_a_file_the_keys_that_are_set_choose_the_installed_tavily_and_brightdata() -> None:
    both = load_servers(AgentConfig(tavily_api_key="tvly-1", brightdata_api_token="bd-2"), {})
    assert [(s.name, s.command, s.env, s.problem) for s in both] == [
        ("tavily", "node", {"TAVILY_API_KEY": "tvly-1"}, None),
        ("brightdata", "node", {"API_TOKEN": "bd-2", "BASE_TIMEOUT": "15"}, None),
    ]  # never npx: nothing is downloaded at run time
    installed = SERVERS_DIR / "node_modules"
    assert both[0].args == (str(installed / "tavily-mcp" / "build" / "index.js"),)
    assert both[1].args == (str(installed / "@brightdata" / "mcp" / "server.js"),)
    assert both[0].cwd == str(SERVERS_DIR)  # tavily-mcp loads a .env from its cwd: not the bot's
    assert [s.name for s in load_servers(AgentConfig(brightdata_api_token="bd-2"), {})] == ["brightdata"]
    assert load_servers(AgentConfig(), {"TAVILY_API_KEY": "ignored: keys come from the config"}) == []


def test_the_lockfile_pins_exactly_the_versions_the_bot_was_checked_against() -> None:
    manifest = json.loads((SERVERS_DIR / "package.json").read_text())
    lock = json.loads((SERVERS_DIR / "package-lock.json").read_text())
    pins = {name: f"{name}@{version}" for name, version in manifest["dependencies"].items()}
    assert pins == {"tavily-mcp": TAVILY_PACKAGE, "@brightdata/mcp": BRIGHTDATA_PACKAGE}  # exact, no ^ or ~
    for name, pinned in pins.items():
        assert f"{name}@{lock['packages'][f'node_modules/{name}']['version']}" == pinned
    assert (SERVERS_DIR / ".gitignore").read_text().split() == ["node_modules/"]


def test_servers_that_are_not_installed_say_to_run_make_mcp_and_are_never_launched(tmp_path: Path) -> None:
    options = MCPOptions(servers_dir=str(tmp_path))
    [tavily] = load_servers(AgentConfig(tavily_api_key="tvly-1"), {}, options)
    assert tavily.problem is not None and "tavily-mcp is not installed" in tavily.problem
    assert "make mcp" in tavily.problem and str(tmp_path) in tavily.problem

    async def scenario() -> tuple[Any, ...]:
        async with toolbox(tavily) as tb:
            return await tb.call("tavily_search", {"query": "x"}), tb.health()["tavily"]

    call, health = run(scenario())
    assert not call.ok and "make mcp" in (call.error or "")
    assert health["state"] == "down" and "make mcp" in health["error"] and health["restarts"] == 0


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("{not json", "invalid JSON at line 1"),
        ({"servers": {}}, 'expected a JSON object with an "mcpServers" object'),
        ({"mcpServers": {"x": {"args": ["a"]}}}, 'server \'x\' needs "command" \\(stdio\\) or "url"'),
        ({"mcpServers": {"x": {"command": "npx", "args": "-y"}}}, "server 'x': args must be a list of strings"),
        ({"mcpServers": {"x": {"url": "ftp://x"}}}, "server 'x': url must start with http"),
        ({"mcpServers": {"x": {"url": "http://x/sse", "type": "sse"}}}, "server 'x': transport 'sse' is not supported"),
        ({"mcpServers": {"x": {"command": "npx", "evn": {}}}}, "server 'x': unknown key\\(s\\) evn"),
    ],
)
def test_a_bad_config_file_names_the_file_and_the_problem(tmp_path: Path, document: Any, problem: str) -> None:
    with pytest.raises(MCPConfigError, match=rf"MCP config .*mcp\.json: {problem}"):
        load_servers(write_config(tmp_path, document), {})


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MCPConfigError, match=r"nope\.json: cannot read the file"):
        load_servers(AgentConfig(mcp_config_path=str(tmp_path / "nope.json")), {})


# ------------------------------------------------------------------------------------------ parsing


def test_urls_come_from_structured_fields_and_are_deduplicated() -> None:
    tavily_json = json.dumps(
        {"results": [{"url": RELEASE_NOTES, "title": "t"}, {"url": RELEASE_NOTES}, {"url": FORUM}]}
    )
    assert extract_urls(tavily_json) == (RELEASE_NOTES, FORUM)
    markdown = f"See [notes]({RELEASE_NOTES}), also {FORUM}. And [again]({RELEASE_NOTES})."
    assert extract_urls(markdown) == (RELEASE_NOTES, FORUM)
    hits = parse_web_results(tavily_json, "tavily_search")
    assert [(h.url, h.source_tool) for h in hits] == [(RELEASE_NOTES, "tavily_search"), (FORUM, "tavily_search")]


# ------------------------------------------------------------------------------------------ live fakes


def test_stdio_tavily_search_returns_results_with_urls(record: Path) -> None:
    async def scenario() -> tuple[Any, ...]:
        async with toolbox(stdio_spec("tavily", "tavily", record)) as tb:
            tools = await tb.list_tools()
            hits = await tb.search("snowflake connector 3.2 STATUS column")
            extract = await tb.call("tavily_extract", {"urls": [RELEASE_NOTES]})
            return tools, hits, extract, tb.last_degraded, tb.status()

    tools, hits, extract, degraded, status = run(scenario())
    assert {t["name"]: t["server"] for t in tools} == {"tavily_search": "tavily", "tavily_extract": "tavily"}
    search_schema = next(t["input_schema"] for t in tools if t["name"] == "tavily_search")
    assert search_schema["required"] == ["query"]
    assert search_schema["properties"]["max_results"]["minimum"] == 5
    assert [h.url for h in hits] == [RELEASE_NOTES, FORUM]
    assert "renamed column STATUS to ORDER_STATUS" in hits[0].snippet
    assert hits[0].source_tool == "tavily_search" and degraded is None
    assert extract.ok and extract.server == "tavily" and extract.urls == (RELEASE_NOTES,)
    assert status == {"tavily": "up"}


def test_streamable_http_brightdata_search_and_scrape(mcp_http_server: HttpServer) -> None:
    url = mcp_http_server("brightdata")

    async def scenario() -> tuple[Any, ...]:
        async with toolbox(ServerSpec("brightdata", "http", url=url)) as tb:
            tools = [t["name"] for t in await tb.list_tools()]
            hits = await tb.search("snowflake STATUS renamed")
            page = await tb.call("scrape_as_markdown", {"url": RELEASE_NOTES})
            return tools, hits, page

    tools, hits, page = run(scenario())
    assert sorted(tools) == ["scrape_as_markdown", "search_engine"]  # scrape_batch is not allow-listed
    assert [(h.url, h.source_tool) for h in hits] == [(RELEASE_NOTES, "search_engine"), (FORUM, "search_engine")]
    assert hits[1].title.startswith("Forum: dashboards broke")
    assert page.ok and page.urls == (RELEASE_NOTES, FORUM) and "# Snowflake connector 3.2" in page.text


def test_one_session_per_server_is_reused_for_every_call(record: Path, mcp_http_server: HttpServer) -> None:
    http_record = record.with_name("http-events.jsonl")
    url = mcp_http_server("brightdata", http_record)

    async def scenario() -> None:
        async with toolbox(stdio_spec("tavily", "tavily", record), ServerSpec("bd", "http", url=url)) as tb:
            for _ in range(3):
                assert (await tb.call("tavily_search", {"query": "status"})).ok
                assert (await tb.call("search_engine", {"query": "status"})).ok
            await tb.search("status")

    run(scenario())
    assert len(read_events(record, "start")) == 1
    assert len(read_events(record, "call")) == 4
    handshakes = [e for e in read_events(http_record, "rpc") if e["method"] in ("initialize", "server/discover")]
    assert len(handshakes) == 1
    assert len(read_events(http_record, "call")) == 3


def test_first_calls_may_race_and_connect_lazily_without_a_with_block(record: Path) -> None:
    async def scenario() -> tuple[Any, ...]:
        tb = toolbox(stdio_spec("tavily", "tavily", record))
        try:
            return await asyncio.gather(
                tb.call("tavily_search", {"query": "a"}), tb.call("tavily_extract", {"urls": [FORUM]}), tb.search("b")
            )
        finally:
            await tb.aclose()

    searched, extracted, hits = run(scenario())
    assert searched.ok and extracted.ok and len(hits) == 2
    assert len(read_events(record, "start")) == 1


def test_a_server_that_never_answers_is_down_after_the_start_up_timeout(record: Path) -> None:
    mute = ServerSpec("mute", "stdio", command=sys.executable, args=("-c", "import sys; sys.stdin.read()"))

    async def scenario() -> tuple[Any, ...]:
        # The timeout leaves a healthy SDK server room to start on a loaded 2-core machine (CI once took > 1.5 s).
        async with toolbox(mute, stdio_spec("tavily", "tavily", record), connect_timeout=6) as tb:
            return tb.status(), tb.health()["mute"], await tb.call("tavily_search", {"query": "status"})

    status, mute_health, searched = run(scenario())
    assert status == {"mute": "down: did not start within 6s", "tavily": "up"}
    assert mute_health["retry_in_seconds"] is not None  # it is tried again, after a backoff
    assert searched.ok


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `check` on the loop until it holds (no sleeps to wait for things: a deadline)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_a_crashing_server_is_restarted_with_backoff_and_the_other_server_still_works(record: Path) -> None:
    async def scenario() -> tuple[Any, ...]:
        servers = stdio_spec("crashy", "crash", record), stdio_spec("brightdata", "brightdata")
        async with toolbox(*servers, backoff_seconds=0.3) as tb:
            first = await tb.call("tavily_search", {"query": "status"})
            after_crash = tb.health()["crashy"]
            other = await tb.call("search_engine", {"query": "status"})
            again = await tb.call("tavily_search", {"query": "status"})  # down, backing off: fails at once
            hits = await tb.search("status")  # falls back to search_engine
            degraded = tb.last_degraded
            await until(lambda: tb.health()["crashy"]["state"] == "up")  # restarted after the backoff
            return first, after_crash, other, again, hits, degraded, tb.health()

    first, after_crash, other, again, hits, degraded, health = run(scenario())
    assert not first.ok and first.server == "crashy" and "Connection closed" in (first.error or "")
    assert after_crash["state"] in ("down", "starting") and after_crash["error"]
    assert other.ok and other.server == "brightdata"
    assert not again.ok and "server crashy down" in (again.error or "")
    assert [h.source_tool for h in hits] == ["search_engine", "search_engine"]
    assert degraded is not None and "tavily_search failed" in degraded and "used search_engine" in degraded
    assert health["brightdata"]["state"] == "up" and health["brightdata"]["restarts"] == 0
    assert health["crashy"]["state"] == "up" and health["crashy"]["restarts"] == 1
    assert len(read_events(record, "start")) == 2


def test_a_server_that_keeps_dying_backs_off_longer_each_time(record: Path) -> None:
    dying = ServerSpec("dying", "stdio", command=sys.executable, args=("-c", "raise SystemExit(3)"))

    async def scenario() -> list[float]:
        async with toolbox(dying, backoff_seconds=0.2, backoff_max_seconds=0.8) as tb:
            waits: list[float] = []
            while len(waits) < 4:
                await until(lambda: tb.health()["dying"]["restarts"] > len(waits))
                waits.append(tb.health()["dying"]["retry_in_seconds"] or 0.0)
            return waits

    waits = run(scenario())
    assert waits == sorted(waits) and waits[-1] <= 0.8 and waits[0] <= 0.2


def test_a_hanging_tool_times_out_and_the_toolbox_stays_usable(record: Path) -> None:
    async def scenario() -> tuple[Any, ...]:
        async with toolbox(stdio_spec("slow", "hang", record), call_timeout=1.0) as tb:
            started = time.monotonic()
            hung = await tb.call("tavily_search", {"query": "status"})
            waited = time.monotonic() - started
            recovered = await tb.call("tavily_extract", {"urls": [FORUM]})  # on a fresh session
            return hung, waited, recovered, tb.status()

    hung, waited, recovered, status = run(scenario())
    assert not hung.ok and hung.error == "timed out after 1s"
    assert 0.9 <= waited < 3.0
    assert recovered.ok and recovered.urls == (FORUM,)
    assert status == {"slow": "up"}
    assert len(read_events(record, "start")) == 1  # it still answered a ping: the same session and process


def test_injected_instructions_are_only_data(mcp_http_server: HttpServer, record: Path) -> None:
    url = mcp_http_server("inject", record)

    async def scenario() -> tuple[Any, ...]:
        async with toolbox(ServerSpec("sketchy", "http", url=url)) as tb:
            names = [t["name"] for t in await tb.list_tools()]
            hits = await tb.search("snowflake STATUS")
            found = await tb.call("tavily_search", {"query": "snowflake STATUS"})
            refused = await tb.call("delete_everything", {"confirm": True})
            return names, hits, found, refused

    names, hits, found, refused = run(scenario())
    assert "delete_everything" not in names and "scrape_batch" not in names
    assert refused.ok is False and refused.error == "tool not allowed"
    assert found.ok and INJECTION in found.text  # returned verbatim, as data
    assert INJECTION in hits[0].snippet
    assert found.urls == (RELEASE_NOTES, FORUM)  # the injected link is prose, not a source
    assert not any("evil.example" in h.url for h in hits)
    calls = [(e["tool"], e["args"]["query"]) for e in read_events(record, "call")]
    assert calls == [("tavily_search", "snowflake STATUS"), ("tavily_search", "snowflake STATUS")]


def test_search_degrades_to_nothing_when_every_server_is_down(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    servers = (
        ServerSpec("missing", "stdio", command=str(tmp_path / "no-such-mcp-server")),
        ServerSpec("gone", "http", url=dead_url),
    )

    async def scenario() -> tuple[Any, ...]:
        async with toolbox(*servers, connect_timeout=5.0) as tb:
            hits = await tb.search("status")
            call = await tb.call("tavily_search", {"query": "status"})
            return hits, tb.last_degraded, call, tb.status(), await tb.list_tools()

    started = time.monotonic()
    hits, degraded, call, status, tools = run(scenario())
    assert time.monotonic() - started < 5
    assert hits == [] and tools == []
    assert degraded is not None and degraded.startswith("no web search tool available")
    assert not call.ok and "no available server provides 'tavily_search'" in (call.error or "")
    assert status["missing"].startswith("down: FileNotFoundError")
    assert status["gone"].startswith("down: ")


def test_no_servers_means_no_search_and_says_why() -> None:
    async def scenario() -> tuple[Any, ...]:
        async with toolbox() as tb:
            return await tb.search("status"), tb.last_degraded, tb.status()

    assert run(scenario()) == ([], "no web search tool available (no MCP servers configured)", {})
