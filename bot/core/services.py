"""Service functions behind the CLI (and later the Slack listeners): wire settings to the store and the client."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from bot.core import heap
from bot.core.redact import scrub, secrets_of
from bot.core.settings import Settings, agent_config, mcp_options, process_env
from storage.errors import DnaBotError, OMConfigError, SnapshotNotFound
from storage.persistence import db, graph, incidents, names, store
from storage.persistence.incident_views import IncidentDetailView, IncidentView

if TYPE_CHECKING:  # the agents, the sync and the OpenMetadata client load when a command needs them: a question
    # answered from the store (`dnabot blast`) starts without the pipeline, the MCP SDK or httpx
    from agents.config import AgentConfig
    from agents.pipeline import PipelineResult
    from agents.why import WhyAnswer
    from storage.openmetadata.client import OpenMetadataClient
    from storage.sync.fetch import Progress
    from storage.sync.run import SyncResult

log = logging.getLogger(__name__)

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(settings: Settings) -> Engine:
    """One engine (one connection pool) per database URL for the life of the process: listeners, the drainer
    and the scheduler share it instead of opening a pool per call."""
    key = db.normalise_url(settings.database_url).render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = db.make_engine(settings.database_url)
        return engine


def migrate(settings: Settings) -> str:
    """Upgrade the schema to the newest revision and return it."""
    engine = engine_for(settings)
    db.migrate(engine)
    return db.current_revision(engine) or "base"


def require_openmetadata(settings: Settings) -> str:
    """OPENMETADATA_URL; or stop with one sentence when it is not set."""
    if not settings.openmetadata_url:
        raise OMConfigError(
            "OPENMETADATA_URL is not set: point it at your OpenMetadata server (e.g. http://localhost:8585)"
        )
    return settings.openmetadata_url


def client_for(settings: Settings) -> OpenMetadataClient:
    from storage.openmetadata.client import OpenMetadataClient

    url = require_openmetadata(settings)
    token = settings.openmetadata_token.get_secret_value() if settings.openmetadata_token else None
    return OpenMetadataClient(
        url,
        token,
        timeout=settings.om_timeout_seconds,
        max_retries=settings.om_max_retries,
        concurrency=settings.om_concurrency,
        page_size=settings.om_page_size,
    )


async def sync(
    settings: Settings,
    *,
    mode: str = "auto",
    progress: Progress | None = None,
    incidents: bool = True,
    targets: list[tuple[str, str]] | None = None,
) -> SyncResult:
    """Run one sync, then the incident pipeline on what it found; the schema is brought up to date first.

    `targets` ((entity type, FQN) pairs, e.g. from OpenMetadata webhooks) makes it a targeted re-sync of those."""
    from bot.core import metrics
    from storage.sync.run import SyncOptions, run_sync

    require_openmetadata(settings)  # before the engine: a configuration error must not create the store file
    engine = engine_for(settings)
    db.migrate(engine)
    options = SyncOptions(
        mode="targeted" if targets is not None else mode,
        targets=targets,
        full_refresh_seconds=settings.full_refresh_seconds,
        trust_drop_threshold=settings.trust_drop_threshold,
        incident_window_days=settings.incident_window_days,
        lineage_sweep_seconds=settings.lineage_sweep_seconds,
        sync_interval_seconds=settings.sync_interval_seconds,
        lineage_sweep_min=settings.lineage_sweep_min,
        lineage_search_cost=settings.lineage_search_cost,
        secrets=tuple(secrets_of(settings)),  # the OpenMetadata token among them
        log_failure=False,  # every caller tells the failure itself: the CLI, a tick's log line, a Slack reply
    )
    async with client_for(settings) as client:
        result = await run_sync(engine, client, options, progress=progress)
    metrics.observe_sync(result)
    if result.ok and incidents:
        began = time.perf_counter()
        async with _pipeline_turn(engine):
            await _catch_up(settings, engine, result.run_id)
            result.incidents = (await process_incidents(settings, engine, result.run_id)).to_dict()
        # the reported duration is the whole run: the sync, then the pipeline (outside_context_seconds of it on MCP)
        result.incidents["pipeline_seconds"] = round(time.perf_counter() - began, 3)
        result.duration_seconds = round(result.duration_seconds + result.incidents["pipeline_seconds"], 3)
    return result


async def _catch_up(settings: Settings, engine: Engine, run_id: int) -> None:
    """Run the incident pipeline on earlier runs it never finished (it failed after their sync committed), so
    no change is lost for incidents; oldest first, within the last day."""
    since = datetime.now(UTC) - timedelta(days=1)
    with db.session_factory(engine)() as session:
        missed = store.unprocessed_runs(session, run_id, since=since)
    for earlier in missed:
        log.warning("sync run %s never went through the incident pipeline: processing it now", earlier)
        await process_incidents(settings, engine, earlier)


PIPELINE_LOCK = "dnabot-pipeline"


@contextlib.asynccontextmanager
async def _pipeline_turn(engine: Engine, wait_seconds: float = 300.0) -> AsyncIterator[None]:
    """One incident pipeline at a time across processes (a webhook's targeted run and the leader's tick may
    finish their syncs together): wait for the pipeline lock, polling, then hold it for the block."""
    deadline = time.monotonic() + wait_seconds
    while True:
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(db.sync_lock(engine, PIPELINE_LOCK))
            except db.SyncAlreadyRunning:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
                continue
            yield
            return


async def process_incidents(settings: Settings, engine: Engine, run_id: int) -> PipelineResult:
    """Observer → analyst → fixer → explainer on one run, with the LLM and MCP tools when configured."""
    from agents import pipeline
    from agents.llm import LLMClient

    config = agent_config(settings)
    llm = LLMClient.from_config(config.llm)
    toolbox = _toolbox(settings, config, "sync")
    return await pipeline.process_run(engine, run_id, config, llm=llm, toolbox=toolbox)


async def why(
    settings: Settings,
    text: str,
    question: str | None,
    *,
    visible: Callable[[list[IncidentView]], list[IncidentView]] | None = None,
) -> WhyAnswer:
    """Answer "why did X break?": `text` is a dataset (then `question`), or the whole question. `visible` picks the
    incidents the answer may name (its readers' channels); all of them when None (the command line)."""
    from agents import why as why_agent
    from agents.llm import LLMClient
    from agents.why_tools import StoreWhyTools

    config = agent_config(settings)
    engine = ready_engine(settings)
    # the process's warm graph: a Slack answer reuses it, the command line builds it once for its question
    tools = StoreWhyTools(db.session_factory(engine), graph.cache_for(engine).graph, visible=visible)
    fqn = None
    if question is None and " " in text.strip():
        question = text  # the whole question was given: the dataset is found inside it
    else:
        fqn = tools.resolve(text)
        question = question or f"Why did {fqn} break?"
    llm = LLMClient.from_config(config.llm)
    toolbox = _toolbox(settings, config, "question") if llm is not None else None
    return await why_agent.answer(question, fqn=fqn, tools=tools, llm=llm, mcp=toolbox, config=config)


def _toolbox(settings: Settings, config: AgentConfig, per: str) -> Any:
    """A handle on the process's long-lived MCP sessions (None without servers), within the sync's or the
    question's outside-context budget."""
    from agents import mcp_runtime  # the MCP SDK itself is loaded only when servers are configured

    options = mcp_options(settings)
    budget = options.sync_budget_seconds if per == "sync" else options.question_budget_seconds
    return mcp_runtime.toolbox_for(config, process_env(), options, budget_seconds=budget, per=per)


def incidents_list(settings: Settings, which: str) -> list[IncidentView]:
    engine = ready_engine(settings)
    with db.session_factory(engine)() as session:
        if which == "open":
            return incidents.open_incidents(session)
        status = None if which == "all" else which
        return incidents.list_incidents(session, status=status)


def incident_detail(settings: Settings, incident_id: int) -> IncidentDetailView:
    engine = ready_engine(settings)
    with db.session_factory(engine)() as session:
        return incidents.with_trust(session, incidents.get_incident(session, incident_id))


_checked: set[int] = set()


def _no_sqlite_file(engine: Engine) -> bool:
    """A SQLite store whose file does not exist yet: asking it anything would create an empty file."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    return not Path(url.database).exists()


def store_engine(settings: Settings) -> Engine | None:
    """The shared engine of a store at the code's schema revision, or None while the store is empty."""
    engine = engine_for(settings)
    if id(engine) not in _checked and (_no_sqlite_file(engine) or db.current_revision(engine) is None):
        return None
    return ready_engine(settings)


def ready_engine(settings: Settings) -> Engine:
    """The shared engine of a store that exists and is at the code's schema revision (checked once per engine);
    DnaBotError, saying to run `dnabot sync` first, while the store is empty."""
    engine = engine_for(settings)
    if id(engine) in _checked:
        return engine
    if _no_sqlite_file(engine) or db.current_revision(engine) is None:  # (a missing file is not created)
        where = engine.url.render_as_string(hide_password=True)
        raise DnaBotError(f"the DNA store at {where} is empty: run `dnabot sync` first (or `dnabot migrate`)")
    db.ensure_migrated(engine)
    _checked.add(id(engine))
    return engine


def dna(settings: Settings, text: str, at: datetime | None) -> store.SnapshotView:
    engine = ready_engine(settings)
    with db.session_factory(engine)() as session:
        fqn = names.resolve_fqn(session, text)
        view = store.dna_at(session, fqn, at)
        if view is None:
            when = f" at {at.isoformat()}" if at else ""
            raise SnapshotNotFound(f"{fqn} has no DNA snapshot{when} (it was first synced later)")
        return view


def timeline(settings: Settings, text: str, since: datetime) -> tuple[str, list[store.ChangeView]]:
    engine = ready_engine(settings)
    with db.session_factory(engine)() as session:
        fqn = names.resolve_fqn(session, text)
        return fqn, store.timeline(session, fqn, since)


def blast(settings: Settings, text: str, column: str | None, depth: int | None) -> Any:
    engine = ready_engine(settings)
    with db.session_factory(engine)() as session:
        fqn = names.resolve_fqn(session, text)
        # warm graph in a long-lived process; else (`dnabot blast`) only what is downstream of fqn is read
        warm = graph.question_graph(engine, session)
        return graph.blast_radius(session, fqn, column, max_depth=depth, graph=warm)


def keep_graphs_warm(settings: Settings) -> None:
    """Keep the lineage graph of the store warm in this process (the Slack app): questions reuse it until a sync
    commits a change, and a sync run in this process rebuilds it right after committing (`warm_graphs`)."""
    graph.cache_for(engine_for(settings)).keep_warm = True


def warm_graphs(settings: Settings) -> None:
    """Bring the process's lineage graph up to date after a sync committed (a no-op when nothing it is built
    from changed); a failure is logged, and the next question builds it instead."""
    began = time.perf_counter()
    try:
        engine = store_engine(settings)
        if engine is None:
            return
        cache = graph.warm(engine)
    except Exception as exc:  # a cache is never worth failing a tick (or a scheduler job) for
        log.warning("lineage graph not warmed (the next question builds it): %s", exc)
        return
    heap.after_graph_build(cache.builds)  # in `serve`: the new graph joins the frozen long-lived heap
    log.debug("lineage graph warm after %.2f s (%d builds so far)", time.perf_counter() - began, cache.builds)


def runs(settings: Settings, limit: int) -> list[store.RunView]:
    """The last sync runs, their errors masked for every secret (a row stored before masking existed too)."""
    engine = ready_engine(settings)
    with db.session_factory(engine)() as session:
        items = store.last_runs(session, limit)
    secrets = secrets_of(settings)
    return [_masked_run(r, secrets) for r in items]


def _masked_run(run: store.RunView, secrets: list[str]) -> store.RunView:
    sweep = (run.stats or {}).get("lineage_sweep")
    stats = run.stats
    if isinstance(sweep, dict) and sweep.get("error"):  # a failed whole-graph lineage read says why
        stats = {**run.stats, "lineage_sweep": {**sweep, "error": scrub(str(sweep["error"]), secrets)}}
    error = scrub(run.error, secrets) if run.error else run.error
    return replace(run, error=error, stats=stats)


DEFAULT_SAMPLE_DATA = Path("../shared/fixtures/openmetadata/sample_data")


def load_catalog(spec: str) -> Any:
    """`demo`, `sample[:PATH]` (OpenMetadata's sample data), `synthetic:N` (N tables) or a catalog JSON path."""
    import simulator  # imported only where a simulator is wanted
    from simulator import Catalog

    if spec == "demo":
        return Catalog.demo()
    if spec.startswith("synthetic:"):
        return simulator.synthetic_catalog(int(spec.partition(":")[2]))
    if spec == "sample" or spec.startswith("sample:"):
        path = Path(spec.partition(":")[2]) if ":" in spec else DEFAULT_SAMPLE_DATA
        if not path.is_dir():
            raise DnaBotError(f"no OpenMetadata sample data at {path}: pass --catalog sample:/path/to/sample_data")
        return Catalog.from_sample_data(path)
    path = Path(spec)
    if not path.is_file():
        raise DnaBotError(f"no catalog file at {spec}: use demo, sample[:PATH] or a catalog JSON path")
    return Catalog.from_file(path)


def serve_simulator(catalog: str, host: str, port: int, token: str) -> None:
    import simulator

    loaded = load_catalog(catalog)
    gc.freeze()  # the catalog lives as long as the server: keep the cyclic GC from rescanning it
    simulator.serve(loaded, host=host, port=port, token=token)


def _plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):  # NamedTuple: keep the field names
        return {k: _plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def plain(obj: Any) -> Any:
    """A JSON-able copy of a view, dataclass or NamedTuple."""
    return _plain(obj)


def snapshot_json(view: store.SnapshotView) -> dict[str, Any]:
    return _plain(view)


def change_json(change: store.ChangeView) -> dict[str, Any]:
    return _plain(change)


def blast_json(radius: Any) -> dict[str, Any]:
    return _plain(radius)


def run_json(run: store.RunView) -> dict[str, Any]:
    return _plain(run)


def outbox_rows(settings: Settings, status: str | None, limit: int) -> list[Any]:
    """The newest outbox rows (all, or of one status), for `dnabot outbox`."""
    from storage.persistence import outbox

    engine = ready_engine(settings)
    with db.session_factory(engine)() as session:
        rows = outbox.rows(session, status=status, limit=limit)
    secrets = secrets_of(settings)
    return [replace(r, last_error=scrub(r.last_error, secrets)) if r.last_error else r for r in rows]


def outbox_requeue(settings: Settings, ids: list[int] | None) -> int:
    """Give dead outbox rows (these ids, or all) a fresh set of attempts."""
    from storage.persistence import outbox

    engine = ready_engine(settings)
    with db.session_factory(engine).begin() as session:
        return outbox.requeue(session, ids, now=datetime.now(UTC))
