"""Masking secrets in any text that is stored or shown: given secret values, tokens, bearer tokens, URL passwords."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
# Slack tokens (bot, user, app, config) must never reach a message, even inside an exception's text.
_SLACK_TOKEN = re.compile(r"\bx(?:ox[a-z]|app|oxe\.xox[a-z])-[A-Za-z0-9-]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_ASSIGNED = re.compile(r"(?i)\b((?:access_|api_?|auth_)?(?:token|key|password|secret)\s*[:=]\s*)[^\s&,;'\"]+")
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s/@]*@", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_SHORTEST_SECRET = 4  # shorter values would mask ordinary words
# A secret is masked only where it stands whole: not inside a longer word or token, so the secret "dev1" leaves
# "dev10" alone and "plan" leaves "explanation" alone. A value glued to these characters is another value.
_WORD_CHARS = "A-Za-z0-9_-"
_WORD = re.compile(f"[{_WORD_CHARS}]")


def _pattern(secret: str) -> str:
    head = f"(?<![{_WORD_CHARS}])" if _WORD.match(secret[0]) else ""
    tail = f"(?![{_WORD_CHARS}])" if _WORD.match(secret[-1]) else ""
    return head + re.escape(secret) + tail


def _forms(secret: str) -> set[str]:
    """The secret as written, URL-encoded (in a query string) and JSON-escaped (inside a quoted body)."""
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}


def secrets_pattern(secrets: Iterable[str], shortest: int = 1) -> re.Pattern[str] | None:
    """One regex for every form of every secret at least `shortest` long, each matching only whole occurrences
    (longest first, so a secret containing another is masked whole); None when there is nothing to mask."""
    values = sorted({f for s in secrets if s and len(s) >= shortest for f in _forms(s)}, key=len, reverse=True)
    return re.compile("|".join(_pattern(v) for v in values)) if values else None


def mask_secrets(text: str, secrets: Iterable[str], shortest: int = 1) -> str:
    """`text` with every whole occurrence of each secret (as written, URL-encoded or JSON-escaped) masked."""
    pattern = secrets_pattern(secrets, shortest)
    return pattern.sub(MASK, text) if pattern is not None else text


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secret values and anything shaped like a token or a URL password masked."""
    text = mask_secrets(text, secrets, _SHORTEST_SECRET)
    text = _SLACK_TOKEN.sub("x***-redacted", text)
    text = _JWT.sub(MASK, text)
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    return _ASSIGNED.sub(rf"\1{MASK}", text)
