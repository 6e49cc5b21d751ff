"""Slow questions never starve the others: answers run on a bounded pool, with per-user and per-channel limits.

Over signed HTTP against a running bot, with a fake LLM that holds every question until the test lets go.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from bot.core import answers, services
from bot.core.settings import get_settings
from bot.runtime.http import create_http_app
from bot.slack.listeners.mentions import PLACEHOLDER
from simulator import run_in_thread
from tests.bot.test_app_http import SECRET, Bot, texts
from tests.e2e.replicas import wait_until
from tests.fakes.slack_signing import app_mention_event, slash_command

WORKERS = 3
PER_USER = 2
PER_CHANNEL = 3
# Today's listener pool has 32 workers: more slow mentions than that once took every one of them.
CROWD = 34


@dataclass
class Asked:
    """One mention sent: where, by whom, and the `ts` of the user's message (the thread's root)."""

    channel: str
    user: str
    ts: str


@pytest.fixture
def bot(slack_api, om_demo, fake_llm, tmp_path, monkeypatch) -> Iterator[Bot]:
    """A bot whose LLM answers only when `fake_llm.release()` is called, on a small answer pool."""
    for var in ("TAVILY_API_KEY", "BRIGHTDATA_API_TOKEN", "DNABOT_MCP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "OPENMETADATA_URL": om_demo.url,
        "OPENMETADATA_TOKEN": om_demo.token,
        "SLACK_API_URL": slack_api.url,
        "SLACK_BOT_TOKEN": slack_api.token,
        "SLACK_SIGNING_SECRET": SECRET,
        "OPENAI_BASE_URL": fake_llm.url,
        "OPENAI_API_KEY": "sk-test-answer-pool",
        "DNABOT_LLM_TIMEOUT_SECONDS": "120",
        "DNABOT_ANSWER_WORKERS": str(WORKERS),
        "DNABOT_ANSWER_QUEUE": "40",
        "DNABOT_ANSWER_PER_USER": str(PER_USER),
        "DNABOT_ANSWER_PER_CHANNEL": str(PER_CHANNEL),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    settings = get_settings()
    asyncio.run(services.sync(settings.model_copy(update={"openai_base_url": None, "openai_api_key": None})))
    fake_llm.script([{"hold": True}] * 100)  # every question's first LLM turn waits for the test
    handle = run_in_thread(create_http_app(settings))
    client = httpx.Client(trust_env=False, timeout=10)
    try:
        yield Bot(handle.url, settings, slack_api, om_demo, client)
    finally:
        fake_llm.release()
        answers.shutdown(wait=True, timeout=30)
        client.close()
        handle.stop()
        get_settings.cache_clear()


def mention(bot: Bot, channel: str, user: str, text: str = "why did stg_orders break?") -> Asked:
    ts = bot.slack.user_message(channel, f"<@UBOT> {text}", user=user)
    ack = bot.post(app_mention_event(f"<@UBOT> {text}", user=user, channel=channel, ts=ts))
    assert ack.status_code == 200
    return Asked(channel, user, ts)


def replies(bot: Bot, asked: Asked) -> list[dict]:
    """The bot's messages in the thread of `asked`."""
    return [m for m in bot.slack.thread(asked.channel, asked.ts) if m["ts"] != asked.ts]


def answered(bot: Bot, asked: Asked) -> dict | None:
    """The answer that replaced the placeholder, once there is one."""
    done = [m for m in replies(bot, asked) if m.get("text") != PLACEHOLDER]
    return done[0] if done else None


def llm_calls(fake_llm) -> int:
    return len(fake_llm.requests)


def test_help_is_answered_while_more_slow_mentions_than_the_listener_pool_holds_wait(bot, fake_llm):
    crowd = [mention(bot, f"CBUSY{i}", f"UBUSY{i}") for i in range(CROWD)]
    wait_until(lambda: llm_calls(fake_llm) >= WORKERS, 15, "the first questions reach the LLM")

    ack = bot.post(slash_command("help", user="UOTHER", response_url=bot.slack.response_url("help")))
    assert ack.status_code == 200, ack.text
    [reply] = bot.slack.wait_for(lambda: bot.slack.responses("help"), 10)
    assert reply["response_type"] == "ephemeral" and "/dna commands" in texts(reply["blocks"])
    assert all(answered(bot, asked) is None for asked in crowd)  # still held by the slow LLM

    fake_llm.release()
    for asked in crowd:
        answer = bot.slack.wait_for(lambda asked=asked: answered(bot, asked), 60)
        assert "stg_orders" in texts(answer.get("blocks"))
    assert llm_calls(fake_llm) == CROWD


def test_a_user_with_two_questions_in_progress_is_asked_to_wait_and_nothing_more_runs(bot, fake_llm):
    first, second = mention(bot, "CONE", "UEAGER"), mention(bot, "CTWO", "UEAGER")
    wait_until(lambda: llm_calls(fake_llm) == 2, 15, "both questions reach the LLM")

    third = mention(bot, "CTHREE", "UEAGER")
    [refusal] = bot.slack.wait_for(lambda: replies(bot, third), 10)
    assert "You already have 2 questions in progress; ask again when one is answered" in refusal["text"]
    bot.post(slash_command("why stg_orders", user="UEAGER", response_url=bot.slack.response_url("why")))
    [told] = bot.slack.wait_for(lambda: bot.slack.responses("why"), 10)
    assert told["response_type"] == "ephemeral" and "You already have 2 questions" in told["text"]
    other = mention(bot, "CTHREE", "UPATIENT")  # someone else is not held back by the eager user
    wait_until(lambda: llm_calls(fake_llm) == 3, 15, "another user's question reaches the LLM")

    fake_llm.release()
    for asked in (first, second, other):
        bot.slack.wait_for(lambda asked=asked: answered(bot, asked), 30)
    assert llm_calls(fake_llm) == 3 and replies(bot, third) == [refusal]  # no placeholder, no agent, no answer

    again = mention(bot, "CTHREE", "UEAGER")  # with the others answered, the user may ask again
    assert "stg_orders" in texts(bot.slack.wait_for(lambda: answered(bot, again), 30).get("blocks"))


def test_a_channel_with_three_questions_in_progress_asks_the_next_asker_to_wait(bot, fake_llm):
    busy = [mention(bot, "CBUSY", f"UASKER{i}") for i in range(PER_CHANNEL)]
    wait_until(lambda: llm_calls(fake_llm) == PER_CHANNEL, 15, "the channel's questions reach the LLM")

    late = mention(bot, "CBUSY", "ULATE")
    [refusal] = bot.slack.wait_for(lambda: replies(bot, late), 10)
    assert "This channel already has 3 questions in progress; ask again when one is answered" in refusal["text"]
    elsewhere = mention(bot, "CQUIET", "ULATE")  # the same user in another channel is answered

    fake_llm.release()
    for asked in (*busy, elsewhere):
        bot.slack.wait_for(lambda asked=asked: answered(bot, asked), 30)
    assert llm_calls(fake_llm) == PER_CHANNEL + 1 and replies(bot, late) == [refusal]
    scrape = bot.http.get(f"{bot.url}/metrics").text
    assert 'dnabot_questions_refused_total{reason="channel"}' in scrape and "dnabot_answers_waiting 0.0" in scrape


def test_a_failing_answer_is_reported_in_its_thread_and_the_pool_keeps_answering(bot, fake_llm, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("store exploded with token=xoxb-secret-in-error")

    working = services.why
    monkeypatch.setattr(services, "why", broken)
    failed = mention(bot, "CFAIL", "UFAIL")
    reply = bot.slack.wait_for(lambda: answered(bot, failed), 15)
    assert "Something went wrong (reference" in reply["text"] and "xoxb-secret" not in str(reply)
    bot.post(slash_command("why stg_orders", user="UFAIL", response_url=bot.slack.response_url("fail")))
    [told] = bot.slack.wait_for(lambda: bot.slack.responses("fail"), 15)
    assert "Something went wrong (reference" in told["text"]

    monkeypatch.setattr(services, "why", working)
    fake_llm.release()
    after = mention(bot, "CFAIL", "UFAIL")  # the failures were counted off: the same user is answered
    assert "stg_orders" in texts(bot.slack.wait_for(lambda: answered(bot, after), 30).get("blocks"))


def test_a_shutdown_finishes_the_questions_it_took_and_refuses_new_ones():
    pool = answers.AnswerPool(workers=1, queue=1, per_user=5, per_channel=5)
    gate, done = threading.Event(), []
    assert pool.submit(lambda: (gate.wait(10), done.append("running")), user="U1", channel="C1") is None
    assert pool.submit(lambda: done.append("queued"), user="U2", channel="C1") is None
    full = pool.submit(lambda: done.append("too many"), user="U3", channel="C2")
    assert full is not None and full.reason == "queue" and "ask again" in full.text

    closer = threading.Thread(target=pool.shutdown, kwargs={"wait": True, "timeout": 10})
    closer.start()

    def refused_as_closed() -> bool:
        refused = pool.submit(lambda: done.append("after close"), user="U4", channel="C3")
        return refused is not None and refused.reason == "closed"

    wait_until(refused_as_closed, 10, "the pool takes no more questions")
    gate.set()
    closer.join(15)
    assert not closer.is_alive() and done == ["running", "queued"]
