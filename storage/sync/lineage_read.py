"""How the sync judges one entity's lineage answer: only a clean 200 may remove an edge; the rest is unknown.

A 404 on lineage (an entity renamed or deleted mid-sync, a flaky proxy), another 4xx, a 5xx or a timeout that
outlasted the retries, or a 200 that is not a usable lineage answer says nothing about the entity's edges: the
entity's lineage is *unknown* in that run and its stored edges stay as they are (edges read from the other end's
clean answer still count). A 200 with some unusable edges is *partial*: the edges it does show are taken, none
is removed. A 404 whose entity also answers 404 (or soft-deleted) to a GET is *gone*: the deletion logic takes it.
A run of unavailable answers is an outage, not a per-entity fault: the run fails as before.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from storage.errors import OMAuthError, OMNotFound, OMUnavailable, OpenMetadataError
from storage.openmetadata.client import OpenMetadataClient
from storage.openmetadata.lineage import LineageEdge

log = logging.getLogger(__name__)

# This many lineage reads unavailable in a row (no answer in between) is an outage: the run fails.
LINEAGE_OUTAGE = 8

CLEAN, PARTIAL, UNKNOWN, GONE = "clean", "partial", "unknown", "gone"


@dataclass(frozen=True, slots=True)
class EdgeState:
    """One lineage edge as the sync keeps it in memory (columns: ((from column FQNs), to column FQN) pairs)."""

    from_fqn: str
    from_type: str
    to_fqn: str
    to_type: str
    pipeline_fqn: str | None
    columns: tuple[tuple[tuple[str, ...], str], ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.from_fqn, self.to_fqn)

    @classmethod
    def of(cls, edge: Any) -> EdgeState:
        """Copy an edge-like object (the client's `LineageEdge` or a stored edge view)."""
        columns = edge.columns
        if columns and isinstance(columns[0], dict):  # stored JSON form
            columns = tuple((tuple(c["from"]), c["to"]) for c in columns)
        return cls(
            sys.intern(edge.from_fqn),
            edge.from_type,
            sys.intern(edge.to_fqn),
            edge.to_type,
            edge.pipeline_fqn,
            tuple(sorted((tuple(f), t) for f, t in columns)),
        )

    def columns_json(self) -> list[dict[str, Any]]:
        return [{"from": list(f), "to": t} for f, t in self.columns]


@dataclass(frozen=True, slots=True)
class LineageRead:
    """What one entity's lineage read is worth: `status` (clean, partial, unknown, gone), edges, and why."""

    status: str
    edges: tuple[LineageEdge, ...] = ()
    reason: str | None = None  # not_found | unavailable | unusable | partial
    error: str | None = None


class LineageReader:
    """Reads lineage entity by entity for one run and judges each answer (see the module docstring)."""

    def __init__(self, client: OpenMetadataClient, *, outage: int = LINEAGE_OUTAGE) -> None:
        self.client = client
        self.outage = outage
        self.answered = 0  # reads the server answered (any status but an unavailable one)
        self._unavailable_in_a_row = 0
        self._last_unavailable: OMUnavailable | None = None

    async def read(self, entity_type: str, fqn: str, *, confirm_gone: bool) -> LineageRead:
        """One entity's lineage; on a 404, when `confirm_gone`, the entity itself is asked for."""
        try:
            answer = await self.client.lineage_answer(entity_type, fqn)
        except OMNotFound as exc:
            self._answer()
            if confirm_gone and await self._gone(entity_type, fqn):
                return LineageRead(GONE, reason="not_found", error=str(exc))
            return LineageRead(UNKNOWN, reason="not_found", error=str(exc))
        except OMAuthError:
            raise
        except OMUnavailable as exc:
            self._unavailable_in_a_row += 1
            self._last_unavailable = exc
            if self._unavailable_in_a_row >= self.outage:
                raise
            return LineageRead(UNKNOWN, reason="unavailable", error=str(exc))
        except OpenMetadataError as exc:  # another 4xx, invalid JSON, not a lineage answer
            self._answer()
            return LineageRead(UNKNOWN, reason="unusable", error=str(exc))
        self._answer()
        if answer.skipped:
            error = f"{answer.skipped} edge(s) of the answer could not be used"
            return LineageRead(PARTIAL, tuple(answer.edges), reason="partial", error=error)
        return LineageRead(CLEAN, tuple(answer.edges))

    def _answer(self) -> None:
        self.answered += 1
        self._unavailable_in_a_row = 0

    async def _gone(self, entity_type: str, fqn: str) -> bool:
        try:
            entity = await self.client.get_entity(entity_type, fqn)
        except OMNotFound:
            return True
        except OMAuthError:
            raise
        except OpenMetadataError:  # unreadable or unavailable: not proven gone
            return False
        return bool(entity.deleted)

    def check_outage(self) -> None:
        """Raise when every lineage read of the run was unavailable: the server's lineage is down, not one entity."""
        if self.answered == 0 and self._last_unavailable is not None:
            raise self._last_unavailable


def report_unknown(unknown: dict[str, str]) -> None:
    """One WARNING line for the run (not one per entity): how many entities' lineage was unknown, and why."""
    if not unknown:
        return
    why = ", ".join(f"{reason} {n}" for reason, n in sorted(Counter(unknown.values()).items()))
    log.warning(
        "lineage unknown for %d entities this run (%s): their stored edges were kept, no removal recorded",
        len(unknown),
        why,
    )
