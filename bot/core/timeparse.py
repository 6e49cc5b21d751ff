"""Parsing of the time arguments users type: ISO instants (`2026-11-20T09:00Z`) and spans (`7d`, `12h`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TimeArgError(ValueError):
    """A time argument that is neither an ISO instant nor a span like 7d."""


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant; a trailing Z or no zone at all means UTC. Always returns aware UTC."""
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise TimeArgError(f"'{text}' is not a time: use ISO 8601 such as 2026-11-20T09:00Z or 2026-11-20") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_span(text: str) -> timedelta:
    """A span such as 30m, 12h, 7d or 2w."""
    match = _SPAN.match(text)
    if not match:
        raise TimeArgError(f"'{text}' is not a span: use a number and a unit, such as 30m, 12h, 7d or 2w")
    try:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])
    except OverflowError:
        raise TimeArgError(f"'{text}' is too long a span: keep it under a few thousand years") from None


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`--since` accepts a span back from now (7d) or an instant."""
    now = now or datetime.now(UTC)
    try:
        return now - parse_span(text)
    except TimeArgError:
        pass
    except OverflowError:  # a valid span reaching before year 1
        raise TimeArgError(f"'{text}' reaches back before the year 1: use a shorter span") from None
    try:
        return parse_instant(text)
    except TimeArgError:
        raise TimeArgError(f"'{text}' is neither a span (7d, 12h) nor an instant (2026-11-20T09:00Z)") from None
