"""The network half of a sync: read OpenMetadata into compact, DNA-ready records without touching the store."""

from __future__ import annotations

import asyncio
import logging
import marshal
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from storage.domain import dna, trust
from storage.domain.trust import TrustScore
from storage.errors import OMAuthError, OMNotFound, OMUnavailable, OpenMetadataError
from storage.openmetadata.client import CONTAINER_TYPES, OpenMetadataClient
from storage.openmetadata.lineage import LineageEdge
from storage.openmetadata.models import ENTITY_COLLECTIONS, EntityBase, Pipeline, TestCase, TestCaseResolutionStatus
from storage.sync.events import children_of, plan_events, test_target
from storage.sync.lineage import LineageSearch, lineage_changes
from storage.sync.lineage_read import CLEAN, GONE, PARTIAL, EdgeState, LineageReader, report_unknown

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]
"""A progress callback: (stage, done so far, total or None)."""

# Entity types whose refetch is driven by change events; pipelines and tests are re-read on every sync.
EVENT_TYPES = ("table", "dashboard", "chart", "dashboardDataModel", "pipeline", "topic", "testCase")
# A small look-back on the events cursor: the feed is inclusive and duplicates are harmless (idempotent refetch).
EVENTS_OVERLAP_MS = 1000
MAX_HANDLED_IDS = 2000  # more in one second: the rest are simply re-read (harmless)


@dataclass(slots=True)
class FetchedEntity:
    """An entity as read in this run: identity, volatile metadata, and its genes minus lineage (as JSON)."""

    fqn: str
    entity_type: str
    om_id: str
    name: str
    service: str | None
    om_version: float | None
    om_updated_at: int | None
    partial_genes: bytes | None  # marshal of the genes built with no lineage (compact, fast; dropped once final)
    genes: str | None = None  # final genes (canonical JSON); None when unchanged since the store's snapshot
    fingerprint: str | None = None  # set once the lineage is in: the entity is final
    trust: TrustScore | None = None  # of the final genes, when they changed


@dataclass
class Fetched:
    """Everything one run read from OpenMetadata."""

    mode: str
    om_version: str
    entities: dict[str, FetchedEntity] = field(default_factory=dict)
    edges: dict[tuple[str, str], EdgeState] = field(default_factory=dict)
    lineage_scope: set[str] = field(default_factory=set)  # entities whose edges were re-read (a clean 200)
    lineage_unknown: dict[str, str] = field(default_factory=dict)  # FQN → why its lineage is unknown: edges kept
    tests_by_entity: dict[str, list[TestCase]] = field(default_factory=dict)
    incidents: dict[str, TestCaseResolutionStatus] = field(default_factory=dict)
    pipeline_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)  # confirmed deleted (incremental)
    test_targets: set[str] = field(default_factory=set)  # entities whose tests changed (incremental)
    unknown: set[str] = field(default_factory=set)  # malformed: keep their last good state
    unsure_types: set[str] = field(default_factory=set)  # a malformed item with no FQN: no deletions there
    malformed: list[dict[str, Any]] = field(default_factory=list)
    events_cursor: int | None = None
    events_seen: int = 0
    change_source: str | None = None  # incremental: "events" or "updatedAt"
    fully_listed: bool = False  # every entity was listed (so absent ones are gone)
    seen: set[str] = field(default_factory=set)  # listed and unchanged (not re-read)
    people: list[PersonRecord] | None = None  # full runs: OM users and teams; None when not (or not fully) listed
    sweep: dict[str, Any] | None = None  # how lineage edits the feed cannot show were looked for (incremental)
    handled_ids: list[str] = field(default_factory=list)  # events inside the look-back window already handled


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """An OpenMetadata user or team as listed: what `people` keeps for @-mentions."""

    name: str
    kind: str  # user | team
    email: str | None
    display_name: str | None


def entity_service(entity: EntityBase) -> str | None:
    return entity.service.name if entity.service else None


def handled_event_ids(events: list[Any], before: Collection[str], old_cursor: int, new_cursor: int) -> list[str]:
    """Ids of the handled events the next run's look-back window (`EVENTS_OVERLAP_MS`) will list again, so it
    skips them; ids handled earlier are kept while the window can still reach them."""
    window = new_cursor - EVENTS_OVERLAP_MS
    ids = [ev.id for ev in events if ev.timestamp >= window]
    if new_cursor - old_cursor < EVENTS_OVERLAP_MS:
        ids.extend(before)
    return list(dict.fromkeys(ids))[:MAX_HANDLED_IDS]


class Fetcher:
    """Reads one run's worth of OpenMetadata through an `OpenMetadataClient`.

    Lineage requests start while the listing is still paging, and each entity's genes are finished (lineage,
    fingerprint, trust) the moment its lineage arrives, so the CPU work hides behind the network.
    """

    def __init__(
        self,
        client: OpenMetadataClient,
        *,
        incident_window_days: int = 30,
        progress: Progress | None,
        known_fingerprints: dict[str, str] | None = None,
        concurrency: int = 16,
    ):
        self.client = client
        self.incident_window_days = incident_window_days
        self.progress = progress or (lambda stage, done, total: None)
        self.known = known_fingerprints or {}
        self.concurrency = concurrency
        self._queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        self._queued = 0
        self._lineage_done = 0
        self._lineage_only: set[str] = set()
        self.reader = LineageReader(client)

    async def context(self, fetched: Fetched) -> None:
        """Test cases, open incidents and pipelines (with their last runs): small, re-read on every run."""
        tests: dict[str, list[TestCase]] = defaultdict(list)
        async for test in self.client.iter_test_cases():
            target = test_target(test)
            if target:
                tests[target].append(test)
        fetched.tests_by_entity = dict(tests)
        await self.read_incidents(fetched)
        pipelines = await self.read_pipeline_runs(fetched)
        for pipeline in pipelines:
            # incremental runs keep the pipelines' stored edges (the sweep re-reads them in turn)
            self.add_entity(fetched, pipeline, "pipeline", lineage=fetched.mode == "full")
        self.progress("pipelines and tests", len(pipelines), len(pipelines))

    async def read_incidents(self, fetched: Fetched) -> None:
        """The latest state of every data-quality incident in the window, by `stateId`."""
        now_ms = int(time.time() * 1000)
        start = now_ms - self.incident_window_days * 86_400_000
        for status in await self.client.incident_statuses(start, now_ms + 86_400_000, latest=True):
            fetched.incidents[status.stateId] = status

    async def read_pipeline_runs(self, fetched: Fetched) -> list[EntityBase]:
        """Every pipeline with its last run, summarised into `fetched.pipeline_runs` (lineage genes name them)."""
        pipelines = [p async for p in self.client.iter_entities("pipeline")]
        for pipeline in pipelines:
            run = dna.pipeline_summary(cast(Pipeline, pipeline))  # the "pipeline" collection parses as `Pipeline`
            fetched.pipeline_runs[pipeline.fullyQualifiedName or pipeline.name] = run
        return pipelines

    def add_entity(self, fetched: Fetched, entity: EntityBase, entity_type: str, *, lineage: bool = True) -> None:
        """Record an entity (genes minus lineage) and queue its lineage request (unless `lineage` is False: its
        stored edges are then kept)."""
        fqn = sys.intern(entity.fullyQualifiedName or entity.name)
        genes = dna.build_genes(
            entity,
            entity_type,
            upstream=(),
            downstream=(),
            tests=fetched.tests_by_entity.get(fqn, ()),
            incidents=fetched.incidents,
            pipelines=fetched.pipeline_runs,
        )
        fetched.entities[fqn] = FetchedEntity(
            fqn=fqn,
            entity_type=entity_type,
            om_id=entity.id,
            name=entity.name,
            service=entity_service(entity),
            om_version=entity.version,
            om_updated_at=entity.updatedAt,
            partial_genes=marshal.dumps(genes),
        )
        if lineage:
            self._queue.put_nowait((entity_type, fqn))
            self._queued += 1

    async def list_all(self, fetched: Fetched) -> None:
        for entity_type in ENTITY_COLLECTIONS:
            if entity_type == "pipeline":
                continue  # read with the context
            done = 0
            async for entity in self.client.iter_entities(entity_type):
                self.add_entity(fetched, entity, entity_type)
                done += 1
                if done % 500 == 0:
                    self.progress(f"{entity_type}s", done, None)
            self.progress(f"{entity_type}s", done, done)

    async def _lineage_worker(self, fetched: Fetched) -> None:
        while (item := await self._queue.get()) is not None:
            entity_type, fqn = item
            confirm = fqn in fetched.entities and fqn not in self._lineage_only  # re-read: a 404 may mean gone
            read = await self.reader.read(entity_type, fqn, confirm_gone=confirm)
            if read.status == GONE:  # deleted since it was listed or read: the deletion logic takes it
                fetched.entities.pop(fqn, None)
                fetched.gone.add(fqn)
            elif read.status == CLEAN:
                self._finish(fetched, fqn, read.edges)
            else:  # unknown, or partial: its stored edges stay; a re-read entity gets them back when written
                fetched.lineage_unknown[fqn] = read.reason or "unknown"
                if read.reason == "unusable":
                    fetched.malformed.append({"kind": "lineage", "item": fqn, "error": (read.error or "")[:300]})
                if read.status == PARTIAL:
                    self._keep_edges(fetched, read.edges)
            self._lineage_done += 1
            if self._lineage_done % 200 == 0:
                self.progress("lineage", self._lineage_done, self._queued)

    def _keep_edges(self, fetched: Fetched, edges: Iterable[LineageEdge]) -> list[EdgeState]:
        """Record edges read this run (one shared `EdgeState` per edge, whichever end read it)."""
        out = []
        for edge in edges:
            state = fetched.edges.get((edge.from_fqn, edge.to_fqn)) or EdgeState.of(edge)
            fetched.edges[state.key] = state
            out.append(state)
        return out

    def _finish(self, fetched: Fetched, fqn: str, edges: Iterable[LineageEdge]) -> None:
        """An entity's lineage is in: record its edges, finish its genes, keep them only if they changed."""
        fetched.lineage_scope.add(fqn)
        states = self._keep_edges(fetched, edges)
        up = [s for s in states if s.to_fqn == fqn]
        down = [s for s in states if s.from_fqn == fqn]
        fe = fetched.entities.get(fqn)
        if fe is None or fe.partial_genes is None:
            return
        genes = dna.with_lineage(marshal.loads(fe.partial_genes), up, down, pipelines=fetched.pipeline_runs)
        fe.partial_genes = None
        fe.fingerprint = dna.fingerprint(genes)
        if self.known.get(fqn) != fe.fingerprint:
            fe.genes = dna.canonical_json(genes)
            fe.trust = trust.trust_score(genes)

    async def _with_lineage(self, fetched: Fetched, produce: Callable[[], Awaitable[None]]) -> None:
        """Run `produce` (which queues entities) while workers fetch lineage; the first fatal error wins."""
        workers = [asyncio.create_task(self._lineage_worker(fetched)) for _ in range(self.concurrency)]
        try:
            await produce()
            for _ in workers:
                self._queue.put_nowait(None)
            await asyncio.gather(*workers)
            self.reader.check_outage()
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        self.progress("lineage", self._lineage_done, self._queued)
        report_unknown(fetched.lineage_unknown)

    def collect_malformed(self, fetched: Fetched) -> None:
        for item in self.client.malformed:
            record = {"kind": item.entity_type, "item": item.fqn_or_id, "error": str(item.error)[:300]}
            fetched.malformed.append(record)
            if item.entity_type == "lineage":
                continue  # a skipped edge: the entity itself is fine
            if item.fqn_or_id and ("." in item.fqn_or_id or item.fqn_or_id in fetched.entities):
                fetched.unknown.add(item.fqn_or_id)
            else:
                fetched.unsure_types.add(item.entity_type)

    async def full(self, events_start_ms: int) -> Fetched:
        """Read every entity, every test, every lineage edge."""
        version = await self.client.check_version()
        fetched = Fetched(mode="full", om_version=version.version)
        fetched.events_cursor = events_start_ms

        async def produce() -> None:
            await self.context(fetched)
            await self.list_all(fetched)

        await self._with_lineage(fetched, produce)
        await self.list_people(fetched)
        self.collect_malformed(fetched)
        return fetched

    async def list_people(self, fetched: Fetched) -> None:
        """Users and teams into `fetched.people`; a refusal (403, …) is recorded, never fatal: old rows stay."""
        people: list[PersonRecord] = []
        try:
            async for user in self.client.iter_users():
                if not user.deleted:
                    people.append(PersonRecord(user.name, "user", user.email or None, user.displayName or None))
            async for team in self.client.iter_teams():
                if not team.deleted:
                    people.append(PersonRecord(team.name, "team", team.email or None, team.displayName or None))
        except OpenMetadataError as exc:
            log.warning("could not list OpenMetadata users/teams (owners keep their last known emails): %s", exc)
            fetched.malformed.append({"kind": "people", "item": None, "error": str(exc)[:300]})
            return
        fetched.people = people

    async def incremental(
        self,
        cursor_ms: int,
        known_types: dict[str, str],
        known_versions: dict[str, tuple[int | None, float | None]] | None = None,
        *,
        sweep: list[tuple[str, str]] | None = None,
        handled_ids: Collection[str] = (),
        search: LineageSearch | None = None,
        retry: dict[str, str] | None = None,
    ) -> Fetched:
        """Read what changed since `cursor_ms`: from the change-events feed, or, when the server refuses the
        feed (no permission, disabled), from every entity's `updatedAt`/version; plus pipelines and tests.
        `retry` (FQN → type): entities whose lineage an earlier run could not read; theirs is read again.

        Lineage edits leave no trace in 1.x's feed: on 2.0 they are read from the audit log; otherwise, with
        `search` (1.7+), from one whole-graph search read checked against the store, and the `sweep` slice
        ((type, FQN) pairs, chosen by the caller) has the lineage re-read of what that left uncovered
        (`storage.sync.lineage`)."""
        version = await self.client.check_version()
        fetched = Fetched(mode="incremental", om_version=version.version)
        try:
            events = await self.client.events_since(
                max(0, cursor_ms - EVENTS_OVERLAP_MS), EVENT_TYPES, exclude_ids=handled_ids
            )
        except OMUnavailable:
            raise  # the server is down: this run fails, the last good data stays
        except OpenMetadataError as exc:  # refused (403, 404, 400…): fall back to updatedAt
            log.warning("change-events feed unavailable (%s): detecting changes by updatedAt", exc)
            return await self._by_updated_at(
                fetched, cursor_ms, known_versions or {}, sweep or [], search, _known(retry, known_types)
            )
        fetched.change_source = "events"
        fetched.events_seen = len(events)
        fetched.events_cursor = max([cursor_ms, *(ev.timestamp for ev in events)])
        fetched.handled_ids = handled_event_ids(events, handled_ids, cursor_ms, fetched.events_cursor)
        plan = plan_events(events, known_types)
        lineage_only = dict(plan.lineage)
        since = max(0, cursor_ms - EVENTS_OVERLAP_MS)
        swept, fetched.sweep = await lineage_changes(self.client, since, known_types, sweep or [], search)
        lineage_only.update(swept)
        lineage_only.update(_known(retry, known_types))
        fetched.gone |= plan.gone
        fetched.test_targets |= plan.test_targets

        async def produce() -> None:
            await self.context(fetched)
            for fqn, entity_type in plan.changed.items():
                try:
                    entity = await self.client.get_entity(entity_type, fqn)
                except OMNotFound:
                    if fqn in known_types:
                        fetched.gone.add(fqn)
                    continue
                if entity.deleted:
                    fetched.gone.add(fqn)
                    continue
                self.add_entity(fetched, entity, entity_type)
            self.queue_lineage(lineage_only, skip=plan.changed.keys() | fetched.gone)

        await self._with_lineage(fetched, produce)
        self.collect_malformed(fetched)
        self.progress("events", len(events), len(events))
        return fetched

    def queue_lineage(self, items: dict[str, str], *, skip: Any = ()) -> None:
        """Queue lineage-only re-reads (the entity itself is not re-read; its stored genes get the new edges)."""
        for fqn, entity_type in items.items():
            if fqn in skip:
                continue
            self._lineage_only.add(fqn)
            self._queue.put_nowait((entity_type, fqn))
            self._queued += 1

    async def targeted(self, targets: list[tuple[str, str]], known_types: dict[str, str], cursor_ms: int) -> Fetched:
        """Re-read exactly `targets` ((entity type, FQN) pairs, e.g. from OpenMetadata webhooks): each entity, its
        tests and lineage, plus the pipelines' last runs (lineage genes name them). The events cursor stays put:
        the polled feed still covers these changes, so polling remains the backstop."""
        version = await self.client.check_version()
        fetched = Fetched(mode="targeted", om_version=version.version, events_cursor=cursor_ms)
        fetched.change_source = "targets"
        wanted = {fqn: etype for etype, fqn in targets if etype in ENTITY_COLLECTIONS}
        for etype, fqn in targets:
            if etype in CONTAINER_TYPES:  # a deleted container: re-read what we know under it (404s → gone)
                wanted.update({child: known_types[child] for child in children_of(fqn, known_types)})
            elif etype not in ENTITY_COLLECTIONS:
                log.warning("targeted sync: %s %s is not a type the sync keeps; skipped", etype, fqn)
        limit = asyncio.Semaphore(self.concurrency)

        async def read(etype: str, fqn: str) -> EntityBase | None:
            async with limit:
                entity = await self._read_target(fetched, etype, fqn, known_types)
                if entity is not None and etype == "table":
                    tests = [t async for t in self.client.iter_test_cases(table_fqn=fqn)]
                    fetched.tests_by_entity[fqn] = [t for t in tests if test_target(t) == fqn]
                return entity

        async def produce() -> None:
            found, _ = await asyncio.gather(
                asyncio.gather(*(read(etype, fqn) for fqn, etype in wanted.items())),
                self.read_pipeline_runs(fetched),
            )
            if any(t.incidentId for tests in fetched.tests_by_entity.values() for t in tests):
                await self.read_incidents(fetched)
            for (_, etype), entity in zip(wanted.items(), found, strict=True):
                if entity is not None:
                    self.add_entity(fetched, entity, etype)

        await self._with_lineage(fetched, produce)
        self.collect_malformed(fetched)
        return fetched

    async def _read_target(
        self, fetched: Fetched, etype: str, fqn: str, known_types: dict[str, str]
    ) -> EntityBase | None:
        """One target by FQN; None when it is gone (recorded when we knew it) or its answer is unusable."""
        try:
            entity = await self.client.get_entity(etype, fqn)
        except OMNotFound:
            entity = None
        except (OMAuthError, OMUnavailable):
            raise
        except OpenMetadataError as exc:  # unusable (malformed: recorded by the client): keep its last good state
            log.warning("targeted sync: could not read %s %s: %s", etype, fqn, exc)
            fetched.unknown.add(fqn)
            return None
        if entity is None or entity.deleted:
            if fqn in known_types:
                fetched.gone.add(fqn)
            return None
        return entity

    async def _by_updated_at(
        self,
        fetched: Fetched,
        cursor_ms: int,
        known: dict[str, tuple[int | None, float | None]],
        sweep: list[tuple[str, str]],
        search: LineageSearch | None = None,
        retry: dict[str, str] | None = None,
    ) -> Fetched:
        """List every entity (cheap, paged); re-read lineage where `updatedAt` or the version moved, where the
        sweep's slice or a whole-graph search read says (lineage edits move neither), and of `retry`."""
        fetched.change_source = "updatedAt"
        fetched.events_cursor = cursor_ms
        fetched.fully_listed = True
        listed: list[tuple[EntityBase, str]] = []

        async def produce() -> None:
            await self.context(fetched)
            for entity_type in ENTITY_COLLECTIONS:
                if entity_type == "pipeline":
                    continue
                async for entity in self.client.iter_entities(entity_type):
                    fqn = entity.fullyQualifiedName or entity.name
                    if known.get(fqn) != (entity.updatedAt, entity.version):
                        self.add_entity(fetched, entity, entity_type)
                    else:
                        listed.append((entity, entity_type))
            kinds = {e.fullyQualifiedName or e.name: t for e, t in listed}
            kinds |= {fqn: fe.entity_type for fqn, fe in fetched.entities.items()}
            swept, fetched.sweep = await lineage_changes(self.client, 0, kinds, sweep, search, audit=False)
            self.queue_lineage(swept | (retry or {}), skip=fetched.entities.keys())

        await self._with_lineage(fetched, produce)
        # Unchanged entities were seen: they are not deleted.
        fetched.seen.update(entity.fullyQualifiedName or entity.name for entity, _ in listed)
        self.collect_malformed(fetched)
        return fetched


def _known(retry: dict[str, str] | None, known_types: dict[str, str]) -> dict[str, str]:
    """The entities of `retry` the store still knows (one deleted since needs no lineage read)."""
    return {fqn: known_types[fqn] for fqn in retry or {} if fqn in known_types}
