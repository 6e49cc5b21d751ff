"""Block Kit building blocks shared by the renderers: escaping, truncation within Slack's limits, small builders."""

from __future__ import annotations

import hashlib
import json
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
from slack_sdk.models.blocks.block_elements import BlockElement, ButtonElement, InteractiveElement

from bot.core.slack_text import clip, esc, units

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
SECTION_TEXT = 3000
FIELD_TEXT = 2000
HEADER_TEXT = 150
BUTTON_TEXT = 75
SECTION_FIELDS = 10
ACTIONS_ELEMENTS = 25
CONTEXT_ELEMENTS = 10
# Slack refuses a message whose blocks hold more than about 12k characters of text in all (`msg_blocks_too_long`),
# even when every block is within its own limit (refusals were reported from 11,341 over 45 blocks: the block
# containers count too): every message is kept within this many UTF-16 code units of text.
MESSAGE_TEXT = 10_000
NOTIFICATION_TEXT = 3000  # the top-level `text`: a notification line, not the message itself

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


def plain(text: Any, limit: int = NOTIFICATION_TEXT) -> str:
    """The one way to a message's top-level `text`: escaped like mrkdwn (`<!channel>` from a name or a description
    must never ping anyone, in a notification or anywhere else) and clipped. Callers pass plain words, never markup."""
    return clip(esc(text), limit) or "DNA Bot"


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
        suffix = units(sep) + units(more(rest)) if rest else 0
        grown = size + (units(sep) if out else 0) + units(line)
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


def actions(elements: Sequence[InteractiveElement], *, block_id: str | None = None) -> dict[str, Any]:
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
        if units(candidate) <= SECTION_TEXT or not current:
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


# ------------------------------------------------------------------------------------------ block ids


def content_id(block: Mapping[str, Any], salt: str = "") -> str:
    """8 hex digits from a block's content (its block_id aside) and `salt`: a block that changes gets a new id."""
    body = json.dumps({k: v for k, v in block.items() if k != "block_id"}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha1((body + salt).encode(), usedforsecurity=False).hexdigest()[:8]


def stamp_block_ids(blocks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every block without a block_id gets one from its place and its content. A message updated in place
    (`chat.update`) then shows its changed blocks under new ids, and Slack clients drop what they kept for the old
    ones (a half-picked user, a selected option); unchanged blocks keep theirs."""
    return [b if b.get("block_id") else {**b, "block_id": f"b{i}.{content_id(b)}"} for i, b in enumerate(blocks)]


# ------------------------------------------------------------------------------------------ message budget


def text_units(node: Any) -> int:
    """The text some blocks carry in all, in UTF-16 code units: every text object, field, label and option."""
    if isinstance(node, Mapping):
        own = units(node["text"]) if isinstance(node.get("text"), str) else 0
        return own + sum(text_units(v) for v in node.values() if isinstance(v, (Mapping, list)))
    if isinstance(node, list):
        return sum(text_units(v) for v in node)
    return 0


def _texts(node: Any) -> int:
    if isinstance(node, Mapping):
        own = 1 if isinstance(node.get("text"), str) else 0
        return own + sum(_texts(v) for v in node.values() if isinstance(v, (Mapping, list)))
    return sum(_texts(v) for v in node) if isinstance(node, list) else 0


def _clip_texts(node: Any, share: int) -> Any:
    if isinstance(node, Mapping):
        return {
            k: clip(v, share) if k == "text" and isinstance(v, str) else _clip_texts(v, share) for k, v in node.items()
        }
    return [_clip_texts(v, share) for v in node] if isinstance(node, list) else node


def shrink(block: dict[str, Any], room: int) -> dict[str, Any]:
    """`block` with each of its texts cut to an equal share of `room` UTF-16 units."""
    if text_units(block) <= room:
        return block
    return _clip_texts(block, max(1, room // max(1, _texts(block))))


def _cut_note(left_out: int, pointer: str | None) -> str:
    where = f"; {pointer} shows it all" if pointer else ""
    if left_out:
        return f"{more(left_out)} part(s), left out to fit one Slack message{where}."
    return f"Cut to fit one Slack message{where}."


def fit_text(
    blocks: list[dict[str, Any]], budget: int = MESSAGE_TEXT, *, pointer: str | None = None
) -> list[dict[str, Any]]:
    """`blocks` within Slack's block count and `budget` UTF-16 units of text in all. Over it, the blocks that do
    not fit are left out and a context says so, and where to read everything (`pointer`, e.g. "`dnabot incident
    7`"); a closing actions or context block (the buttons, a note) always stays."""
    keep_tail = 1 if len(blocks) > 1 and blocks[-1].get("type") in ("actions", "context") else 0
    blocks = cap_blocks(blocks, MESSAGE_BLOCKS, keep_tail=keep_tail)
    if text_units(blocks) <= budget:
        return blocks
    tail = [shrink(b, budget // 4) for b in blocks[len(blocks) - keep_tail :]]
    head = blocks[: len(blocks) - keep_tail]
    room = budget - text_units(tail) - units(_cut_note(len(head), pointer))
    shown: list[dict[str, Any]] = []
    for block in head:
        size = text_units(block)
        if size > room:
            if not shown:  # never an answer without its first block: cut it instead
                shown.append(shrink(block, room))
            break
        shown.append(block)
        room -= size
    return cap_blocks([*shown, context(_cut_note(len(head) - len(shown), pointer)), *tail], keep_tail=len(tail) + 1)


def split_text(
    blocks: Sequence[dict[str, Any]], budget: int = MESSAGE_TEXT, limit: int = MESSAGE_BLOCKS
) -> list[list[dict[str, Any]]]:
    """`blocks` as consecutive messages, each within `budget` UTF-16 units of text and `limit` blocks (a block too
    long for any message on its own is cut to fit one; a divider that would open a message is dropped)."""
    messages: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for block in blocks:
        block = shrink(block, budget)
        n = text_units(block)
        if current and (size + n > budget or len(current) >= limit):
            messages.append(current)
            current, size = [], 0
        if not current and block.get("type") == "divider":
            continue  # a reply does not open with a rule
        current.append(block)
        size += n
    return [*messages, current] if current else messages


def message(
    text: Any, blocks: list[dict[str, Any]] | None = None, *, budget: int = MESSAGE_TEXT, pointer: str | None = None
) -> dict[str, Any]:
    """The `text` and `blocks` arguments of one message, as Slack takes them: the text escaped and clipped
    (`plain`), the blocks within the block count and the total-text budget (`fit_text`). Every message the bot
    sends goes through here: chat.postMessage, chat.update, chat.postEphemeral, respond() and response_url bodies."""
    out: dict[str, Any] = {"text": plain(text)}
    if blocks is not None:
        out["blocks"] = fit_text(blocks, budget, pointer=pointer)
    return out
