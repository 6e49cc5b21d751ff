"""Small Slack mrkdwn text helpers with no Block Kit in them: escaping, Slack's length units, clipping, durations."""

from __future__ import annotations

from typing import Any


def esc(value: Any) -> str:
    """Metadata as mrkdwn-safe text: `&`, `<` and `>` escaped so names can never become mentions or links."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def units(text: str) -> int:
    """The length Slack counts: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-16 code units, ending in "…" when cut (never halfway through an emoji)."""
    if len(text) <= limit and units(text) <= limit:
        return text
    head = text.encode("utf-16-le")[: 2 * max(0, limit - 1)].decode("utf-16-le", errors="ignore")
    return head.rstrip() + "…"


def ago(seconds: float) -> str:
    """A short duration: 45s, 12m, 3h 5m, 2d 4h."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"
