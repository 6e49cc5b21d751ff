"""Text for an 80-column terminal: names that wrap only between their parts, and Slack mrkdwn as styled plain text."""

from __future__ import annotations

import re
from collections.abc import Iterator

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions
from rich.measure import Measurement
from rich.text import Text

from bot.blocks.text import mrkdwn_to_text

# Where a cell may wrap, best first: after a space, after a dot (FQN parts), after an underscore (snake_case words).
_BREAKS = (re.compile(r"[^ ]* +|[^ ]+$"), re.compile(r"[^.]*\.|[^.]+$"), re.compile(r"[^_]*_|[^_]+$"))


def _pieces(text: str, width: int | None, level: int = 0) -> list[str]:
    """`text` cut at its break points: at each level only the pieces still wider than `width` are cut further
    (all of them when `width` is None)."""
    if level == len(_BREAKS):
        return [text]
    out: list[str] = []
    for piece in _BREAKS[level].findall(text) or [text]:
        fits = width is not None and cell_len(piece.rstrip(" ")) <= width
        out += [piece] if fits else _pieces(piece, width, level + 1)
    return out


class Name:
    """A name (an FQN, a column, a test) or a short text in a table cell: on one line when it fits, else wrapped
    after its spaces, then its dots, then its underscores, never inside a word; a word wider than the cell ends
    in an ellipsis."""

    def __init__(self, text: str, style: str = "") -> None:
        self.text = text
        self.style = style

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = max((cell_len(p.rstrip(" ")) for p in _pieces(self.text, None)), default=0)
        return Measurement(widest, cell_len(self.text)).with_maximum(options.max_width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        width = max(1, options.max_width)
        for line in self._lines(width):
            text = Text(line, style=self.style, no_wrap=True, overflow="ellipsis")
            text.truncate(width, overflow="ellipsis")
            yield text

    def _lines(self, width: int) -> list[str]:
        if cell_len(self.text) <= width:
            return [self.text]
        lines, line = [], ""
        for piece in _pieces(self.text, width):
            if line and cell_len((line + piece).rstrip(" ")) > width:
                lines.append(line.rstrip(" "))
                line = ""
            line += piece
        return [*lines, line.rstrip(" ")] if line.strip(" ") else lines

    def __str__(self) -> str:
        return self.text


EMOJI = {
    "white_check_mark": "✓",
    "heavy_check_mark": "✓",
    "x": "✗",
    "warning": "⚠",
    "red_circle": "●",
    "large_yellow_circle": "●",
    "large_green_circle": "●",
    "white_circle": "○",
}  # anything else is dropped: its width in a terminal is anyone's guess, and the words around it say enough
_EMOJI = re.compile(r"(?<![\w:/]):([a-z0-9_+'-]+):(?![\w:])( ?)")
_CODE = re.compile(r"```(.+?)```|`([^`\n]+)`", re.DOTALL)
_STYLED = re.compile(
    r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"  # *bold*
    r"|(?<![A-Za-z0-9_])_(?=\S)([^_\n]+?)(?<=\S)_(?![A-Za-z0-9_])"  # _italic_
    r"|(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])"  # ~strike~
)
CODE_STYLE = "cyan"


def _emoji(match: re.Match[str]) -> str:
    symbol = EMOJI.get(match.group(1))
    return symbol + match.group(2) if symbol else ""  # a dropped emoji takes its space with it


def _code(out: Text, text: str, style: str = "") -> None:
    at = 0
    for m in _CODE.finditer(text):
        out.append(text[at : m.start()], style=style)
        block, inline = m.groups()
        out.append((block or inline or "").strip("\n"), style=f"{style} {CODE_STYLE}".strip())
        at = m.end()
    out.append(text[at:], style=style)


def mrkdwn(text: str) -> Text:
    """Slack mrkdwn as a rich `Text`: *bold*, _italic_, ~strike~ and `code` styled, links as "label (url)",
    mentions as @name, entities unescaped, emoji codes as a symbol or nothing; never read as rich markup."""
    plain = _EMOJI.sub(_emoji, mrkdwn_to_text(text))
    out = Text()
    at = 0
    for m in _STYLED.finditer(plain):
        _code(out, plain[at : m.start()])
        bold, italic, strike = m.groups()
        _code(out, bold or italic or strike, "bold" if bold else "italic" if italic else "strike")
        at = m.end()
    _code(out, plain[at:])
    return out
