"""The daily digest: a pure Block Kit summary per channel, and one post per routed channel in the fake Slack."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger

from bot.blocks.kit import FIELD_TEXT, HEADER_TEXT, MESSAGE_BLOCKS, SECTION_TEXT
from bot.core import services
from bot.core.routing import Router
from bot.core.settings import get_settings
from bot.core.slack_client import build_client
from bot.delivery.digest import DIGEST_TOP, NONE_OPEN, post_digests, render_digest
from bot.runtime import serve as runtime
from storage.openmetadata.fqn import url_segment
from tests.bot.test_blocks import make_incident
from tests.bot.test_cli import rename_status

NOW = datetime(2024, 5, 2, 9, 0, tzinfo=UTC)
DEFAULT = "C0INCIDENTS"
ANALYTICS = "C0ANALYTICS"
ANALYTICS_ORDERS = "warehouse.shop.analytics.orders"


def texts(blocks: Any) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def check_limits(blocks: list[dict[str, Any]]) -> None:
    assert len(blocks) <= MESSAGE_BLOCKS
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= HEADER_TEXT
        if block["type"] == "section":
            assert len((block.get("text") or {}).get("text", "")) <= SECTION_TEXT
            assert len(block.get("fields") or []) <= 10
            assert all(len(f["text"]) <= FIELD_TEXT for f in block.get("fields") or [])


def many(count: int) -> list[Any]:
    severities = ("SEV1", "SEV2", "SEV3")
    statuses = ("open", "acknowledged", "snoozed")
    return [
        make_incident(
            id=100 + n,
            severity=severities[n % 3],
            status=statuses[n % 3],
            title=f"incident {n} " + "x" * 500,  # long titles are clipped
            opened_at=NOW - timedelta(hours=n + 1),
        )
        for n in range(count)
    ]


def test_no_open_incidents_says_so():
    blocks = render_digest([], channel=DEFAULT, now=NOW)
    assert [b["type"] for b in blocks] == ["header", "section", "context"]
    assert blocks[0]["text"]["text"] == ":sunrise: Daily incident digest"
    assert blocks[1]["text"]["text"] == NONE_OPEN == "No open incidents. 🎉"
    assert f"<#{DEFAULT}>" in blocks[2]["elements"][0]["text"]
    # resolved incidents passed by mistake do not count as open
    assert render_digest([make_incident(status="resolved")], channel=DEFAULT, now=NOW) == blocks


def test_one_incident_shows_counts_status_and_age():
    incident = make_incident(id=7, severity="SEV2", status="acknowledged", opened_at=NOW - timedelta(days=2, hours=3))
    blocks = render_digest([incident], channel="#data-incidents", now=NOW)
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]
    summary = blocks[1]
    assert summary["text"]["text"] == "*1 open incident* in #data-incidents"
    assert [f["text"] for f in summary["fields"]] == [":large_orange_circle: *SEV2*: 1"]
    row = blocks[2]["text"]["text"]
    assert row.startswith(":large_orange_circle: *#7* stg_orders.status renamed")
    assert ":eyes: acknowledged · open for 2d 3h" in row and "`warehouse.shop.staging.stg_orders.status`" in row
    assert "…and" not in texts(blocks)


def test_thirty_incidents_are_counted_and_cut_to_the_top_ten():
    incidents = many(30)
    blocks = render_digest(incidents, channel=DEFAULT, now=NOW)
    check_limits(blocks)
    assert [b["type"] for b in blocks] == ["header", "section", *["section"] * DIGEST_TOP, "context", "context"]
    summary = blocks[1]
    assert summary["text"]["text"] == f"*30 open incidents* in <#{DEFAULT}>"
    assert [f["text"] for f in summary["fields"]] == [
        ":red_circle: *SEV1*: 10",
        ":large_orange_circle: *SEV2*: 10",
        ":large_yellow_circle: *SEV3*: 10",
    ]
    rows = [b["text"]["text"] for b in blocks[2 : 2 + DIGEST_TOP]]
    # all ten SEV1 first, the longest open first: #127 (28 h) … #100 (1 h)
    assert [r.split("*")[1] for r in rows] == [f"#{100 + n}" for n in range(27, -1, -3)]
    assert all(r.startswith(":red_circle:") for r in rows)
    assert "open for 1d 4h" in rows[0] and "open for 1h 0m" in rows[-1]
    assert ":rotating_light: open" in rows[0] and "…" in rows[0]  # the 500-char title was clipped
    assert blocks[-2]["elements"][0]["text"].startswith("…and 20 more")
    # the renderer is pure and order-independent
    assert render_digest(list(reversed(incidents)), channel=DEFAULT, now=NOW) == blocks


def test_many_made_up_severities_stay_within_ten_fields():
    incidents = [make_incident(id=n, severity=f"P{n:02d}") for n in range(14)]
    blocks = render_digest(incidents, channel=DEFAULT, now=NOW)
    check_limits(blocks)
    assert blocks[1]["fields"][-1]["text"] == "…and 5 more"


# ------------------------------------------------------------------------------------------------ posting


@pytest.fixture
def settings(bot_env):
    return bot_env(DNABOT_CHANNEL=DEFAULT)


def _summary(message: dict[str, Any]) -> str:
    return message["blocks"][1]["text"]["text"]


def test_post_digests_sends_one_digest_per_routed_channel(settings, om_demo, slack_api):
    asyncio.run(services.sync(settings))
    rename_status(om_demo)  # staging: the default channel
    om_demo.admin("POST", f"/admin/tables/{url_segment(ANALYTICS_ORDERS)}/columns/status/rename", {"newName": "state"})
    asyncio.run(services.sync(settings))
    open_ = services.incidents_list(settings, "open")
    analytics = [i for i in open_ if ".analytics." in i.root_fqn]
    others = [i for i in open_ if ".analytics." not in i.root_fqn]
    assert analytics and others, [i.root_fqn for i in open_]

    router = Router.from_mapping(
        {"rules": [{"match": {"fqn": "*.analytics.*"}, "channel": ANALYTICS}]}, default_channel=DEFAULT
    )
    posted = post_digests(settings, build_client(settings), router, now=datetime.now(UTC))

    # stg_orders (renamed) and stg_customers (the test incident OpenMetadata had open) vs analytics.orders
    assert posted == {DEFAULT: len(others), ANALYTICS: len(analytics)} == {DEFAULT: 2, ANALYTICS: 1}
    for channel, count in posted.items():
        [digest] = slack_api.messages(channel)
        noun = "incident" if count == 1 else "incidents"
        assert _summary(digest) == f"*{count} open {noun}* in <#{channel}>"
        assert digest["text"].startswith(f"Daily incident digest: {count} open")
        assert len([b for b in digest["blocks"] if b["type"] == "section"]) == 1 + min(count, DIGEST_TOP)
    assert "stg_orders" in texts(slack_api.messages(DEFAULT)[0]["blocks"])


def test_the_default_channel_gets_a_digest_even_with_nothing_open(settings, om_demo, slack_api):
    asyncio.run(services.sync(settings))
    router = Router.from_mapping({"rules": [{"match": {"fqn": "*"}, "channel": ANALYTICS}]}, default_channel=DEFAULT)
    open_ = services.incidents_list(settings, "open")
    posted = post_digests(settings, build_client(settings), router, now=datetime.now(UTC))
    assert posted == {DEFAULT: 0, **({ANALYTICS: len(open_)} if open_ else {})}
    [digest] = slack_api.messages(DEFAULT)
    assert digest["blocks"][1]["text"]["text"] == NONE_OPEN


def test_a_channel_slack_refuses_does_not_stop_the_others(settings, om_demo, slack_api):
    asyncio.run(services.sync(settings))
    rename_status(om_demo)
    asyncio.run(services.sync(settings))
    open_ = services.incidents_list(settings, "open")
    router = Router.from_mapping({"rules": [{"match": {"fqn": "*"}, "channel": ANALYTICS}]}, default_channel=DEFAULT)
    slack_api.fail("chat.postMessage", error="not_in_channel", times=1)  # the first post (the default channel)
    posted = post_digests(settings, build_client(settings), router, now=datetime.now(UTC))
    assert posted == {ANALYTICS: len(open_)} and slack_api.messages(DEFAULT) == []


def test_the_scheduler_runs_the_digest_daily_at_the_configured_hour(settings, monkeypatch):
    monkeypatch.setenv("DNABOT_DIGEST_HOUR_UTC", "7")
    get_settings.cache_clear()
    settings = get_settings()
    notifier = runtime.notifier_for(settings, build_client(settings))
    monkeypatch.setattr(runtime, "tick", lambda *a: None)  # the tick job is not under test here
    scheduler = runtime.start_scheduler(settings, notifier)
    try:
        job = scheduler.get_job("dnabot-digest")
        assert isinstance(job.trigger, CronTrigger)
        assert job.func.__name__ == "digest"  # Replica.digest: the leader posts it, keyed by channel and day
        fields = {f.name: str(f) for f in job.trigger.fields}
        assert fields["hour"] == "7" and fields["minute"] == "0"
        assert str(job.trigger.timezone) == "UTC"
        first = job.next_run_time
        assert (first.hour, first.minute) == (7, 0) and first.utcoffset() == timedelta(0)
    finally:
        scheduler.shutdown(wait=False)


def test_the_digest_hour_is_validated(monkeypatch):
    monkeypatch.setenv("DNABOT_DIGEST_HOUR_UTC", "24")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="DNABOT_DIGEST_HOUR_UTC"):
        get_settings()
    get_settings.cache_clear()
