"""Owners @-mentioned: OpenMetadata name → email (`people`) → Slack id (`users.lookupByEmail`), cached."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from slack_sdk import WebClient

from bot.core.mentions import SlackMentions
from bot.runtime import serve as runtime
from bot.slack.app import build_client
from storage.persistence.db import make_engine, session_factory
from storage.persistence.people import upsert_people
from storage.sync.fetch import PersonRecord
from tests.bot.test_cli import rename_status

CHANNEL = "C0INCIDENTS"


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    with session_factory(engine).begin() as session:
        upsert_people(
            session,
            [
                PersonRecord("ana", "user", "ana@shop.example", "Ana Souza"),
                PersonRecord("ben", "user", "ben@shop.example", "Ben Okafor"),
                PersonRecord("dev", "user", None, "Dev Patel"),
                PersonRecord("data-platform", "team", "data-platform@shop.example", "Data Platform"),
                PersonRecord("analytics", "team", None, "Analytics"),
            ],
            datetime.now(UTC),
        )
    yield engine
    engine.dispose()


def lookups(slack_api) -> list[str]:
    return [c.args.get("email") for c in slack_api.calls("users.lookupByEmail")]


def test_owners_are_mapped_by_email_and_lookups_are_cached(engine, slack_api):
    slack_api.users({"ana@shop.example": "U0ANA", "data-platform@shop.example": "S0PLATFORM"})
    mentions = SlackMentions(engine, WebClient(token=slack_api.token, base_url=slack_api.url))
    owners = ["ana", "ben", "dev", "data-platform", "analytics", "nobody"]
    assert mentions(owners) == {"ana": "U0ANA", "data-platform": "S0PLATFORM"}
    # ben is not in Slack (users_not_found, a miss); dev, analytics (no email) and nobody (unknown) are never looked up
    assert sorted(lookups(slack_api)) == ["ana@shop.example", "ben@shop.example", "data-platform@shop.example"]

    assert mentions(owners) == {"ana": "U0ANA", "data-platform": "S0PLATFORM"}
    assert len(lookups(slack_api)) == 3  # hits and misses both cached
    assert mentions([]) == {}


def test_a_slack_error_leaves_the_plain_name_and_is_retried(engine, slack_api):
    slack_api.users({"ana@shop.example": "U0ANA"})
    slack_api.fail("users.lookupByEmail", error="fatal_error", times=1)
    mentions = SlackMentions(engine, WebClient(token=slack_api.token, base_url=slack_api.url))
    assert mentions(["ana"]) == {}
    assert mentions(["ana"]) == {"ana": "U0ANA"}


@pytest.fixture
def settings(bot_env):
    return bot_env(DNABOT_CHANNEL=CHANNEL)


def test_the_card_after_a_rename_mentions_the_owner_found_by_email(settings, om_demo, slack_api):
    slack_api.users({"ben@shop.example": "U0BEN"})
    notifier = runtime.notifier_for(settings, build_client(settings))
    assert runtime.tick(settings, notifier).errors == []
    rename_status(om_demo)  # stg_orders, owned by ben
    second = runtime.tick(settings, notifier)
    assert second.errors == [] and len(second.published.posted) == 1
    card = slack_api.parents(CHANNEL)[-1]
    assert "<@U0BEN>" in json.dumps(card["blocks"])
