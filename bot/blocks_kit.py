"""Block Kit building blocks shared by the renderers: escaping, truncation within Slack's limits, small builders."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.models.blocks import (
    ActionsBlock,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.blocks.block_elements import BlockElement, ButtonElement

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
SECTION_TEXT = 3000
FIELD_TEXT = 2000
HEADER_TEXT = 150
BUTTON_TEXT = 75
SECTION_FIELDS = 10
ACTIONS_ELEMENTS = 25
CONTEXT_ELEMENTS = 10

SEVERITY_EMOJI = {"SEV1": ":red_circle:", "SEV2": ":large_orange_circle:", "SEV3": ":large_yellow_circle:"}
SEVERITY_ORDER = ("SEV1", "SEV2", "SEV3", "SEV4")
STATUS_EMOJI = {
    "open": ":rotating_light:",
    "acknowledged": ":eyes:",
    "snoozed": ":zzz:",
    "resolved": ":white_check_mark:",
}

_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")


def severity_emoji(severity: str) -> str:
    return SEVERITY_EMOJI.get(severity, ":large_blue_circle:")


def esc(value: Any) -> str:
    """Metadata as mrkdwn-safe text: `&`, `<` and `>` escaped so names can never become mentions or links."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` chars, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def more(count: int) -> str:
    return f"…and {count} more"


def capped(lines: Sequence[str], limit: int) -> list[str]:
    """The first `limit` lines, plus "…and N more" for the rest."""
    return list(lines) if len(lines) <= limit else [*lines[:limit], more(len(lines) - limit)]


def join_capped(
    lines: Sequence[str], limit: int = SECTION_TEXT, *, max_lines: int | None = None, sep: str = "\n"
) -> str:
    """At most `max_lines` lines joined within `limit` chars; the lines left out are counted in "…and N more"."""
    total = len(lines)
    shown = total if max_lines is None else min(total, max_lines)
    out: list[str] = []
    size = 0
    for i, line in enumerate(lines[:shown]):
        rest = total - i - 1
        suffix = len(sep) + len(more(rest)) if rest else 0
        grown = size + (len(sep) if out else 0) + len(line)
        if grown + suffix <= limit:
            out.append(line)
            size = grown
        elif out:  # the previous step left room for exactly this suffix
            return sep.join([*out, more(total - i)])
        else:  # one over-long first line: cut it rather than show nothing
            return sep.join([clip(line, limit - suffix), *([more(rest)] if rest else [])])
    return sep.join([*out, more(total - shown)]) if shown < total else sep.join(out)


def code(value: Any) -> str:
    """Inline code for a name from metadata (backticks inside are swapped so they cannot close the span)."""
    return "`" + esc(value).replace("`", "'") + "`"


def code_block(text: str, limit: int = SECTION_TEXT - 200) -> str:
    body = clip(esc(text).replace("```", "'''"), limit)
    return f"```\n{body}\n```"


def mention(user: str | None, mentions: Mapping[str, str] | None = None, *, raw_ids: bool = True) -> str:
    """`<@U…>` (or `<!subteam^S…>` for a user group) through `mentions`, or for a Slack id itself when `raw_ids`;
    anything else is the escaped plain name."""
    if not user:
        return "nobody"
    slack_id = (mentions or {}).get(user) or (user if raw_ids else "")
    if _SLACK_USER.match(slack_id):
        return f"<@{slack_id}>"
    if _SLACK_GROUP.match(slack_id):
        return f"<!subteam^{slack_id}>"
    return esc(user)


def link(url: str | None, label: str) -> str:
    """A `<url|label>` link for http(s) URLs; anything else is shown as escaped text, never as markup."""
    if not url or urlsplit(url).scheme not in ("http", "https"):
        return esc(label)
    safe = url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C").replace(" ", "%20")
    return f"<{safe}|{esc(label).replace('|', '¦')}>"


def when(at: datetime | None) -> str:
    """A Slack date token that shows in each reader's time zone, with a UTC fallback."""
    if at is None:
        return "never"
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    fallback = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def utc(at: datetime | str | None) -> str:
    """A time as plain `YYYY-MM-DD HH:MM UTC` text (a time read from metadata, shown the same to everyone);
    "" when it is unknown or unreadable."""
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            return ""
    if not isinstance(at, datetime):
        return ""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


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


def short_name(fqn: str) -> str:
    return fqn.rsplit(".", 1)[-1] if fqn else fqn


# ------------------------------------------------------------------------------------------------ builders


def header(text: str) -> dict[str, Any]:
    return HeaderBlock(text=PlainTextObject(text=clip(" ".join(text.split()), HEADER_TEXT), emoji=True)).to_dict()


def section(
    text: str | None = None,
    *,
    fields: Iterable[str] = (),
    accessory: BlockElement | None = None,
    block_id: str | None = None,
) -> dict[str, Any]:
    """A mrkdwn section; text cut to 3000 chars, fields to 10 (the last one saying how many were left out)."""
    items = [f for f in fields if f]
    if len(items) > SECTION_FIELDS:
        items = [*items[: SECTION_FIELDS - 1], more(len(items) - SECTION_FIELDS + 1)]
    block = SectionBlock(
        text=MarkdownTextObject(text=clip(text, SECTION_TEXT)) if text else None,
        fields=[MarkdownTextObject(text=clip(f, FIELD_TEXT)) for f in items] or None,
        accessory=accessory,
        block_id=block_id,
    )
    return block.to_dict()


def context(*texts: str | None) -> dict[str, Any]:
    items = [t for t in texts if t]
    if len(items) > CONTEXT_ELEMENTS:
        items = [*items[: CONTEXT_ELEMENTS - 1], more(len(items) - CONTEXT_ELEMENTS + 1)]
    return ContextBlock(elements=[MarkdownTextObject(text=clip(t, SECTION_TEXT)) for t in items]).to_dict()


def divider() -> dict[str, Any]:
    return DividerBlock().to_dict()


def button(
    text: str, action_id: str, *, value: str | None = None, url: str | None = None, style: str | None = None
) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text=clip(text, BUTTON_TEXT), emoji=True),
        action_id=str(action_id),
        value=value,
        url=url,
        style=style,
    )


def actions(elements: Sequence[BlockElement], *, block_id: str | None = None) -> dict[str, Any]:
    return ActionsBlock(elements=list(elements[:ACTIONS_ELEMENTS]), block_id=block_id).to_dict()


def cap_blocks(
    blocks: list[dict[str, Any]], limit: int = MESSAGE_BLOCKS, *, keep_tail: int = 0
) -> list[dict[str, Any]]:
    """At most `limit` blocks: the overflow is replaced by one "…and N more" context; the last `keep_tail` stay."""
    if len(blocks) <= limit:
        return blocks
    tail = blocks[len(blocks) - keep_tail :] if keep_tail else []
    head = blocks[: len(blocks) - keep_tail]
    room = limit - len(tail) - 1
    return [*head[:room], context(f"{more(len(head) - room)} (cut to fit Slack's {limit}-block limit)"), *tail]


def text_sections(text: str, *, max_sections: int = 3) -> list[dict[str, Any]]:
    """Long mrkdwn split on line breaks into sections of at most 3000 chars; the rest is cut with "…"."""
    chunks: list[str] = []
    current = ""
    for line in text.splitlines() or [""]:
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) <= SECTION_TEXT or not current:
            current = candidate
        else:
            chunks.append(current)
            current = line
    chunks.append(current)
    if len(chunks) > max_sections:
        chunks = [*chunks[: max_sections - 1], clip("\n".join(chunks[max_sections - 1 :]), SECTION_TEXT)]
    return [section(clip(c, SECTION_TEXT)) for c in chunks if c.strip()]


def trust_emoji(score: int | None) -> str:
    if score is None:
        return ":white_circle:"
    return ":large_green_circle:" if score >= 80 else ":large_yellow_circle:" if score >= 50 else ":red_circle:"


def hops(count: int) -> str:
    return f"{count} hop" if count == 1 else f"{count} hops"


def elapsed(now: datetime, at: datetime) -> float:
    """Seconds from `at` to `now`, reading naive datetimes as UTC."""
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return (now - at).total_seconds()


def with_note(blocks: list[dict[str, Any]], note: str | None, limit: int = MESSAGE_BLOCKS) -> list[dict[str, Any]]:
    """`blocks` with `note` (e.g. "data is stale") as a closing context block; unchanged when there is no note."""
    if not note:
        return blocks
    return cap_blocks([*blocks, context(note)], limit, keep_tail=1)
