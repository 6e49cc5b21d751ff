"""DNABOT_ADMINS may name Slack user groups: their members are admins; a group Slack cannot resolve grants nothing."""

from __future__ import annotations

import pytest

from bot.core import authz
from bot.core.authz import NotAllowed
from bot.core.settings import Settings


def settings_for(slack_api, admins: str) -> Settings:
    """Fresh Settings: a fresh authz gate, so no cache is shared with another test."""
    return Settings(slack_api_url=slack_api.url, slack_bot_token=slack_api.token, admins=admins)


def test_members_of_an_admin_group_are_admins_and_the_lookup_is_cached(slack_api):
    slack_api.usergroups({"S0DATAOPS": ["U0ANA", "U0BEN"]})
    settings = settings_for(slack_api, "U0ROOT, S0DATAOPS")
    assert authz.admins(settings) == {"U0ROOT", "U0ANA", "U0BEN"}
    authz.require_admin(settings, "U0BEN", "only admins")  # allowed: no exception
    with pytest.raises(NotAllowed):
        authz.require_admin(settings, "U0EVE", "only admins")
    authz.admins(settings)
    assert len(slack_api.calls("usergroups.users.list")) == 1  # cached


def test_a_group_slack_cannot_resolve_grants_nothing(slack_api):
    settings = settings_for(slack_api, "S0UNKNOWN")
    assert authz.admins(settings) == set()
    with pytest.raises(NotAllowed):
        authz.require_admin(settings, "U0ANA", "only admins")
