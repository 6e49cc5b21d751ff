"""Fully qualified names as OpenMetadata writes them: quote-aware split, build and URL encoding."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote


class FQNError(ValueError):
    """An FQN string that cannot be split (unbalanced quotes, empty part)."""


def quote_name(name: str) -> str:
    """Quote one name part the way OpenMetadata does: wrap it in double quotes when it contains a dot."""
    if '"' in name:
        raise FQNError(f"a name part may not contain a double quote: {name!r}")
    return f'"{name}"' if "." in name else name


def unquote_name(part: str) -> str:
    """Strip OpenMetadata's double quotes from one FQN part."""
    if len(part) >= 2 and part.startswith('"') and part.endswith('"'):
        return part[1:-1]
    return part


def build(*names: str) -> str:
    """Join raw name parts into an FQN, quoting each part that needs it."""
    return ".".join(quote_name(n) for n in names)


def split(fqn: str) -> list[str]:
    """Split an FQN into its raw (unquoted) name parts: `a."b.c".d` → `["a", "b.c", "d"]`."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    for ch in fqn:
        if ch == '"':
            in_quotes = not in_quotes
            current.append(ch)
        elif ch == "." and not in_quotes:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if in_quotes:
        raise FQNError(f"unbalanced quotes in FQN: {fqn!r}")
    parts.append("".join(current))
    if any(p == "" for p in parts):
        raise FQNError(f"empty name part in FQN: {fqn!r}")
    return [unquote_name(p) for p in parts]


def parent(fqn: str) -> str:
    """The FQN without its last part (the table of a column FQN, for instance)."""
    return build(*split(fqn)[:-1])


def last(fqn: str) -> str:
    """The raw last name part of an FQN (a column's or an entity's own name)."""
    return split(fqn)[-1]


def short_names(fqns: Sequence[str]) -> dict[str, str]:
    """Each FQN's shortest trailing parts that no other of `fqns` ends with (`raw.orders`, `model.orders`)."""
    parts = {f: _parts_or_whole(f) for f in fqns}
    out: dict[str, str] = {}
    for fqn, mine in parts.items():
        out[fqn] = fqn
        for n in range(1, len(mine)):
            tail = [p.casefold() for p in mine[-n:]]
            if not any([p.casefold() for p in theirs[-n:]] == tail for f, theirs in parts.items() if f != fqn):
                out[fqn] = build(*mine[-n:])
                break
    return out


def _parts_or_whole(fqn: str) -> list[str]:
    try:
        return split(fqn)
    except FQNError:
        return [fqn]


def column_fqn(entity_fqn: str, column: str) -> str:
    """The FQN of a column of an entity."""
    return f"{entity_fqn}.{quote_name(column)}"


def split_column_fqn(col_fqn: str, entity_fqns: set[str] | None = None) -> tuple[str, str]:
    """Split a column FQN into (entity FQN, column name); prefers a known entity prefix when given."""
    if entity_fqns:
        parts = split(col_fqn)
        for cut in range(len(parts) - 1, 0, -1):
            candidate = build(*parts[:cut])
            if candidate in entity_fqns:
                return candidate, ".".join(parts[cut:])
    return parent(col_fqn), last(col_fqn)


def url_segment(fqn: str) -> str:
    """Percent-encode a whole FQN as one URL path segment (as the official client does)."""
    return quote(fqn, safe="")
