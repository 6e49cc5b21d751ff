"""Answer bench: `/dna blast`, `/dna why` and `dnabot blast` latencies, and the lineage graph build, old vs new.

Stores:
- 10k tables: the simulator serves `synthetic:10000` (OpenMetadata 1.13.6) in its own process; a full sync fills a
  throwaway SQLite store, then 1 % of the tables get a column dropped, renamed or retyped through the admin API and
  an incremental sync with the incident pipeline records the changes and incidents a why-question reads
  (`--store PATH` reuses such a store instead).
- ≥100k nodes: that store copied under other service names until the lineage graph has 100k nodes or more
  (disjoint copies: one question reaches as much as at 10k; the graph, the entity table and the version check
  are ten times larger).
Figures on each store, through the service layer the Slack listeners call (`bot.core.services`):
- graph build: the old way (ORM rows, every edge's JSON, `LineageGraph.build`) and the new one (`graph.graph_at`);
- `/dna blast <table> [column]`: warm (the process keeps the graph, as the Slack app does), p50/p95 over `--calls`
  questions on a rotation of tables and columns, and the old per-question path (a whole graph read each time);
- `/dna why <table>` without an LLM (the rules answer): warm, and the old path (whole graph per question);
- cold: `dnabot blast <table> --json` as a child process (`python -m bot.cli`, process start included), next to
  `python -m bot.cli --help` (process start alone) and the cold service call in process (no warm graph: only
  what is downstream is read).
Targets on 2 cores: warm blast and rules why ≤ 100 ms at 10k tables and ≤ 300 ms at 100k nodes; cold
`dnabot blast` ≤ 1 s at 10k.
Usage: `python bench/answer_bench.py [--store PATH] [--calls 50] [--nodes 100000] [--skip-100k]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib  # bench/ is the script directory: first on sys.path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from agents import why as why_agent  # noqa: E402
from agents.why_tools import StoreWhyTools  # noqa: E402
from bot.core import heap, services  # noqa: E402
from bot.core.settings import Settings, agent_config  # noqa: E402
from storage.domain.lineage import LineageGraph  # noqa: E402
from storage.errors import ColumnNotFound  # noqa: E402
from storage.persistence import db, graph, names, store  # noqa: E402
from storage.persistence.models import LineageEdge  # noqa: E402

TOKEN = "bench-token"
TABLES = 10_000
NO_LLM = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TAVILY_API_KEY", "BRIGHTDATA_API_TOKEN", "DNABOT_MCP_CONFIG")
OLD_CALLS = 3  # the old path costs seconds a question (a minute at 100k nodes: one there)


# ------------------------------------------------------------------------------------------- the stores


def build_store(path: Path) -> None:
    """The 10k-table bench store: full sync, 1 % of the tables changed, an incremental sync with incidents."""
    sys.path.insert(0, str(ROOT / "bench"))
    import sync_bench

    proc, url = benchlib.start_simulator(TABLES, TOKEN, root=ROOT)
    try:
        db_url = f"sqlite:///{path}"
        sync_bench.run_sync(url, db_url, "full")
        sync_bench.mutate(url, TABLES)
        sync_bench.run_sync(url, db_url, "incremental", incidents=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def graph_nodes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        query = "select count(*) from (select from_fqn from lineage_edges union select to_fqn from lineage_edges)"
        return int(conn.execute(query).fetchone()[0])


def scale_store(source: Path, target: Path, nodes: int) -> int:
    """Copy `source` into `target`, then add renamed copies of its catalog until the graph has `nodes` nodes."""
    shutil.copyfile(source, target)
    per_copy = graph_nodes(source)
    copies = -(-nodes // per_copy) - 1
    with sqlite3.connect(target) as conn:
        max_entity = conn.execute("select max(id) from entities").fetchone()[0]
        max_snapshot = conn.execute("select max(id) from snapshots").fetchone()[0]
        max_change = conn.execute("select coalesce(max(id), 0) from changes").fetchone()[0]
        for k in range(1, copies + 1):
            rename = "replace(replace(replace({0}, 'synth.', 'synth{k}.'), 'bi.', 'bi{k}.'), 'orchestrator.', 'o{k}.')"

            def r(col: str, k: int = k, rename: str = rename) -> str:
                return rename.format(col, k=k)

            e, s, c = k * max_entity, k * max_snapshot, k * max_change
            conn.execute(
                f"insert into entities (id, fqn, entity_type, om_id, name, service, first_seen, last_seen, deleted_at, "
                f"fingerprint, current_snapshot_id, om_version, om_updated_at) select id + {e}, {r('fqn')}, "
                f"entity_type, om_id, name, service, first_seen, last_seen, deleted_at, fingerprint, "
                f"current_snapshot_id + {s}, om_version, om_updated_at from entities where id <= {max_entity}"
            )
            conn.execute(
                f"insert into snapshots (id, entity_id, sync_run_id, taken_at, fingerprint, genes, trust_score, "
                f"trust_factors) select id + {s}, entity_id + {e}, sync_run_id, taken_at, fingerprint, {r('genes')}, "
                f"trust_score, trust_factors from snapshots where id <= {max_snapshot}"
            )
            conn.execute(
                f"insert into lineage_edges (from_fqn, from_type, to_fqn, to_type, pipeline_fqn, columns, first_seen, "
                f"last_seen, removed_at, first_run_id, removed_run_id) select {r('from_fqn')}, from_type, "
                f"{r('to_fqn')}, to_type, {r('pipeline_fqn')}, {r('columns')}, first_seen, last_seen, removed_at, "
                f"first_run_id, removed_run_id from lineage_edges where from_fqn like 'synth.%' or from_fqn like 'bi.%'"
            )
            conn.execute(
                f"insert into changes (id, sync_run_id, entity_id, entity_fqn, entity_type, kind, subject, old_value, "
                f"new_value, confidence, details, detected_at) select id + {c}, sync_run_id, entity_id + {e}, "
                f"{r('entity_fqn')}, entity_type, kind, {r('subject')}, old_value, new_value, confidence, details, "
                f"detected_at from changes where id <= {max_change}"
            )
        conn.commit()
    return graph_nodes(target)


# ------------------------------------------------------------------------------------- the old code path


def old_live_edges(session: Any) -> list[store.EdgeView]:
    """`store.live_edges` before: an ORM object per row, then a view per object."""
    stmt = (
        sa.select(LineageEdge)
        .where(LineageEdge.removed_at.is_(None))
        .order_by(LineageEdge.from_fqn, LineageEdge.to_fqn, LineageEdge.id)
    )
    return [
        store.EdgeView(
            e.from_fqn, e.from_type, e.to_fqn, e.to_type, e.pipeline_fqn, list(e.columns or []), e.first_seen, None
        )
        for e in session.scalars(stmt)
    ]


def old_graph_at(session: Any) -> LineageGraph:
    return LineageGraph.build(old_live_edges(session), store.entity_types(session), graph.dashboard_charts(session))


def old_blast(settings: Settings, text: str, column: str | None) -> Any:
    """`services.blast` before: every edge and (for a column) every entity's columns, a whole graph per question."""
    with db.session_factory(services.engine_for(settings))() as session:
        fqn = names.resolve_fqn(session, text)
        edges = old_live_edges(session)
        if column is not None:
            known = set(store.entity_columns(session).get(fqn, []))
            if column not in known:
                raise ColumnNotFound(fqn, column, [])
        built = LineageGraph.build(edges, store.entity_types(session), graph.dashboard_charts(session))
        return built.blast_radius(fqn, column)


def old_why(settings: Settings, text: str) -> Any:
    """`services.why` (rules) before: the why tools built a whole graph for each question."""
    tools = StoreWhyTools(db.session_factory(services.engine_for(settings)), old_graph_at)
    fqn = tools.resolve(text)
    return asyncio.run(why_agent.answer(f"Why did {fqn} break?", fqn=fqn, tools=tools, config=agent_config(settings)))


# ------------------------------------------------------------------------------------------ measuring


def timed(fn: Callable[[], Any], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        began = time.perf_counter()
        fn()
        out.append(time.perf_counter() - began)
    return out


def ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {"p50_ms": at(0.5), "p95_ms": at(0.95), "n": len(ordered)}


def rotation(settings: Settings, count: int) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Blast questions (tables, some with a column) and why questions (tables downstream of a change)."""
    with db.session_factory(services.engine_for(settings))() as session:
        raw = [f for f in store.entity_types(session) if ".raw.raw_" in f and f.startswith("synth.")]
        raw.sort()
        blasts = [(f, None if i % 2 else "c01") for i, f in enumerate(raw[: max(2, count)])]
        changed = [c.entity_fqn for c in store.recent_changes(session, since=_long_ago(), limit=200)]
        full = graph.graph_at(session)
    whys = []
    for fqn in dict.fromkeys(changed):
        whys += [i.fqn for i in full.blast_radius(fqn).entities if i.type == "table"][:1]
    return blasts, (whys or [f for f, _ in blasts])[: max(1, count)]


def _long_ago() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) - timedelta(days=3650)


def cycle(items: list[Any]) -> Callable[[], Any]:
    state = {"i": 0}

    def next_item() -> Any:
        item = items[state["i"] % len(items)]
        state["i"] += 1
        return item

    return next_item


def cold_process(db_url: str, table: str, rounds: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": db_url}
    for var in NO_LLM:
        env.pop(var, None)

    def run(*args: str) -> float:
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, capture_output=True, cwd=ROOT)
        wall = time.perf_counter() - began
        if done.returncode != 0:
            raise SystemExit(f"dnabot {' '.join(args)} failed: {done.stderr.decode()[-800:]}")
        return wall

    blast = [run("blast", table, "--json") for _ in range(rounds)]
    helps = [run("--help") for _ in range(rounds)]
    return {"blast_s": round(min(blast), 3), "help_s": round(min(helps), 3), "runs_s": [round(x, 3) for x in blast]}


def bench(path: Path, calls: int, label: str) -> dict[str, Any]:
    db_url = f"sqlite:///{path}"
    os.environ["DATABASE_URL"] = db_url
    settings = Settings()
    engine = services.engine_for(settings)
    factory = db.session_factory(engine)
    out: dict[str, Any] = {"store": label, "graph_nodes": graph_nodes(path)}
    blasts, whys = rotation(settings, 20)
    old_calls = 1 if out["graph_nodes"] > 50_000 else OLD_CALLS  # a minute a call there
    with factory() as session:
        out["build_old_s"] = round(min(timed(lambda: old_graph_at(session), old_calls)), 3)
        out["build_new_s"] = round(min(timed(lambda: graph.graph_at(session), 2)), 3)
        out["version_check_ms"] = ms(timed(lambda: graph.graph_version(session), calls))["p50_ms"]

    cache = graph.cache_for(engine)
    cache.clear()
    cache.keep_warm = False
    nb = cycle(blasts)
    out["cold_service_blast"] = ms(timed(lambda: services.blast(settings, *nb(), None), min(calls, 20)))
    assert cache.builds == 0, "a cold question built the whole graph"

    services.keep_graphs_warm(settings)
    began = time.perf_counter()
    services.warm_graphs(settings)
    out["warm_up_s"] = round(time.perf_counter() - began, 3)
    nw = cycle(whys)  # side by side: the same questions with every full GC pass walking the whole heap
    out["warm_why_unfrozen"] = ms(timed(lambda: asyncio.run(services.why(settings, nw(), None)), calls))
    heap.keep_long_lived_out_of_full_collections()  # as `serve` does once started (`bot/core/heap.py`)
    nb, nw = cycle(blasts), cycle(whys)
    out["warm_blast"] = ms(timed(lambda: services.blast(settings, *nb(), None), calls))
    out["warm_why"] = ms(timed(lambda: asyncio.run(services.why(settings, nw(), None)), calls))
    out["warm_builds"] = cache.builds
    ob, ow = cycle(blasts), cycle(whys)
    out["old_blast"] = ms(timed(lambda: old_blast(settings, *ob()), old_calls))
    out["old_why"] = ms(timed(lambda: old_why(settings, ow()), old_calls))
    out["cold_process"] = cold_process(db_url, blasts[0][0], 3)
    engine.dispose()
    return out


def report(f: dict[str, Any]) -> None:
    print(f"== {f['store']}: {f['graph_nodes']} lineage graph nodes ==")
    print(
        f"graph build: old {f['build_old_s']} s, new {f['build_new_s']} s; warm-up after a sync {f['warm_up_s']} s; "
        f"version check {f['version_check_ms']} ms"
    )
    print(f"{'question':<40} {'p50 ms':>9} {'p95 ms':>9} {'n':>4}")
    rows = (
        ("/dna blast, warm (new)", f["warm_blast"]),
        ("/dna blast, old (graph per question)", f["old_blast"]),
        ("/dna why rules, warm (new)", f["warm_why"]),
        ("/dna why rules, warm, heap not frozen", f["warm_why_unfrozen"]),
        ("/dna why rules, old (graph per question)", f["old_why"]),
        ("blast service call, cold (new)", f["cold_service_blast"]),
    )
    for name, x in rows:
        print(f"{name:<40} {x['p50_ms']:>9} {x['p95_ms']:>9} {x['n']:>4}")
    c = f["cold_process"]
    print(
        f"cold `dnabot blast X --json` process: {c['blast_s']} s (best of {len(c['runs_s'])}: {c['runs_s']}); "
        f"`dnabot --help` alone {c['help_s']} s; graph builds for {f['warm_blast']['n']} blasts + "
        f"{f['warm_why']['n']} whys: {f['warm_builds']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="a 10k-table bench store built before (skips the syncs)")
    parser.add_argument("--calls", type=int, default=50, help="questions per warm figure")
    parser.add_argument("--nodes", type=int, default=100_000, help="graph nodes of the large store")
    parser.add_argument("--skip-100k", action="store_true", help="only the 10k-table store")
    args = parser.parse_args()
    for var in NO_LLM:
        os.environ.pop(var, None)
    workdir = Path(tempfile.mkdtemp(prefix="dnabot-answer-bench-"))
    try:
        small = args.store or workdir / "10k.db"
        if args.store is None:
            print("building the 10k-table store (simulator, full sync, 1 % changed, incremental sync)…", flush=True)
            build_store(small)
        figures = [bench(small, args.calls, "10k tables")]
        report(figures[-1])
        if not args.skip_100k:
            large = workdir / "100k.db"
            scale_store(small, large, args.nodes)
            figures.append(bench(large, args.calls, f"{args.nodes // 1000}k+ nodes"))
            report(figures[-1])
        print(json.dumps(figures))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
