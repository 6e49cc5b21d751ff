"""Stale data and outages over real HTTP: `/dna status` after failed syncs, answers that say how old their data is,
mention threads that survive another replica, and listeners that answer when the LLM, MCP or the store is down."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from bot.core import services
from bot.core.settings import Settings, get_settings
from bot.runtime.http import create_http_app
from simulator import run_in_thread
from storage.persistence import coordination, db
from storage.persistence.models import SyncRun
from tests.bot.test_app_http import ADMIN, SECRET, STG_ORDERS, Bot, texts
from tests.fakes.slack_signing import app_home_opened, app_mention_event, slash_command

NO_KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TAVILY_API_KEY", "BRIGHTDATA_API_TOKEN", "DNABOT_MCP_CONFIG")
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused at once
OM_DOWN = "OpenMetadata is unavailable (HTTP 503)"


@pytest.fixture
def bots(slack_api, om_demo, tmp_path, monkeypatch) -> Iterator[Callable[..., Bot]]:
    """`bots(**env)` starts one more HTTP replica of the bot; all of them share one SQLite store and one Slack."""
    for var in NO_KEYS:
        monkeypatch.delenv(var, raising=False)
    base = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "OPENMETADATA_URL": om_demo.url,
        "OPENMETADATA_TOKEN": om_demo.token,
        "SLACK_API_URL": slack_api.url,
        "SLACK_BOT_TOKEN": slack_api.token,
        "SLACK_SIGNING_SECRET": SECRET,
        "DNABOT_ADMINS": ADMIN,
        "DNABOT_OM_MAX_RETRIES": "0",  # a failing OpenMetadata fails the sync at once
    }
    monkeypatch.chdir(tmp_path)
    started: list[tuple[httpx.Client, object]] = []

    def start(*, sync: bool = True, **env: str) -> Bot:
        for name, value in (base | env).items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        settings = get_settings()
        if sync:
            asyncio.run(services.sync(settings))
        handle = run_in_thread(create_http_app(settings))
        client = httpx.Client(trust_env=False, timeout=10)
        started.append((client, handle))
        return Bot(handle.url, settings, slack_api, om_demo, client)

    yield start
    for client, handle in started:
        client.close()
        handle.stop()  # type: ignore[attr-defined]
    get_settings.cache_clear()


def ask(bot: Bot, text: str, rid: str) -> dict:
    """Type `/dna <text>` and return the one answer that comes back through the response_url."""
    assert bot.post(slash_command(text, response_url=bot.slack.response_url(rid))).status_code == 200
    [reply] = bot.slack.wait_for(lambda: bot.slack.responses(rid), 15)
    return reply


def mention(bot: Bot, text: str, *, thread_ts: str | None = None, timeout: float = 15) -> dict:
    """Mention the bot (in a thread when `thread_ts`) and return its placeholder once it became the answer."""
    seen = {m["ts"] for m in bot.slack.thread("C1", thread_ts)} if thread_ts else set()
    ts = bot.slack.user_message("C1", f"<@UBOT> {text}", thread_ts=thread_ts)
    assert bot.post(app_mention_event(f"<@UBOT> {text}", ts=ts, thread_ts=thread_ts)).status_code == 200
    root = thread_ts or ts

    def answered() -> dict | None:
        new = [m for m in bot.slack.thread("C1", root) if m["ts"] not in seen | {ts, root}]
        done = [m for m in new if "Looking into it" not in str(m.get("text"))]
        return done[-1] if done else None

    return bot.slack.wait_for(answered, timeout)


def fail_a_sync(bot: Bot, **changes: object) -> None:
    """One more sync, against an OpenMetadata that answers 503 (or whatever `changes` point the settings at)."""
    if not changes:
        bot.om.admin("POST", "/admin/faults", {"path_regex": "^/api/v1", "status": 503, "times": 1000})
    settings = bot.settings.model_copy(update=changes) if changes else bot.settings
    try:
        assert asyncio.run(services.sync(settings)).status == "failed"
    finally:
        bot.om.admin("DELETE", "/admin/faults")


def age_the_store(settings: Settings, by: timedelta) -> None:
    """Pretend every sync so far ran `by` earlier."""
    engine = db.make_engine(settings.database_url)
    with db.session_factory(engine).begin() as session:
        for run in session.scalars(sa.select(SyncRun)):
            run.started_at -= by
            run.finished_at = run.finished_at - by if run.finished_at else None
    engine.dispose()


def last_context(blocks: list[dict]) -> str:
    return json.dumps(blocks[-1], ensure_ascii=False) if blocks and blocks[-1]["type"] == "context" else ""


# ------------------------------------------------------------------------------------------------ status


def test_status_after_failed_syncs_shows_lag_failures_outbox_and_the_leader(bots):
    bot = bots()
    fail_a_sync(bot, openmetadata_url=CLOSED)  # OpenMetadata not even listening
    fail_a_sync(bot)  # then answering 503
    engine = db.make_engine(bot.settings.database_url)
    with db.session_factory(engine).begin() as session:
        coordination.try_lease(session, "scheduler", "replica-b", ttl_seconds=60, now=datetime.now(UTC))
    engine.dispose()

    status = texts(ask(bot, "status", "st")["blocks"])
    assert ":warning: Last good sync" in status and f"(full, run #1); 2 failed since ({OM_DOWN})" in status
    assert "*Failures since last good sync*\\n2" in status and "(lag " in status
    assert "*Latest run*\\n#3 failed" in status and OM_DOWN in status
    assert "cannot reach OpenMetadata at" in status and "(connection refused)" in status  # the older failure
    assert "*Outbox*\\n" in status and "dead letter(s)" in status
    assert "*Scheduler leader*\\n`replica-b`" in status
    assert bot.om.token not in status and "Data is" not in status  # failing, but the data is not old yet


def test_status_of_a_store_that_never_synced_says_so(bots):
    bot = bots(sync=False)
    status = texts(ask(bot, "status", "st0")["blocks"])
    assert "No sync has run yet" in status and "none yet" in status


# ---------------------------------------------------------------------------------------------- answers


def test_answers_say_how_stale_their_data_is_when_the_last_good_sync_is_old(bots):
    bot = bots()
    age_the_store(bot.settings, timedelta(hours=2))  # default threshold: 3 × 15 min
    fail_a_sync(bot)
    note = f"Data is 2h 0m old — the last sync failed ({OM_DOWN}). Showing the last good data."

    for i, text in enumerate(
        ["show stg_orders", "timeline stg_orders 7d", "blast stg_orders", "incidents", "why stg_orders"]
    ):
        reply = ask(bot, text, f"stale{i}")
        assert note in last_context(reply["blocks"]), text
    assert "Data is" not in texts(ask(bot, "help", "help")["blocks"])  # help reads no data

    answered = mention(bot, "why did stg_orders break?")
    assert STG_ORDERS in texts(answered["blocks"]) and note in last_context(answered["blocks"])

    assert bot.post(app_home_opened("U7")).status_code == 200
    [home] = bot.slack.wait_for(lambda: bot.slack.views_published("U7"))
    assert note in texts(home["blocks"])


def test_fresh_answers_carry_no_note_and_the_threshold_is_configurable(bots):
    fresh = bots()
    reply = ask(fresh, "show stg_orders", "fresh")
    assert STG_ORDERS in texts(reply["blocks"]) and "Data is" not in texts(reply["blocks"])

    strict = bots(sync=False, DNABOT_STALE_AFTER_SECONDS="0.001")  # a second replica on the same store
    time.sleep(0.01)  # older than 1 ms, without a doubt
    strict_reply = ask(strict, "show stg_orders", "strict")
    assert "old — no sync has run since (is the scheduler running?)" in last_context(strict_reply["blocks"])


# ----------------------------------------------------------------------------------------------- mentions


def test_a_follow_up_landing_on_another_replica_keeps_the_threads_dataset(bots):
    first, second = bots(), bots(sync=False)
    answered = mention(first, "why did stg_orders break?")
    root = answered["thread_ts"]
    assert STG_ORDERS in texts(answered["blocks"])

    follow = mention(second, "and what now?", thread_ts=root)  # a replica that never saw the first mention
    assert "what now" in texts(follow["blocks"]) and STG_ORDERS in texts(follow["blocks"])
    engine = db.make_engine(first.settings.database_url)
    with db.session_factory(engine)() as session:
        assert coordination.thread_subject(session, "C1", root) == STG_ORDERS
    engine.dispose()


def test_with_the_llm_down_a_mention_is_still_answered_from_the_rules(bots):
    bot = bots(OPENAI_BASE_URL=f"{CLOSED}/v1", OPENAI_API_KEY="sk-test-llm-key-never-shown")
    answered = mention(bot, "why did stg_orders break?", timeout=30)
    seen = texts(answered["blocks"])
    assert STG_ORDERS in seen and "Answered by rules" in seen and "fell back" in seen
    assert "sk-test-llm-key-never-shown" not in seen


def test_with_the_llm_hanging_and_mcp_down_a_mention_is_still_answered(bots, fake_llm, tmp_path):
    fake_llm.script([{"delay": 30}] * 4)
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"web": {"type": "http", "url": f"{CLOSED}/mcp"}}}))
    bot = bots(
        OPENAI_BASE_URL=fake_llm.url,
        OPENAI_API_KEY="sk-test",
        DNABOT_LLM_TIMEOUT_SECONDS="0.5",
        DNABOT_MCP_CONFIG=str(config),
        DNABOT_MCP_TIMEOUT_SECONDS="1",
    )
    started = time.monotonic()
    answered = mention(bot, "why did stg_orders break?", timeout=30)
    assert STG_ORDERS in texts(answered["blocks"]) and "Answered by rules" in texts(answered["blocks"])
    assert time.monotonic() - started < 20


# ---------------------------------------------------------------------------------------------- store down


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that accepts no connection (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_with_the_store_down_every_listener_answers_briefly_and_without_secrets(bots, closed_port):
    url = f"postgresql+psycopg://dnabot:store-password-never-shown@127.0.0.1:{closed_port}/dnabot"
    bot = bots(sync=False, DATABASE_URL=url)

    reply = ask(bot, "show stg_orders", "down")
    assert reply["response_type"] == "ephemeral" and "DNA store cannot be reached" in texts(reply["blocks"])
    status = ask(bot, "status", "down-status")
    assert "DNA store cannot be reached" in texts(status["blocks"])

    answered = mention(bot, "why did stg_orders break?")
    assert "DNA store cannot be reached" in texts(answered["blocks"])

    assert bot.post(app_home_opened("U8")).status_code == 200
    [home] = bot.slack.wait_for(lambda: bot.slack.views_published("U8"))
    assert "cannot be read right now" in texts(home["blocks"])

    everything = json.dumps([c.args for c in bot.slack.calls()]) + json.dumps(bot.slack.responses("down"))
    assert "store-password-never-shown" not in everything and "Traceback" not in everything
