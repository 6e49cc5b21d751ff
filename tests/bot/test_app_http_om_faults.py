"""OpenMetadata down or hanging while people use the bot over real HTTP: every command and mention is still
answered at once from the last good data, and a sync started from Slack reports its failure plainly."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from bot.runtime.http import create_http_app
from simulator import run_in_thread
from tests.bot import test_app_http
from tests.bot.test_app_http import ADMIN, STG_ORDERS, Bot, texts
from tests.fakes.slack_signing import app_mention_event, slash_command

bot = test_app_http.bot  # a running bot whose store holds a good sync of the demo catalog
ANSWER_SECONDS = 3.0


@pytest.fixture
def refused_url() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # accepts, never answers
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def replica(bot) -> Iterator[Callable[..., Bot]]:
    """`replica(**settings)`: one more HTTP replica on the same store and Slack, its settings changed."""
    with ExitStack() as stack:

        def start(**changes: Any) -> Bot:
            settings = bot.settings.model_copy(update=changes)
            handle = run_in_thread(create_http_app(settings))
            stack.callback(handle.stop)
            client = stack.enter_context(httpx.Client(trust_env=False, timeout=30))
            return Bot(handle.url, settings, bot.slack, bot.om, client)

        yield start


def ask(bot: Bot, text: str, *, user: str = "U2", count: int = 1, timeout: float = ANSWER_SECONDS) -> list[dict]:
    """`/dna text`; the first `count` replies posted to its response_url, within `timeout`."""
    rid = f"omf-{time.monotonic_ns()}"
    assert bot.post(slash_command(text, user=user, response_url=bot.slack.response_url(rid))).status_code == 200
    return bot.slack.wait_for(lambda: len(bot.slack.responses(rid)) >= count and bot.slack.responses(rid), timeout)


def mention(bot: Bot, text: str, timeout: float = ANSWER_SECONDS) -> dict:
    ts = bot.slack.user_message("C1", f"<@UBOT> {text}")
    assert bot.post(app_mention_event(f"<@UBOT> {text}", ts=ts)).status_code == 200
    return bot.slack.wait_for(lambda: [m for m in bot.slack.thread("C1", ts) if m.get("edited")], timeout)[0]


def test_with_openmetadata_down_everything_answers_from_the_last_good_data(bot, replica, refused_url):
    incident_id = bot.rename_status()
    down = replica(openmetadata_url=refused_url, om_max_retries=0)

    [card] = ask(down, "show stg_orders")
    assert STG_ORDERS in texts(card["blocks"]) and "order_state" in texts(card["blocks"])
    [blast] = ask(down, "blast stg_orders")
    assert "looker.sales_overview" in texts(blast["blocks"]) or "Sales overview" in texts(blast["blocks"])
    [listed] = ask(down, "incidents")
    assert f"*#{incident_id}*" in texts(listed["blocks"])
    [why] = ask(down, "why stg_orders")
    assert "order_state" in texts(why["blocks"])
    assert "order_state" in texts(mention(down, "why did stg_orders break?")["blocks"])

    started, syncing = time.monotonic(), ask(down, "sync", user=ADMIN, count=2, timeout=15)
    result = texts(syncing[1]["blocks"])
    assert "Syncing" in syncing[0]["text"] and "failed" in result and "cannot reach OpenMetadata" in result
    assert time.monotonic() - started < 10
    [status] = ask(down, "status")
    seen = texts(status["blocks"])
    assert "Last good sync" in seen and "cannot reach OpenMetadata" in seen and "SEV1: 1" in seen
    everything = json.dumps([c.args for c in bot.slack.calls()]) + result + seen
    assert bot.om.token not in everything and "Traceback" not in everything


def test_while_a_sync_hangs_on_openmetadata_commands_still_answer_at_once(bot, replica, silent_url):
    hanging = replica(openmetadata_url=silent_url, om_timeout_seconds=2.0, om_max_retries=1)
    rid = "hanging-sync"
    started = time.monotonic()
    sync = slash_command("sync", user=ADMIN, response_url=bot.slack.response_url(rid))
    assert hanging.post(sync).status_code == 200
    bot.slack.wait_for(lambda: bot.slack.responses(rid))  # "Syncing…": the sync is now waiting on OpenMetadata

    for text in ("show stg_orders", "status", "incidents", "timeline stg_orders 7d"):
        asked = time.monotonic()
        [reply] = ask(hanging, text)
        assert time.monotonic() - asked < ANSWER_SECONDS, text
        assert "Something went wrong" not in texts(reply["blocks"])
    assert len(bot.slack.responses(rid)) == 1, "the sync finished before the commands were tried"

    [_, done] = bot.slack.wait_for(lambda: len(bot.slack.responses(rid)) >= 2 and bot.slack.responses(rid), 30)
    assert "failed" in texts(done["blocks"]) and "Timeout" in texts(done["blocks"])
    assert time.monotonic() - started < 30
