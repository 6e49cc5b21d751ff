"""Where an incremental sync looks for the lineage edits no change event shows: audit log, search, or sweep.

OpenMetadata 1.x records no ChangeEvent for a lineage edit, so each incremental run re-reads the lineage of a
rolling slice of the catalog (the sweep). 2.0 lists lineage edits in its audit log. From 1.7 the whole graph can
also be read from the search index in one request (`OpenMetadataClient.platform_lineage`), which shows every
document's upstream edges; the run compares them with the store's and re-reads, entity by entity, only the
entities whose upstream edges differ. So every edge the run writes or removes still comes from the database-backed
per-entity read: a partial or stale search answer can make the run re-read an entity for nothing, never remove an
edge. What the answer does not cover (more than 10,000 documents are cut off; an entity missing from the index)
is left to the slice, which keeps rotating. When the search read fails (search down: a 500; or refused), the run
sweeps its slice as before and says so in `lineage_sweep.source`.

Not caught by the search read: an index that is stale in the same way as the store (an edit the index missed,
made while the store already agreed with the index). Full runs (every `full_refresh_seconds`) re-read every
entity's lineage from the database and repair that.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from storage.errors import OMUnavailable, OpenMetadataError
from storage.openmetadata.client import OpenMetadataClient
from storage.sync.events import plan_events

log = logging.getLogger(__name__)

# `EsUtils/OsUtils.searchEntities` asks for one page of this many documents: an answer this big may be cut off.
SEARCH_HITS_CAP = 10_000
SEARCH_UNAVAILABLE = "sweep (search unavailable)"

Slice = list[tuple[str, str]]  # (entity type, FQN) pairs


@dataclass(frozen=True, slots=True)
class LineageSearch:
    """The caller's choice to read the whole graph from search; `stored()` yields the store's live edges."""

    stored: Callable[[], Iterable[Any]]


def edge_signature(edge: Any) -> tuple[Any, ...]:
    """What must agree between a stored edge and a read one (`EdgeState` or `LineageEdge`)."""
    columns = tuple(sorted((tuple(f), t) for f, t in edge.columns))
    return (edge.from_fqn, edge.from_type, edge.to_fqn, edge.to_type, edge.pipeline_fqn, columns)


def sweep_stats(sweep: Slice, source: str = "sweep", **extra: Any) -> dict[str, Any]:
    """The run's `lineage_sweep` when the slice is read: where it ends is where the next run goes on."""
    return {"source": source, "read": len(sweep), "cursor": sweep[-1][1] if sweep else None, **extra}


async def lineage_changes(
    client: OpenMetadataClient,
    since_ms: int,
    known_types: dict[str, str],
    sweep: Slice,
    search: LineageSearch | None,
    *,
    audit: bool = True,
) -> tuple[dict[str, str], dict[str, Any]]:
    """(FQN → entity type of the entities whose lineage to re-read, the run's `lineage_sweep` stats): the ends of
    the edges 2.0's audit log names since `since_ms` (when `audit`), else what a search read shows changed plus
    the slice's uncovered entities (when `search` and the server has it), else the slice."""
    profile = await client.version_profile()
    if audit and profile.lineage_events:
        try:
            audited = await client.lineage_audit_since(since_ms)
        except OMUnavailable:
            raise
        except OpenMetadataError as exc:  # no permission on the audit log: sweep instead
            log.warning("lineage audit log unavailable (%s): sweeping lineage instead", exc)
        else:
            plan = plan_events(audited, known_types)
            return plan.lineage, {"source": "audit log", "events": plan.lineage_events, "read": len(plan.lineage)}
    if search is not None and profile.search_lineage:
        try:
            documents = await client.platform_lineage()
        except OpenMetadataError as exc:  # search down (500s, retried), refused or unusable: sweep as before
            log.warning("whole-graph lineage read failed (%s): sweeping a slice instead", exc)
            return _slice(sweep), sweep_stats(sweep, SEARCH_UNAVAILABLE, error=str(exc)[:200])
        return compare(documents, search.stored(), known_types, sweep)
    return _slice(sweep), sweep_stats(sweep)


def compare(
    documents: dict[str, list[Any]], stored: Iterable[Any], known_types: dict[str, str], sweep: Slice
) -> tuple[dict[str, str], dict[str, Any]]:
    """The entities to re-read after a search read: each document whose upstream edges differ from the stored
    ones (or, for a document of a type the sync does not keep, the known upstream ends of the differing edges),
    and the slice's entities whose edges the answer does not all prove (an edge is proven by its downstream end's
    document)."""
    stored_up: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    targets: dict[str, set[str]] = defaultdict(set)
    for edge in stored:
        stored_up[edge.to_fqn].add(edge_signature(edge))
        targets[edge.from_fqn].add(edge.to_fqn)
    changed: dict[str, str] = {}
    for fqn, edges in documents.items():
        found = {edge_signature(e) for e in edges}
        before = stored_up.get(fqn, set())
        if found == before:
            continue
        if fqn in known_types:
            changed[fqn] = known_types[fqn]
            continue
        for sig in found ^ before:  # not ours to re-read: re-read the upstream ends we keep
            if sig[0] in known_types:
                changed[sig[0]] = known_types[sig[0]]
    covered = {f for f in documents if f in known_types and targets.get(f, set()) <= documents.keys()}
    rest = {fqn: etype for etype, fqn in sweep if fqn not in covered}
    items = changed | rest
    stats = sweep_stats(sweep, "search", documents=len(documents), covered=len(covered), changed=len(changed))
    stats |= {"read": len(items), "truncated": len(documents) >= SEARCH_HITS_CAP}
    return items, stats


def _slice(sweep: Slice) -> dict[str, str]:
    return {fqn: etype for etype, fqn in sweep}
