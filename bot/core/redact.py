"""Masking secrets in text bound for Slack: the settings' secret values, plus `storage.redact`'s token shapes."""

from __future__ import annotations

import re

from pydantic import SecretStr

from bot.core.settings import Settings
from storage.redact import (  # noqa: F401 - re-exported: the bot's modules import the masking from here
    _ASSIGNED,
    _BEARER,
    _JWT,
    _SHORTEST_SECRET,
    _SLACK_TOKEN,
    _URL_PASSWORD,
    MASK,
    scrub,
)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the settings hold (tokens, keys, the signing secret, the database password)."""
    values = [v.get_secret_value() for v in vars(settings).values() if isinstance(v, SecretStr)]
    if settings.database_url and "@" in settings.database_url:
        from sqlalchemy.engine import make_url  # only to read the password out of the URL

        try:
            password = make_url(settings.database_url).password
        except Exception:  # an unparsable URL has no password we could find
            password = None
        if password:
            values.append(str(password))
    return sorted({v for v in values if len(v) >= _SHORTEST_SECRET}, key=len, reverse=True)


def scrub_for(settings: Settings, text: str) -> str:
    """`text` masked for every secret of `settings` (and every token shape)."""
    return scrub(text, secrets_of(settings))


INTERNAL = "[internal address]"  # what non-admins see instead of a URL or host:port
# Internal addresses: URLs (up to a closing ": " or quote), [IPv6]:port, IPv4 (with or without a port), host:port.
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>|]+?(?=[:,;.)]?(?:\s|$)|['\"<>|])", re.IGNORECASE)
_ADDRESS = re.compile(
    r"(?<![\w.:/\[-])(?:\[[0-9A-Fa-f:.]+\](?::\d{1,5})?|\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?"
    r"|[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*:\d{2,7})(?![\w:]|\.\w)"
)


def hide_internal(text: str) -> str:
    """`text` with every URL, IP address and host:port replaced by `INTERNAL` (for users who are not admins)."""
    return _ADDRESS.sub(INTERNAL, _URL.sub(INTERNAL, text))


# Every secret of every Settings the process built an app from: error replies are made far from the settings
# (Bolt's error handler, the `reported` wrapper), and must still mask the configured values, not only token shapes.
_KNOWN: set[str] = set()


def remember(settings: Settings) -> None:
    """Add the secrets of `settings` to those every error reply masks (called where the app is wired)."""
    _KNOWN.update(secrets_of(settings))


def known() -> list[str]:
    """The secrets `remember` collected, longest first."""
    return sorted(_KNOWN, key=len, reverse=True)
