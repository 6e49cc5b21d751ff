"""DNA Bot over real HTTP: signed requests in, what the user sees in the fake Slack out (commands, home, metrics)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bot.blocks import incident_value, render_incident_card
from bot.core import services
from bot.core.settings import Settings, get_settings
from bot.runtime.http import create_http_app
from simulator import run_in_thread
from storage.openmetadata.fqn import url_segment
from tests.fakes.slack import SlackAPI
from tests.fakes.slack_signing import app_home_opened, signed_headers, slash_command

SECRET = "test-signing-secret"
ADMIN = "UADMIN"
STG_ORDERS = "warehouse.shop.staging.stg_orders"


@dataclass
class Bot:
    """A running bot: POST signed bodies to it, reach its settings and the fake Slack."""

    url: str
    settings: Settings
    slack: SlackAPI
    om: Any
    http: httpx.Client

    def post(self, body: tuple[str, str], *, secret: str = SECRET, timestamp: int | None = None) -> httpx.Response:
        text, content_type = body
        headers = signed_headers(text, content_type, secret, timestamp)
        return self.http.post(f"{self.url}/slack/events", content=text.encode(), headers=headers)

    def sync(self) -> Any:
        return asyncio.run(services.sync(self.settings))

    def rename_status(self) -> int:
        path = f"/admin/tables/{url_segment(STG_ORDERS)}/columns/status/rename"
        self.om.admin("POST", path, {"newName": "order_state"})
        [incident_id] = self.sync().incidents["opened"]
        return incident_id

    def post_card(self, incident_id: int, channel: str = "C1") -> str:
        """Post the incident's card the way the notifier would; returns its ts."""
        incident = services.incident_detail(self.settings, incident_id).incident
        blocks = render_incident_card(incident)
        reply = self.http.post(
            f"{self.slack.url}chat.postMessage",
            headers={"Authorization": f"Bearer {self.slack.token}"},
            json={"channel": channel, "text": incident.title, "blocks": blocks},
        )
        return reply.json()["ts"]

    def value(self, incident_id: int, **extra: Any) -> str:
        return incident_value(services.incident_detail(self.settings, incident_id).incident, **extra)


@pytest.fixture
def bot(slack_api, om_demo, tmp_path, monkeypatch) -> Iterator[Bot]:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TAVILY_API_KEY", "BRIGHTDATA_API_TOKEN", "DNABOT_MCP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    monkeypatch.setenv("OPENMETADATA_URL", om_demo.url)
    monkeypatch.setenv("OPENMETADATA_TOKEN", om_demo.token)
    monkeypatch.setenv("SLACK_API_URL", slack_api.url)
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack_api.token)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("DNABOT_ADMINS", f"{ADMIN},UOTHERADMIN")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    settings = get_settings()
    asyncio.run(services.sync(settings))
    handle = run_in_thread(create_http_app(settings))
    client = httpx.Client(trust_env=False, timeout=10)
    try:
        yield Bot(handle.url, settings, slack_api, om_demo, client)
    finally:
        client.close()
        handle.stop()
        get_settings.cache_clear()


def texts(blocks: list[dict[str, Any]] | None) -> str:
    """Everything readable in some blocks, for assertions on what the user sees."""
    return json.dumps(blocks or [], ensure_ascii=False)


# ------------------------------------------------------------------------------------------------ tests


def test_bad_signatures_and_stale_timestamps_are_refused(bot):
    body = slash_command("help", response_url=bot.slack.response_url("r"))
    assert bot.post(body, secret="not-the-secret").status_code == 401
    assert bot.post(body, timestamp=int(time.time()) - 600).status_code == 401
    assert bot.slack.responses("r") == []


def test_help_is_acked_at_once_then_answered_through_the_response_url(bot):
    started = time.monotonic()
    ack = bot.post(slash_command("help", response_url=bot.slack.response_url("help")))
    assert ack.status_code == 200 and time.monotonic() - started < 3
    [reply] = bot.slack.wait_for(lambda: bot.slack.responses("help"))
    assert reply["response_type"] == "ephemeral" and "/dna commands" in texts(reply["blocks"])


def test_the_command_is_acked_before_the_work_is_done(bot):
    gate = threading.Event()
    original = services.dna

    def slow_dna(*args, **kwargs):
        gate.wait(5)
        return original(*args, **kwargs)

    services.dna = slow_dna
    try:
        ack = bot.post(slash_command("show stg_orders", response_url=bot.slack.response_url("slow")))
        assert ack.status_code == 200 and bot.slack.responses("slow") == []  # answered before the work ran
        gate.set()
        bot.slack.wait_for(lambda: bot.slack.responses("slow"))
    finally:
        services.dna = original


def test_show_answers_a_dna_card_privately_unless_asked_public(bot):
    bot.post(slash_command("show stg_orders", response_url=bot.slack.response_url("show")))
    [card] = bot.slack.wait_for(lambda: bot.slack.responses("show"))
    assert card["response_type"] == "ephemeral" and STG_ORDERS in texts(card["blocks"])
    assert "rust" in texts(card["blocks"])  # the trust score
    bot.post(slash_command("show stg_orders public", response_url=bot.slack.response_url("pub")))
    [public] = bot.slack.wait_for(lambda: bot.slack.responses("pub"))
    assert public["response_type"] == "in_channel"


def test_an_unknown_dataset_gets_a_private_did_you_mean(bot):
    bot.post(slash_command("show ordrs", response_url=bot.slack.response_url("nf")))
    [reply] = bot.slack.wait_for(lambda: bot.slack.responses("nf"))
    assert reply["response_type"] == "ephemeral"
    assert "Did you mean" in texts(reply["blocks"]) and "orders" in texts(reply["blocks"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "Tell me what to do"),
        ("frobnicate x", "I don't know"),
        ("timeline stg_orders 7 fortnights", "span"),
        ("show " + "x" * 600, "at most 500"),
        ("subscribe", "Usage"),
        ("sync", "only DNA Bot admins"),
    ],
)
def test_bad_or_unavailable_input_gets_a_private_hint(bot, text, expected):
    bot.post(slash_command(text, response_url=bot.slack.response_url("hint")))
    [reply] = bot.slack.wait_for(lambda: bot.slack.responses("hint"))
    assert reply["response_type"] == "ephemeral" and expected in texts(reply["blocks"])


def test_blast_timeline_incidents_and_status_after_a_breaking_rename(bot):
    incident_id = bot.rename_status()
    bot.post(slash_command("blast stg_orders status", response_url=bot.slack.response_url("blast")))
    [blast] = bot.slack.wait_for(lambda: bot.slack.responses("blast"))
    assert "looker.sales_overview" in texts(blast["blocks"]) or "Sales overview" in texts(blast["blocks"])
    bot.post(slash_command("timeline stg_orders 1d", response_url=bot.slack.response_url("tl")))
    [timeline] = bot.slack.wait_for(lambda: bot.slack.responses("tl"))
    assert "order_state" in texts(timeline["blocks"])
    bot.post(slash_command("incidents", response_url=bot.slack.response_url("inc")))
    [listed] = bot.slack.wait_for(lambda: bot.slack.responses("inc"))
    assert f"*#{incident_id}*" in texts(listed["blocks"]) and "renamed" in texts(listed["blocks"])
    bot.post(slash_command("status", response_url=bot.slack.response_url("st")))
    [status] = bot.slack.wait_for(lambda: bot.slack.responses("st"))
    assert "Last good sync" in texts(status["blocks"]) and "SEV1: 1" in texts(status["blocks"])


def test_an_admin_can_sync_from_slack(bot):
    bot.post(slash_command("sync", user=ADMIN, response_url=bot.slack.response_url("sync")))
    replies = bot.slack.wait_for(lambda: len(bot.slack.responses("sync")) >= 2 and bot.slack.responses("sync"), 30)
    assert "Syncing" in replies[0]["text"] and "done in" in texts(replies[1]["blocks"])


def test_app_home_publishes_trust_incidents_and_the_last_sync(bot):
    bot.rename_status()
    assert bot.post(app_home_opened("U7")).status_code == 200
    [view] = bot.slack.wait_for(lambda: bot.slack.views_published("U7"))
    seen = texts(view["blocks"])
    assert view["type"] == "home" and "Lowest trust" in seen and "Open incidents (2)" in seen
    assert ":white_check_mark: Last good sync" in seen and "ago (incremental, run #2)" in seen


def test_healthz_and_metrics_report_the_last_sync(bot):
    bot.rename_status()
    health = bot.http.get(f"{bot.url}/healthz")
    assert health.status_code == 200 and health.json()["last_sync"]["status"] == "succeeded"
    metrics = bot.http.get(f"{bot.url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'dnabot_open_incidents{severity="SEV1"} 1' in metrics.text
    assert "dnabot_last_sync_duration_seconds " in metrics.text and "dnabot_last_sync_success 1" in metrics.text
    assert bot.slack.token not in metrics.text + health.text
