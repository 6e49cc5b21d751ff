"""Dataset names as people type them: the one FQN a name means, "did you mean" suggestions, ambiguity."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.errors import AmbiguousDataset, DatasetNotFound
from storage.openmetadata import fqn as fqnlib
from storage.persistence.models import Entity

MAX_SUGGESTIONS = 5
SUGGESTION_CUTOFF = 0.6


# ---------------------------------------------------------------------------------------------- lookup


def _clean_query(text: str) -> str:
    # Slack turns straight quotes into curly ones and users wrap names in backticks.
    text = text.strip().strip("`").strip()
    return text.replace("\u201c", '"').replace("\u201d", '"')


def _parts(text: str) -> list[str]:
    try:
        return [p.casefold() for p in fqnlib.split(text)]
    except fqnlib.FQNError:
        return [text.replace('"', "").casefold()]


def _pick(query: str, matches: Sequence[tuple[str, bool]]) -> str | None:
    """The one match, or the one still-live match among several; None when empty; AmbiguousDataset otherwise."""
    if len(matches) == 1:
        return matches[0][0]
    live = sorted(fqn for fqn, deleted in matches if not deleted)
    if len(live) == 1:
        return live[0]
    if not matches:
        return None
    raise AmbiguousDataset(query, live or sorted(fqn for fqn, _ in matches))


def _suffix_matches(query: str, rows: Iterable[tuple[str, str, bool]]) -> tuple[list[tuple[str, bool]], ...]:
    """(part-wise matches, text-only matches): `shop.orders` ends `warehouse.shop.orders` segment by segment;
    `dim.product` ends `warehouse.shop."dim.product"` only as text."""
    wanted = _parts(query)
    raw = query.replace('"', "").casefold()
    by_parts: list[tuple[str, bool]] = []
    by_text: list[tuple[str, bool]] = []
    for fqn, _name, deleted in rows:
        parts = _parts(fqn)
        joined = ".".join(parts)
        if parts[-len(wanted) :] == wanted:
            by_parts.append((fqn, deleted))
        elif joined == raw or joined.endswith("." + raw):
            by_text.append((fqn, deleted))
    return by_parts, by_text


def suggest(query: str, rows: Iterable[tuple[str, str, bool]], limit: int = MAX_SUGGESTIONS) -> list[str]:
    """Up to `limit` FQNs that look like `query` (close names or FQNs, or containing it), best first."""
    needle = query.replace('"', "").casefold()
    scored: list[tuple[float, int, str]] = []
    for fqn, name, deleted in rows:
        hay_fqn, hay_name = fqn.replace('"', "").casefold(), name.casefold()
        score = max(
            difflib.SequenceMatcher(None, needle, hay_name).ratio(),
            difflib.SequenceMatcher(None, needle, hay_fqn).ratio(),
            0.9 if needle and needle in hay_fqn else 0.0,
        )
        if score >= SUGGESTION_CUTOFF:
            scored.append((score, int(deleted), fqn))
    scored.sort(key=lambda s: (-s[0], s[1], s[2]))
    return [fqn for _score, _deleted, fqn in scored[:limit]]


def resolve_fqn(session: Session, text: str) -> str:
    """The FQN meant by `text`. Precedence: the exact FQN; the FQN in any case; trailing name segments
    (`orders`, `analytics.orders`); the same as text (`dim.product` for `"dim.product"`). Within a level one
    match (or one live match) wins and several raise AmbiguousDataset; a partial word or a typo never picks, it
    raises DatasetNotFound with suggestions."""
    query = _clean_query(text)
    if query:
        exact = session.scalar(sa.select(Entity.fqn).where(Entity.fqn == query))
        if exact is not None:
            return exact
    rows = [
        (fqn, name, deleted_at is not None)
        for fqn, name, deleted_at in session.execute(sa.select(Entity.fqn, Entity.name, Entity.deleted_at))
    ]
    if not query:
        raise DatasetNotFound(text, [])
    # casefold in Python: SQLite's lower() only folds ASCII, and `магазин` must match `МАГАЗИН`.
    folded = query.casefold()
    same_case = [(fqn, deleted) for fqn, _name, deleted in rows if fqn.casefold() == folded]
    for level in (same_case, *_suffix_matches(query, rows)):
        chosen = _pick(query, level)
        if chosen is not None:
            return chosen
    raise DatasetNotFound(text, suggest(query, rows))
