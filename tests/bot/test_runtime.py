"""The scheduled tick of `dnabot serve`: sync, incidents, and one Slack thread per incident, nothing doubled."""

from __future__ import annotations

import asyncio

import pytest

from bot.core import services
from bot.core.settings import get_settings
from bot.core.slack_client import build_client
from bot.runtime import serve as runtime
from storage.errors import DnaBotError
from tests.bot.test_cli import rename_status

CHANNEL = "C0INCIDENTS"


@pytest.fixture
def settings(bot_env):
    return bot_env(DNABOT_CHANNEL=CHANNEL)


def test_each_tick_syncs_and_keeps_one_thread_per_incident(settings, om_demo, slack_api):
    notifier = runtime.notifier_for(settings, build_client(settings))
    first = runtime.tick(settings, notifier)
    assert first.errors == [] and first.sync["status"] == "succeeded"
    # the first sync takes over the test incident OpenMetadata already has open: one card
    assert len(slack_api.parents(CHANNEL)) == 1

    rename_status(om_demo)
    second = runtime.tick(settings, notifier)
    assert second.errors == [] and len(second.published.posted) == 1
    parents = slack_api.parents(CHANNEL)
    assert len(parents) == 2
    card = parents[-1]
    assert card["metadata"]["event_type"] == "dnabot_incident"
    replies = slack_api.thread(CHANNEL, card["ts"])[1:]
    assert replies and any(f["thread_ts"] == card["ts"] for f in slack_api.files)

    third = runtime.tick(settings, notifier)  # nothing new upstream: nothing new in Slack
    assert third.errors == [] and third.published.posted == [] and len(slack_api.parents(CHANNEL)) == 2


def test_a_failed_sync_still_publishes_and_says_why(settings, om_demo, slack_api, monkeypatch):
    monkeypatch.setenv("DNABOT_OM_MAX_RETRIES", "0")
    get_settings.cache_clear()
    settings = get_settings()
    notifier = runtime.notifier_for(settings, build_client(settings))
    om_demo.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/tables", "status": 500, "times": 1000})
    result = runtime.tick(settings, notifier)
    assert result.errors and "sync failed" in result.errors[0]
    assert result.published is not None  # Slack is still brought up to date from the last good data


def test_serving_needs_a_channel_and_the_right_token(settings, monkeypatch):
    monkeypatch.delenv("DNABOT_CHANNEL")
    get_settings.cache_clear()
    with pytest.raises(DnaBotError, match="DNABOT_CHANNEL"):
        runtime.router_for(get_settings())


def test_a_run_whose_pipeline_failed_is_caught_up_by_the_next_sync(settings, om_demo, monkeypatch):
    """The sync committed, then the incident pipeline failed (a database blip): the change must not be lost."""
    asyncio.run(services.sync(settings))
    rename_status(om_demo)
    working = services.process_incidents

    async def blip(*args, **kwargs):
        raise ConnectionError("the database went away")

    monkeypatch.setattr(services, "process_incidents", blip)
    with pytest.raises(ConnectionError):
        asyncio.run(services.sync(settings))
    assert not [i for i in services.incidents_list(settings, "open") if i.root_fqn.endswith("stg_orders")]

    monkeypatch.setattr(services, "process_incidents", working)
    again = asyncio.run(services.sync(settings))  # nothing new upstream: the missed run is processed first
    assert again.ok and "column_renamed" not in again.changes_by_kind
    [opened] = [i for i in services.incidents_list(settings, "open") if i.root_fqn.endswith("stg_orders")]
    assert opened.kind == "breaking_schema_change"
    asyncio.run(services.sync(settings))  # and only once
    assert len([i for i in services.incidents_list(settings, "all") if i.root_fqn.endswith("stg_orders")]) == 1
