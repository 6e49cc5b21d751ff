"""The polled change-event feed, `GET /api/v1/events`, over the events a catalog recorded (doc §6)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from simulator.records import SimError

# Entity types `/v1/events` accepts in its filters (an unknown one is a 400, as in OM).
EVENT_ENTITY_TYPES = frozenset(
    [
        "table",
        "dashboard",
        "chart",
        "pipeline",
        "topic",
        "dashboardDataModel",
        "testCase",
        "testSuite",
        "database",
        "databaseSchema",
        "user",
        "team",
        "mlmodel",
        "container",
        "searchIndex",
        "storedProcedure",
        "query",
        "glossary",
        "glossaryTerm",
        "tag",
        "classification",
        "databaseService",
        "dashboardService",
        "pipelineService",
        "messagingService",
        "mlmodelService",
        "storageService",
        "ingestionPipeline",
        "domain",
        "dataProduct",
        "apiCollection",
        "apiEndpoint",
        "apiService",
        "metric",
        "dataContract",
        "testDefinition",
        "kpi",
        "role",
        "policy",
        "bot",
        "persona",
    ]
)
EVENT_PARAMS: dict[str, tuple[str, ...]] = {
    "entityCreated": ("entityCreated",),
    "entityUpdated": ("entityUpdated",),
    "entityRestored": ("entityRestored",),
    "entityDeleted": ("entityDeleted", "entitySoftDeleted"),
}


def events_feed(
    events: list[tuple[int, str, str, bytes]], event_ts: list[int], params: Mapping[str, str | None], timestamp: int
) -> bytes:
    """`GET /v1/events` over the recorded events: ascending, inclusive timestamp, only the kinds named."""
    wanted: dict[str, frozenset[str] | None] = {}
    for param, kinds in EVENT_PARAMS.items():
        value = params.get(param)
        if not value:
            continue
        types = [t.strip() for t in value.split(",") if t.strip()]
        if "*" in types:
            selected: frozenset[str] | None = None
        else:
            for t in types:
                if t not in EVENT_ENTITY_TYPES:
                    raise SimError(400, f"Invalid entity {t} in query param {param}")
            selected = frozenset(types)
        for kind in kinds:
            wanted[kind] = selected
    start = bisect.bisect_left(event_ts, timestamp)
    out = []
    for _ts, kind, etype, raw in events[start:]:
        if kind in wanted:
            sel = wanted[kind]
            if sel is None or etype in sel:
                out.append(raw)
    return b'{"data":[' + b",".join(out) + b'],"paging":{"total":%d}}' % len(out)
