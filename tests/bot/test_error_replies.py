"""What a user is told when something fails: the configured secrets masked and no internal address shown."""

from __future__ import annotations

from bot.core import redact
from bot.core.settings import Settings
from bot.slack.listeners.errors import reply_for
from storage.errors import OMUnavailable


def test_an_openmetadata_failure_tells_the_user_what_broke_without_the_secret_or_the_address() -> None:
    settings = Settings(_env_file=None, OPENMETADATA_URL="http://om.internal.corp:8585", OPENMETADATA_TOKEN="tok3n")
    redact.remember(settings)  # as build_app does
    error = OMUnavailable("OpenMetadata at http://om.internal.corp:8585/api/v1 answered 502: upstream said tok3n")

    text, blocks = reply_for(error)

    shown = text + str(blocks)
    assert "OpenMetadata trouble" in shown and "answered 502" in shown
    assert "tok3n" not in shown
    assert "om.internal.corp" not in shown and "8585" not in shown
    assert "[internal address]" in shown
