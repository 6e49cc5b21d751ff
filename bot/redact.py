"""Masking secrets in text bound for Slack: configured secret values, Slack tokens, bearer tokens, URL passwords."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import SecretStr

from bot.settings import Settings

MASK = "***"
# Slack tokens (bot, user, app, config) must never reach a message, even inside an exception's text.
_SLACK_TOKEN = re.compile(r"\bx(?:ox[a-z]|app|oxe\.xox[a-z])-[A-Za-z0-9-]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_ASSIGNED = re.compile(r"(?i)\b((?:access_|api_?|auth_)?(?:token|key|password|secret)\s*[:=]\s*)[^\s&,;'\"]+")
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s/@]*@", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_SHORTEST_SECRET = 4  # shorter values would mask ordinary words


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


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secret values and anything shaped like a token or a URL password masked."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    text = _SLACK_TOKEN.sub("x***-redacted", text)
    text = _JWT.sub(MASK, text)
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    return _ASSIGNED.sub(rf"\1{MASK}", text)
