"""What a simulator route returns (`Reply`), and the query-parameter readers the routes share."""

from __future__ import annotations

from collections.abc import Mapping

from simulator.records import SimError
from simulator.store import INCLUDE_VALUES


class Reply:
    """A JSON body (already encoded) and whether it may be schema-validated."""

    __slots__ = ("body", "status", "validate")

    def __init__(self, body: bytes, status: int = 200, *, validate: bool = True) -> None:
        self.body, self.status, self.validate = body, status, validate


def int_param(q: Mapping[str, str], name: str, default: int | None) -> int | None:
    """An integer query parameter (400 when it is not one)."""
    raw = q.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SimError(400, f"query param {name} must be an integer") from exc


def bool_param(q: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter (`true` in any case)."""
    return str(q.get(name) or "").lower() == "true"


def include_param(q: Mapping[str, str]) -> str:
    """`include=` (non-deleted by default)."""
    include = q.get("include") or "non-deleted"
    if include not in INCLUDE_VALUES:
        raise SimError(400, f"query param include must be one of {list(INCLUDE_VALUES)}")
    return include
