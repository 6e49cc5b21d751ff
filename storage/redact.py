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
# A value this long is masked wherever it appears (even glued to other text: no word is that long by chance);
# a shorter one only where it stands whole, so the secret "dev1" does not turn "dev10" into "***0".
_ANYWHERE = 12


def _pattern(secret: str) -> str:
    escaped = re.escape(secret)
    if len(secret) >= _ANYWHERE:
        return escaped
    head = r"(?<![A-Za-z0-9_])" if secret[0].isalnum() or secret[0] == "_" else ""
    tail = r"(?![A-Za-z0-9_])" if secret[-1].isalnum() or secret[-1] == "_" else ""
    return head + escaped + tail


def _forms(secret: str) -> set[str]:
    """The secret as written, URL-encoded (in a query string) and JSON-escaped (inside a quoted body)."""
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secret values and anything shaped like a token or a URL password masked."""
    values = sorted({f for s in secrets if s and len(s) >= _SHORTEST_SECRET for f in _forms(s)}, key=len, reverse=True)
    if values:  # one pass, longest first, so a secret containing another is masked whole
        text = re.sub("|".join(_pattern(v) for v in values), MASK, text)
    text = _SLACK_TOKEN.sub("x***-redacted", text)
    text = _JWT.sub(MASK, text)
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    return _ASSIGNED.sub(rf"\1{MASK}", text)
