"""Ids that travel with the work in progress (sync run, incident, replica, request) for every log line it writes.

`with logctx.bind(sync_id=run.id):` makes the id visible to `current()` for the rest of the block, in this
thread or task and in the tasks it starts (contextvars are copied into new asyncio tasks and into Starlette's
thread pool); the previous ids come back when the block ends. The log formatter (`bot.core.logs`) adds them to
each record, so storage and agents code can bind ids without knowing how logs are written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

FIELDS = ("sync_id", "incident_id", "replica", "request_id")

_EMPTY: MappingProxyType[str, Any] = MappingProxyType({})
_ids: ContextVar[MappingProxyType[str, Any]] = ContextVar("dnabot_log_ids", default=_EMPTY)


@contextmanager
def bind(**ids: Any) -> Iterator[dict[str, Any]]:
    """Add `ids` (any of FIELDS; a None value is left out) to the log context for the block."""
    unknown = sorted(set(ids) - set(FIELDS))
    if unknown:
        raise TypeError(f"unknown log context field(s) {unknown}; expected some of {list(FIELDS)}")
    merged = dict(_ids.get()) | {k: v for k, v in ids.items() if v is not None}
    token = _ids.set(MappingProxyType(merged))
    try:
        yield dict(merged)
    finally:
        _ids.reset(token)


def current() -> dict[str, Any]:
    """The ids bound here right now, in FIELDS order (a copy: changing it changes nothing)."""
    ids = _ids.get()
    return {k: ids[k] for k in FIELDS if k in ids}
