"""What MCP tools return, as plain data: `ToolResult`, `WebResult`, and the URL and search-result parsers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import mcp.types as types

MAX_URLS = 50
_MARKDOWN_LINK = re.compile(r"\[([^\]\n]{0,300})\]\((https?://[^)\s]+)\)")
_BARE_URL = re.compile(r"https?://[^\s<>\"'`)\]}]+")
_TAVILY_KEYS = ("Title:", "URL:", "Content:", "Raw Content:", "Favicon:", "Answer:", "Detailed Results:")
_URL_KEYS = ("url", "link", "href")
_TITLE_KEYS = ("title", "name")
_SNIPPET_KEYS = ("content", "description", "snippet", "text")


@dataclass(frozen=True)
class ToolResult:
    """One tool call's outcome. `text` is untrusted web data, capped; it is never acted upon by the toolbox."""

    ok: bool
    text: str = ""
    urls: tuple[str, ...] = ()
    error: str | None = None
    server: str | None = None

    @classmethod
    def failure(cls, error: str, *, server: str | None = None, text: str = "") -> ToolResult:
        """A failed call with its reason."""
        return cls(ok=False, text=text, error=error, server=server)


@dataclass(frozen=True)
class WebResult:
    """One web search hit (untrusted text), with the tool that found it."""

    title: str
    url: str
    snippet: str
    source_tool: str


def cap(text: str, max_chars: int) -> str:
    """`text` cut to at most `max_chars` characters, ending in "…" when it was cut."""
    if max_chars <= 0:
        return ""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def content_text(result: types.CallToolResult) -> tuple[str, tuple[str, ...]]:
    """The joined text of a tool result and the links it carries as content (resource links, embedded URIs)."""
    parts: list[str] = []
    links: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ResourceLink):
            links.append(str(block.uri))
        elif isinstance(block, types.EmbeddedResource):
            links.append(str(block.resource.uri))
            if isinstance(block.resource, types.TextResourceContents):
                parts.append(block.resource.text)
    if not parts and result.structured_content:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n\n".join(parts), tuple(link for link in links if link.startswith(("http://", "https://")))


def extract_urls(text: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Source URLs in a tool's text, deduplicated in order.

    Structured fields are preferred (JSON `url`/`link` keys, Tavily's `URL:` lines), so a link that only appears in
    the prose of a page (for example inside an injected instruction) is not promoted to a citation. Plain text
    falls back to markdown links and bare URLs.
    """
    found: list[str] = list(extra)
    document = _json_or_none(text)
    if document is not None:
        found.extend(url for url in _json_urls(document))
    else:
        tavily = [line[4:].strip() for line in text.splitlines() if line.startswith("URL:")]
        if tavily:
            found.extend(tavily)
        else:
            found.extend(match.group(2) for match in _MARKDOWN_LINK.finditer(text))
            found.extend(_clean_url(match.group(0)) for match in _BARE_URL.finditer(text))
    return _dedup(url for url in found if url.startswith(("http://", "https://")))


def parse_web_results(text: str, source_tool: str, *, snippet_chars: int = 500) -> list[WebResult]:
    """Search hits from Tavily text or JSON, BrightData JSON (`organic[]`), or markdown links, deduplicated by URL."""
    document = _json_or_none(text)
    if document is not None:
        hits = list(_json_hits(document))
    elif any(line.startswith("URL:") for line in text.splitlines()):
        hits = _tavily_text_hits(text)
    else:
        hits = [(title, url, "") for title, url in _MARKDOWN_LINK.findall(text)]
    results: list[WebResult] = []
    seen: set[str] = set()
    for title, url, snippet in hits:
        if not url.startswith(("http://", "https://")) or url in seen:
            continue
        seen.add(url)
        results.append(
            WebResult(
                title=cap(" ".join(title.split()) or url, 200),
                url=url,
                snippet=cap(" ".join(snippet.split()), snippet_chars),
                source_tool=source_tool,
            )
        )
    return results


def _json_or_none(text: str) -> Any:
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        return None


def _json_urls(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _URL_KEYS and isinstance(value, str):
                yield value
            else:
                yield from _json_urls(value)
    elif isinstance(node, list):
        for item in node:
            yield from _json_urls(item)


def _json_hits(node: Any) -> Iterator[tuple[str, str, str]]:
    if isinstance(node, dict):
        url = next((node[k] for k in _URL_KEYS if isinstance(node.get(k), str)), None)
        if url is not None:
            title = next((node[k] for k in _TITLE_KEYS if isinstance(node.get(k), str)), "")
            snippet = next((node[k] for k in _SNIPPET_KEYS if isinstance(node.get(k), str)), "")
            yield title, url, snippet
            return
        for value in node.values():
            yield from _json_hits(value)
    elif isinstance(node, list):
        for item in node:
            yield from _json_hits(item)


def _tavily_text_hits(text: str) -> list[tuple[str, str, str]]:
    """Parse tavily-mcp's `Title: / URL: / Content:` blocks (continuation lines belong to the last key)."""
    hits: list[dict[str, str]] = []
    key: str | None = None
    for line in text.splitlines():
        prefix = next((p for p in _TAVILY_KEYS if line.startswith(p)), None)
        if prefix is not None:
            key = prefix.rstrip(":").lower()
            value = line[len(prefix) :].strip()
            if key == "title" or (key == "url" and (not hits or "url" in hits[-1])):
                hits.append({})
            if hits and key in ("title", "url", "content"):
                hits[-1][key] = value
            continue
        if hits and key == "content":
            hits[-1]["content"] = hits[-1].get("content", "") + "\n" + line
    return [(h.get("title", ""), h.get("url", ""), h.get("content", "")) for h in hits]


def _clean_url(url: str) -> str:
    return url.rstrip(".,;:!?")


def _dedup(urls: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for url in urls:
        seen.setdefault(url, None)
        if len(seen) >= MAX_URLS:
            break
    return tuple(seen)
