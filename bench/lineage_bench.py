"""Lineage bench: the whole-graph search read against the per-entity sweep, at 1k and 10k tables, side by side.

For each size the simulator serves a synthetic catalog as OpenMetadata 1.13.6 (search-backed lineage reads exist,
no lineage events) in its own process, a full sync fills a throwaway SQLite store, then, interleaved and best of
`ROUNDS` each (one fresh client per measurement, requests and bytes from its counters):
- (a) one whole-graph read, `GET /api/v1/lineage/getPlatformLineage?view=all` (`OpenMetadataClient.
  platform_lineage`, JSON decoded and resolved to edges), then its comparison with the store's live edges
  (`storage.sync.lineage.compare`): documents, how many the answer covers, whether it hit the 10,000 cap;
- (b) the per-entity slice of the default sweep (`sweep_size` of `SyncOptions()`), `GET /api/v1/lineage/{type}/
  name/{fqn}` each, at the client's concurrency;
- (c) a full per-entity lineage pass over every entity the store knows;
- the time to detect a removed edge with each strategy: the worst-placed live edge for the strategy (the sweep:
  the edge whose nearer end the sweep reaches last from its cursor; search: the same, among the edges whose
  downstream end the answer does not cover, when there are any) is deleted through `DELETE /api/v1/lineage/…`,
  then incremental syncs run (in process, `run_sync`) until one records `lineage_edge_removed`; detection time =
  ticks × `sync_interval_seconds`, plus the measured wall time of those ticks.
The simulator is a stand-in: its search answer is built in Python from the catalog, not by Elasticsearch, so the
figures compare the client-side cost (bytes, decoding, requests) more faithfully than the server-side one.
Usage: `python bench/lineage_bench.py [--sizes 1000,10000] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import benchlib  # bench/ is the script directory: first on sys.path
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.openmetadata import fqn as fqnlib  # noqa: E402
from storage.openmetadata.client import OpenMetadataClient  # noqa: E402
from storage.persistence import db, store  # noqa: E402
from storage.sync.fetch import EdgeState  # noqa: E402
from storage.sync.lineage import compare  # noqa: E402
from storage.sync.run import SyncOptions, run_sync, sweep_size, sweep_slice  # noqa: E402

TOKEN = "bench-token"
VERSION = "1.13.6"
PAGE_SIZE = 500
CONCURRENCY = 8
DEFAULTS = SyncOptions()  # the interval, window and minimum slice a deployment runs with
REMOVED = "lineage_edge_removed"
SWEEP_ONLY = {"lineage_search_cost": -1}
SEARCH_ALWAYS = {"lineage_search_cost": 0}


def start_simulator(size: int) -> tuple[subprocess.Popen[bytes], str]:
    """`dnabot simulator --catalog synthetic:N` as OpenMetadata `VERSION` in a child process, once it answers."""
    return benchlib.start_simulator(size, TOKEN, VERSION, root=ROOT)


def client(url: str) -> OpenMetadataClient:
    return OpenMetadataClient(url, TOKEN, page_size=PAGE_SIZE, concurrency=CONCURRENCY, timeout=300)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (`/proc/<pid>/stat`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measured(
    url: str, server_pid: int, work: Callable[[OpenMetadataClient], Awaitable[Any]]
) -> tuple[Any, dict[str, Any]]:
    """`work(client)` on a fresh client: its result, wall seconds, requests, response bytes, and the CPU seconds
    it cost the simulator (the server side) and this process (the client side: decoding, resolving)."""
    async with client(url) as om:
        server, mine, started = cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        out = await work(om)
        wall = time.perf_counter() - started
        figures = {"s": round(wall, 3), "requests": om.stats.requests, "mb": round(om.stats.bytes / 1e6, 1)}
        figures |= {"server_cpu_s": round(cpu_seconds(server_pid) - server, 2)}
        return out, figures | {"client_cpu_s": round(time.process_time() - mine, 2)}


def sync(db_url: str, url: str, **options: Any) -> tuple[dict[str, Any], float]:
    """One run of `run_sync` in process; (its summary, wall seconds)."""
    engine = db.make_engine(db_url)

    async def go() -> Any:
        async with client(url) as om:
            return await run_sync(engine, om, SyncOptions(**options))

    started = time.perf_counter()
    try:
        result = asyncio.run(go())
    finally:
        engine.dispose()
    if not result.ok:
        raise SystemExit(f"sync failed: {result.error}")
    return result.to_dict(), time.perf_counter() - started


def stored(db_url: str) -> tuple[dict[str, str], list[Any]]:
    """(FQN → type of every live entity, every live edge) in the store."""
    engine = db.make_engine(db_url)
    try:
        with db.session_factory(engine)() as session:
            return store.entity_types(session), [EdgeState.of(e) for e in store.live_edges(session)]
    finally:
        engine.dispose()


def worst_edge(db_url: str, cursor: str | None, among: set[str] | None = None) -> tuple[Any, int]:
    """The live edge whose nearer end the sweep reaches last from `cursor` (downstream end in `among`, when
    given and possible), and its position in the sweep's order."""
    known, edges = stored(db_url)
    order = sorted(known)
    start = bisect.bisect_right(order, cursor) if cursor else 0
    index = {fqn: (i - start) % len(order) for i, fqn in enumerate(order)}
    candidates = [e for e in edges if among is None or e.to_fqn in among] or edges

    def reached(e: Any) -> int:
        return min(index.get(e.from_fqn, 0), index.get(e.to_fqn, 0))

    edge = max(candidates, key=reached)
    return edge, reached(edge)


def remove(url: str, edge: Any) -> None:
    """`DELETE /api/v1/lineage/{fromType}/name/{fromFQN}/{toType}/name/{toFQN}`: what a user's edit does."""
    seg = fqnlib.url_segment
    path = f"/api/v1/lineage/{edge.from_type}/name/{seg(edge.from_fqn)}/{edge.to_type}/name/{seg(edge.to_fqn)}"
    httpx.delete(url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).raise_for_status()


def detect(db_url: str, url: str, options: dict[str, Any], among: set[str] | None) -> dict[str, Any]:
    """Remove the strategy's worst-placed edge, then tick until a run records it removed."""
    last, _ = sync(db_url, url, mode="incremental", **options)  # settle the cursor with this strategy
    cursor = (last.get("lineage_sweep") or {}).get("cursor")
    edge, position = worst_edge(db_url, cursor, among)
    remove(url, edge)
    catalog = len(stored(db_url)[0])
    ticks: list[tuple[dict[str, Any], float]] = []
    while len(ticks) <= catalog // max(1, sweep_size(catalog, DEFAULTS)) + 1:  # a whole lap and one more
        summary, wall = sync(db_url, url, mode="incremental", **options)
        ticks.append((summary, wall))
        if summary["changes_by_kind"].get(REMOVED):
            break
    found = bool(ticks[-1][0]["changes_by_kind"].get(REMOVED))
    return {
        "edge": f"{edge.from_fqn} -> {edge.to_fqn}",
        "sweep_position": position,
        "ticks": len(ticks) if found else None,
        "detect_s": len(ticks) * DEFAULTS.sync_interval_seconds if found else None,
        "wall_s": [round(w, 2) for _, w in ticks],
        "requests": [s["requests"] for s, _ in ticks],
        "lineage": [s["lineage_sweep"] for s, _ in ticks],
    }


async def whole_graph(om: OpenMetadataClient) -> Any:
    return await om.platform_lineage()


def bench(size: int, rounds: int) -> dict[str, Any]:
    proc, url = start_simulator(size)
    workdir = Path(tempfile.mkdtemp(prefix="dnabot-lineage-bench-"))
    try:
        db_url = f"sqlite:///{workdir / 'bench.db'}"
        db.migrate(db_url)
        full, full_s = sync(db_url, url, mode="full")
        known, edges = stored(db_url)
        items = sorted((etype, fqn) for fqn, etype in known.items())
        per_tick = sweep_size(len(known), DEFAULTS)
        piece = sweep_slice(known, None, per_tick)
        a, b, c = [], [], []
        documents: dict[str, Any] = {}
        compare_s = []
        for _ in range(rounds):
            documents, figures = asyncio.run(measured(url, proc.pid, whole_graph))
            started = time.perf_counter()
            _, verdict = compare(documents, edges, known, piece)
            compare_s.append(time.perf_counter() - started)
            a.append(figures | {"verdict": verdict})
            b.append(asyncio.run(measured(url, proc.pid, lambda om: om.lineage_many(piece)))[1])
            c.append(asyncio.run(measured(url, proc.pid, lambda om: om.lineage_many(items)))[1])
        uncovered = {fqn for fqn in known if fqn not in documents}
        del documents
        best = {k: min(v, key=lambda x: x["s"]) for k, v in {"search": a, "slice": b, "full_pass": c}.items()}
        sweep = detect(db_url, url, SWEEP_ONLY, None)
        search = detect(db_url, url, SEARCH_ALWAYS, uncovered or None)
        return {
            "tables": size,
            "entities": len(known),
            "edges": len(edges),
            "full_sync_s": round(full_s, 2),
            "full_sync_requests": full["requests"],
            "slice": per_tick,
            "best": best,
            "runs_s": {"search": [x["s"] for x in a], "slice": [x["s"] for x in b], "full_pass": [x["s"] for x in c]},
            "compare_s": round(min(compare_s), 3),
            "uncovered": len(uncovered),
            "detect": {"sweep": sweep, "search": search},
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def report(f: dict[str, Any]) -> None:
    a, b, c = f["best"]["search"], f["best"]["slice"], f["best"]["full_pass"]
    v = a["verdict"]
    print(f"== {f['tables']} tables: {f['entities']} entities, {f['edges']} edges, OpenMetadata {VERSION} ==")
    print(f"full sync {f['full_sync_s']} s ({f['full_sync_requests']} requests)")
    print(f"{'strategy':<34} {'wall s':>8} {'requests':>9} {'MB':>8} {'OM cpu s':>9} {'bot cpu s':>9}   runs")
    rows = (
        ("(a) one whole-graph read", a, f["runs_s"]["search"]),
        (f"(b) default slice ({f['slice']} entities)", b, f["runs_s"]["slice"]),
        (f"(c) full pass ({f['entities']} entities)", c, f["runs_s"]["full_pass"]),
    )
    for name, x, runs in rows:
        cpu = f"{x['server_cpu_s']:>9} {x['client_cpu_s']:>9}"
        print(f"{name:<34} {x['s']:>8} {x['requests']:>9} {x['mb']:>8} {cpu}   {runs}")
    print(
        f"(a) answer: {v['documents']} documents, {v['covered']} entities covered, truncated={v['truncated']}, "
        f"{f['uncovered']} entities not in it; comparing with the store took {f['compare_s']} s"
    )
    print(f"(a)/(b) wall: {round(a['s'] / b['s'], 2) if b['s'] else None}x")
    for name, d in f["detect"].items():
        reads = [x.get("read") for x in d["lineage"]]
        print(
            f"detect a removed edge, {name}: {d['ticks']} tick(s) = {d['detect_s']} s at one tick per "
            f"{DEFAULTS.sync_interval_seconds:.0f} s; tick walls {d['wall_s']} s, requests {d['requests']}, "
            f"per-entity lineage reads {reads}; edge {d['edge']} (sweep position {d['sweep_position']})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        figures = bench(size, args.rounds)
        report(figures)
        print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
