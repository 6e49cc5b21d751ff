"""The Slack app manifest an admin pastes into Slack: valid YAML with what the bot needs and no more."""

from __future__ import annotations

from pathlib import Path

import yaml

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"
LEAST_SCOPES = {
    "app_mentions:read",
    "chat:write",
    "commands",
    "users:read",
    "users:read.email",
    "usergroups:read",
    "files:write",
    "channels:history",
    "groups:history",
    "channels:read",
    "groups:read",
}


def load() -> dict:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def test_the_manifest_declares_the_command_events_home_and_interactivity():
    m = load()
    assert m["_metadata"]["major_version"] == 1
    assert m["display_information"]["name"] == "DNA Bot"
    [command] = m["features"]["slash_commands"]
    assert command["command"] == "/dna" and len(command["description"]) <= 100
    assert m["features"]["app_home"]["home_tab_enabled"] is True
    assert {"app_mention", "app_home_opened"} <= set(m["settings"]["event_subscriptions"]["bot_events"])
    assert m["settings"]["interactivity"]["is_enabled"] is True
    assert m["settings"]["socket_mode_enabled"] is True  # no public URL needed to try it


def test_the_manifest_asks_for_the_least_scopes_that_work():
    assert set(load()["oauth_config"]["scopes"]["bot"]) == LEAST_SCOPES
