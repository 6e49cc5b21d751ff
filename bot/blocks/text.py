"""Block Kit shown readably in a terminal (for `make demo`), and Block Kit Builder links for the same JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

BUILDER = "https://app.slack.com/block-kit-builder/#"
RULE = "─" * 60

_TOKEN = re.compile(r"<([^<>]*)>")


def _token(match: re.Match[str]) -> str:
    body = match.group(1)
    target, _, label = body.partition("|")
    if target.startswith("!date^"):
        return label or target
    if target.startswith("@"):
        return "@" + (label or target[1:])
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if target.startswith("!subteam^"):
        return "@" + (label or target.split("^")[1])
    if target.startswith("!"):
        return "@" + (label or target[1:].split("^")[0])
    return f"{label} ({target})" if label else target


def mrkdwn_to_text(text: str) -> str:
    """Slack mrkdwn as terminal text: mentions, links and dates resolved, entities unescaped."""
    text = _TOKEN.sub(_token, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text(obj: Any) -> str:
    if isinstance(obj, Mapping):
        raw = str(obj.get("text", ""))
        return mrkdwn_to_text(raw) if obj.get("type") == "mrkdwn" else raw
    return str(obj or "")


def _element(el: Mapping[str, Any]) -> str:
    kind = el.get("type", "")
    if kind == "button":
        return f"[ {_text(el.get('text'))}{' ↗' if el.get('url') else ''} ]"
    if kind.endswith("_select") or kind.endswith("select"):
        chosen = el.get("initial_option") or {}
        shown = _text(chosen.get("text")) if chosen else _text(el.get("placeholder")) or kind
        if el.get("initial_user"):
            shown = "@" + str(el["initial_user"])
        return f"[ {shown} ▾ ]"
    if kind == "image":
        return f"[image: {el.get('alt_text', '')}]"
    if kind == "plain_text_input":
        return f"[ {_text(el.get('placeholder')) or '…'} ]"
    if kind in ("mrkdwn", "plain_text"):
        return _text(el)
    return f"[{kind}]"


def _indent(text: str, pad: str = "  ") -> str:
    return "\n".join(pad + line if line else line for line in text.splitlines())


def _block(b: Mapping[str, Any]) -> str:
    kind = b.get("type")
    if kind == "header":
        title = _text(b.get("text"))
        return f"{title}\n{'═' * min(len(title), 60)}"
    if kind == "section":
        parts = [_text(b["text"])] if b.get("text") else []
        for f in b.get("fields") or []:
            label, _, value = _text(f).partition("\n")
            if "\n" in value:
                parts.append(f"  {label}:\n" + _indent(value, "    "))
            else:
                parts.append(f"  {label}: {value}" if value else f"  {label}")
        if b.get("accessory"):
            parts.append("    " + _element(b["accessory"]))
        return "\n".join(parts)
    if kind == "context":
        return _indent(" · ".join(_element(e) for e in b.get("elements") or []), "  ")
    if kind == "divider":
        return RULE
    if kind == "actions":
        return "  ".join(_element(e) for e in b.get("elements") or [])
    if kind == "image":
        return f"[image: {b.get('alt_text', '')}]"
    if kind == "input":
        return (
            f"{_text(b.get('label'))}{' (optional)' if b.get('optional') else ''}: {_element(b.get('element') or {})}"
        )
    if kind == "markdown":
        return str(b.get("text", ""))
    return f"[{kind} block]"


def _blocks_of(blocks: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    return blocks.get("blocks") or [] if isinstance(blocks, Mapping) else blocks


def blocks_to_text(blocks: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> str:
    """Blocks (or a view) as plain terminal text: headers underlined, fields as `label: value`, buttons as `[ X ]`."""
    out = []
    if isinstance(blocks, Mapping) and blocks.get("title"):
        out.append(f"┌ {_text(blocks['title'])} ┐")
    out.extend(_block(b) for b in _blocks_of(blocks))
    return "\n".join(out)


def builder_url(blocks: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> str:
    """A Block Kit Builder link for blocks (as `{"blocks": [...]}`) or for a whole modal/home view."""
    payload = dict(blocks) if isinstance(blocks, Mapping) else {"blocks": list(blocks)}
    return BUILDER + quote(json.dumps(payload, separators=(",", ":"), ensure_ascii=False), safe="")
