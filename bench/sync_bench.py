"""Sync benchmark: synthetic 1k/10k-table catalogs served by the simulator on loopback; prints the figures.

For each size it starts the simulator in its own process, then measures:
- the fetch-and-parse floor: the requests a full sync makes on the simulator's version (version, test cases,
  the incident list paged by cursor, pipelines then every other collection, the lineage of every entity
  started while the listing pages, users and teams; same fields, page size and concurrency), JSON-decoded only;
- a full sync into a fresh store (`dnabot sync --json` in a child process: time, peak RSS of that process),
  interleaved with the floor (floor, sync, floor, sync, floor, sync) and best of three of each, so the ratio
  survives a noisy machine;
- a no-change re-sync, full and incremental (snapshot rows written must be 0);
- a 1 %-changed re-sync (1 % of tables get a column dropped/renamed/retyped through the admin API), incremental;
- another 1 % change synced *with* the incident pipeline after it (what `dnabot sync` does by default);
- the lineage sweep with its defaults (OpenMetadata 1.x emits no change event for a lineage edit): requests per
  incremental tick, the average load on OpenMetadata (requests per tick / sync interval), and the time to detect
  a removed edge: the edge whose nearer end the sweep reaches last from its cursor is deleted through
  `DELETE /api/v1/lineage/…`, then incremental ticks run until one records `lineage_edge_removed`
  (time to detect = ticks × interval); and a quiet tick after the 1 % changes (what the events look-back re-reads);
- on OpenMetadata 2.0.7, when the simulator has `--om-version`: the same tick and removal, where the sync reads
  lineage changes from `/api/v1/audit/logs` instead of sweeping;
- the rows in the store.
Targets (2 cores): 10k full sync ≤ 30 s and ≤ 1.5× the floor, peak RSS ≤ 400 MB, no-change writes 0 snapshot
rows, 1 % change ≤ 20 % of the full sync, sweep load ≤ 5 requests/s on OpenMetadata.
Usage: `python bench/sync_bench.py [--sizes 1000,10000] [--postgres]`.
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
from collections.abc import Callable
from pathlib import Path

import benchlib  # bench/ is the script directory: first on sys.path
import httpx
from sqlalchemy import Engine, Row, create_engine, func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage.openmetadata import fqn as fqnlib  # noqa: E402
from storage.openmetadata import versions as om_versions  # noqa: E402
from storage.openmetadata.models import ENTITY_COLLECTIONS  # noqa: E402
from storage.persistence.models import Change, Entity, LineageEdge, Snapshot, SyncRun  # noqa: E402
from storage.sync.run import SyncOptions, sweep_size  # noqa: E402

TOKEN = "bench-token"
PAGE_SIZE = 500
CONCURRENCY = 8
ROUNDS = 3  # floor and full sync, interleaved, best of each
V2 = "2.0.7"
SWEEP = SyncOptions()  # the defaults a deployment runs with (interval, sweep period, minimum slice)
NO_FULL_REFRESH = str(10**9)  # DNABOT_FULL_REFRESH_SECONDS: the incremental ticks never turn into a full run
REMOVED = "lineage_edge_removed"  # the change kind of a removed edge (storage/domain/diff.py)


def simulator_has_versions() -> bool:
    """Whether `dnabot simulator` takes `--om-version` (being added)."""
    env = os.environ | {"COLUMNS": "200"}
    args = [sys.executable, "-m", "bot.cli", "simulator", "--help"]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    return "--om-version" in done.stdout


def start_simulator(size: int, version: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    return benchlib.start_simulator(size, TOKEN, version, root=ROOT, timeout=120)


async def floor(url: str) -> tuple[float, int]:
    """The requests of a full sync, JSON-decoded only: the time no sync can beat."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    slots = asyncio.Semaphore(CONCURRENCY)  # the client bounds all its requests, lists and lineage alike
    queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
    started = time.perf_counter()
    requests = 0
    async with httpx.AsyncClient(base_url=f"{url}/api/v1/", headers=headers, limits=limits, timeout=60) as client:

        async def get(path: str, params: dict[str, str] | None = None) -> dict:
            nonlocal requests
            async with slots:
                requests += 1
                response = await client.get(path, params=params)
            response.raise_for_status()  # a request the server refuses would make the floor meaningless
            return response.json()

        async def pages(path: str, params: dict[str, str]) -> list[dict]:
            items, after = [], None
            while True:
                body = await get(path, {**params, "limit": str(PAGE_SIZE)} | ({"after": after} if after else {}))
                items.extend(body["data"])
                after = body.get("paging", {}).get("after")
                if not after:
                    return items

        async def incidents() -> None:
            """The incident list pages by cursor: no `offset` first, then `offset=<paging.after>`."""
            now = int(time.time() * 1000)
            params = {"startTs": str(now - 30 * 86_400_000), "endTs": str(now + 86_400_000), "latest": "true"}
            params["limit"] = str(PAGE_SIZE)
            while True:
                body = await get("dataQuality/testCases/testCaseIncidentStatus", params)
                after = (body.get("paging") or {}).get("after")
                if not body["data"] or not after:
                    return
                params = {**params, "offset": after}

        async def lineage_worker() -> None:
            while (item := await queue.get()) is not None:
                entity_type, name = item
                path = f"lineage/{entity_type}/name/{fqnlib.url_segment(name)}"
                await get(path, {"upstreamDepth": "1", "downstreamDepth": "1"})

        async def listing() -> None:
            profile = om_versions.profile_for((await get("system/version"))["version"])
            await pages("dataQuality/testCases", {"fields": profile.fields("testCase"), "include": "non-deleted"})
            await incidents()
            for entity_type in ["pipeline", *(t for t in ENTITY_COLLECTIONS if t != "pipeline")]:
                params = {"fields": profile.fields(entity_type), "include": "non-deleted"}
                for item in await pages(ENTITY_COLLECTIONS[entity_type][0], params):
                    queue.put_nowait((entity_type, item["fullyQualifiedName"]))
            for _ in range(CONCURRENCY):
                queue.put_nowait(None)

        workers = [asyncio.create_task(lineage_worker()) for _ in range(CONCURRENCY)]
        await asyncio.gather(listing(), *workers)
        for people in ("users", "teams"):
            await pages(people, {"include": "non-deleted"})
    return time.perf_counter() - started, requests


def run_sync(url: str, db_url: str, mode: str, incidents: bool = False) -> tuple[dict, float, float]:
    """`dnabot sync --json` in a child process; returns (summary, wall seconds, peak RSS MB of the child)."""
    env = os.environ | {
        "OPENMETADATA_URL": url,
        "OPENMETADATA_TOKEN": TOKEN,
        "DATABASE_URL": db_url,
        "DNABOT_OM_PAGE_SIZE": str(PAGE_SIZE),
        "DNABOT_OM_CONCURRENCY": str(CONCURRENCY),
        "DNABOT_FULL_REFRESH_SECONDS": NO_FULL_REFRESH,
    }
    args = [sys.executable, "-m", "bot.cli", "sync", "--json"] + ([f"--{mode}"] if mode != "auto" else [])
    args += [] if incidents else ["--no-incidents"]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves to read its own peak RSS
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        text_out, text_err = out.read(), err.read()
    if not text_out:
        raise SystemExit(f"sync failed: {text_err.decode()[-2000:]}")
    summary = json.loads(text_out)
    if summary.get("status") != "succeeded":
        raise SystemExit(f"{mode} sync failed: {summary.get('error')}")
    return summary, wall, usage.ru_maxrss / 1024


def mutate(url: str, size: int, offset: int = 0) -> int:
    """Change 1 % of the tables through the admin API: drop, rename, retype a column in turn."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    changed = 0
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        tables = []
        after = None
        while True:
            params = {"limit": "1000", "fields": "columns"} | ({"after": after} if after else {})
            body = client.get("/api/v1/tables", params=params).json()
            tables += [(t["fullyQualifiedName"], [c["name"] for c in t["columns"]]) for t in body["data"]]
            after = body.get("paging", {}).get("after")
            if not after:
                break
        step = max(1, len(tables) // max(1, size // 100))
        for i, (fqn, cols) in enumerate(tables[offset::step][: max(1, size // 100)]):
            base, col = f"/admin/tables/{fqnlib.url_segment(fqn)}/columns", cols[-1]
            if i % 3 == 0:
                response = client.delete(f"{base}/{col}")
            elif i % 3 == 1:
                response = client.post(f"{base}/{col}/rename", json={"newName": col + "_v2"})
            else:
                response = client.post(f"{base}/{col}/retype", json={"dataType": "TEXT"})
            response.raise_for_status()
            changed += 1
    return changed


def engine_for(db_url: str) -> Engine:
    return create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))


def rows(db_url: str) -> dict[str, int]:
    engine = engine_for(db_url)
    with engine.connect() as conn:
        out = {
            m.__tablename__: conn.scalar(select(func.count()).select_from(m))
            for m in (Entity, Snapshot, LineageEdge, Change, SyncRun)
        }
    engine.dispose()
    return out


def fresh_db(postgres: bool, workdir: Path, drops: list[Callable[[], None]]) -> str:
    """A new, migrated store (a SQLite file in its own folder under `workdir`, or a PostgreSQL database);
    its `drop` goes into `drops`."""
    folder = Path(tempfile.mkdtemp(dir=workdir))
    db_url, drop = benchlib.fresh_db(postgres, folder, "dnabot_bench")
    drops.append(drop)
    env = os.environ | {"DATABASE_URL": db_url}
    subprocess.run([sys.executable, "-m", "bot.cli", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    return db_url


def interleaved(url: str, postgres: bool, workdir: Path, drops: list[Callable[[], None]]) -> dict:
    """Floor, full sync, floor, full sync, …: each full sync into a fresh store; the last store is kept."""
    floors, fulls = [], []
    for _ in range(ROUNDS):
        floors.append(asyncio.run(floor(url)))
        db_url = fresh_db(postgres, workdir, drops)
        fulls.append(run_sync(url, db_url, "full"))
    best = min(range(ROUNDS), key=lambda i: fulls[i][1])
    return {
        "db_url": db_url,
        "floor_s": min(s for s, _ in floors),
        "floor_runs_s": [round(s, 2) for s, _ in floors],
        "floor_requests": floors[0][1],
        "full": fulls[best][0],
        "full_s": fulls[best][1],
        "full_runs_s": [round(wall, 2) for _, wall, _ in fulls],
        "full_rss": max(rss for _, _, rss in fulls),
    }


def latest_edge(db_url: str, cursor: str | None) -> tuple[dict, int, int]:
    """The live edge whose nearer end the sweep reaches last from `cursor` (the worst case to detect), its
    position in the sweep's order (FQN order, from just after the cursor, wrapping), and the catalog size."""
    engine = engine_for(db_url)
    with engine.connect() as conn:
        known = sorted(conn.execute(select(Entity.fqn).where(Entity.deleted_at.is_(None))).scalars())
        edges = conn.execute(
            select(LineageEdge.from_fqn, LineageEdge.from_type, LineageEdge.to_fqn, LineageEdge.to_type).where(
                LineageEdge.removed_at.is_(None)
            )
        ).all()
    engine.dispose()
    start = bisect.bisect_right(known, cursor) if cursor else 0
    index = {fqn: (i - start) % len(known) for i, fqn in enumerate(known)}

    def reached(e: Row) -> int:  # pipelines have their lineage re-read on every tick
        return min(0 if t == "pipeline" else index[f] for f, t in ((e.from_fqn, e.from_type), (e.to_fqn, e.to_type)))

    edge = max(edges, key=reached)
    return edge._asdict(), reached(edge), len(known)


def remove_edge(url: str, edge: dict) -> None:
    """`DELETE /api/v1/lineage/{fromType}/name/{fromFQN}/{toType}/name/{toFQN}`: what a user's edit does."""
    seg = fqnlib.url_segment
    path = f"/api/v1/lineage/{edge['from_type']}/name/{seg(edge['from_fqn'])}/{edge['to_type']}/name/"
    path += seg(edge["to_fqn"])
    httpx.delete(url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).raise_for_status()


def detect_removed_edge(url: str, db_url: str, cursor: str | None) -> dict:
    """Remove the worst-placed edge, then run incremental ticks until one records it removed."""
    edge, position, catalog = latest_edge(db_url, cursor)
    per_tick = sweep_size(catalog, SWEEP)
    remove_edge(url, edge)
    ticks: list[tuple[dict, float]] = []
    while len(ticks) <= catalog // max(1, per_tick) + 1:  # a whole lap and one more
        summary, wall, _ = run_sync(url, db_url, "incremental")
        ticks.append((summary, wall))
        if summary["changes_by_kind"].get(REMOVED):
            break
    detected = bool(ticks[-1][0]["changes_by_kind"].get(REMOVED))
    requests = [s["requests"] for s, _ in ticks]
    return {
        "edge": f"{edge['from_fqn']} -> {edge['to_fqn']}",
        "edge_sweep_position": position,
        "catalog": catalog,
        "slice": per_tick,
        "predicted_ticks": position // max(1, per_tick) + 1 if per_tick else None,
        "ticks": len(ticks) if detected else None,
        "ticks_run": len(ticks),
        "ticks_wall_s": round(sum(w for _, w in ticks), 2),
        "tick_wall_s": [round(w, 2) for _, w in ticks],
        "requests_per_tick": requests,
        "sweep": [s["lineage_sweep"] for s, _ in ticks],
        "detect_s": len(ticks) * SWEEP.sync_interval_seconds if detected else None,
    }


def load(requests: list[int]) -> float:
    """Average requests per second on OpenMetadata at one tick per sync interval."""
    return round(sum(requests) / len(requests) / SWEEP.sync_interval_seconds, 2)


def bench(size: int, postgres: bool) -> dict:
    proc, url = start_simulator(size)
    workdir = Path(tempfile.mkdtemp(prefix="dnabot-bench-"))
    drops: list[Callable[[], None]] = []
    try:
        first = interleaved(url, postgres, workdir, drops)
        db_url, full, full_s = first["db_url"], first["full"], first["full_s"]
        same_full, same_full_s, _ = run_sync(url, db_url, "full")
        same_inc, same_inc_s, _ = run_sync(url, db_url, "incremental")
        # the sweep before any change: its ticks carry no re-read events
        sweep = detect_removed_edge(url, db_url, (same_inc["lineage_sweep"] or {}).get("cursor"))
        changed = mutate(url, size)
        inc, inc_s, inc_rss = run_sync(url, db_url, "incremental")
        # another 1 % (other tables), this time with the incident pipeline after the sync, as `dnabot sync` does
        changed_again = mutate(url, size, offset=1)
        with_incidents, with_incidents_s, _ = run_sync(url, db_url, "incremental", incidents=True)
        quiet, _, _ = run_sync(url, db_url, "incremental")  # nothing changed since the last tick
        return {
            "tables": size,
            "store": "postgresql" if postgres else "sqlite",
            "entities": full["entities_seen"],
            "floor_s": round(first["floor_s"], 2),
            "floor_runs_s": first["floor_runs_s"],
            "floor_requests": first["floor_requests"],
            "full_sync_s": round(full_s, 2),
            "full_sync_runs_s": first["full_runs_s"],
            "full_sync_requests": full["requests"],
            "full_sync_internal_s": full["duration_seconds"],
            "full_fetch_s": full["fetch_seconds"],
            "full_write_s": full["write_seconds"],
            "full_vs_floor": round(full_s / first["floor_s"], 2),
            "full_peak_rss_mb": round(first["full_rss"], 1),
            "full_snapshots": full["snapshots_written"],
            "nochange_full_s": round(same_full_s, 2),
            "nochange_full_fetch_s": same_full["fetch_seconds"],
            "nochange_full_snapshots": same_full["snapshots_written"],
            "nochange_incremental_s": round(same_inc_s, 2),
            "nochange_incremental_snapshots": same_inc["snapshots_written"],
            "nochange_incremental_requests": same_inc["requests"],
            "changed_tables": changed,
            "one_percent_incremental_s": round(inc_s, 2),
            "one_percent_snapshots": inc["snapshots_written"],
            "one_percent_changes": inc["changes_by_kind"],
            "one_percent_vs_full": round(inc_s / full_s, 3),
            "incremental_peak_rss_mb": round(inc_rss, 1),
            "with_incidents_changed_tables": changed_again,
            "with_incidents_incremental_s": round(with_incidents_s, 2),
            "with_incidents_pipeline": with_incidents.get("incidents"),
            "sweep": sweep | {"load_rps": load(sweep["requests_per_tick"])},
            "quiet_tick_after_changes": {k: quiet[k] for k in ("requests", "events_seen", "entities_seen")},
            "rows": rows(db_url),
        }
    finally:
        stop(proc, drops, workdir)


def stop(proc: subprocess.Popen[bytes], drops: list[Callable[[], None]], workdir: Path) -> None:
    """Stop the simulator, drop the stores, remove the files."""
    proc.terminate()
    proc.wait(10)
    for drop in drops:
        drop()
    shutil.rmtree(workdir, ignore_errors=True)


def bench_v2(size: int, postgres: bool) -> dict:
    """On 2.0 a tick reads lineage edits from the audit log: its requests, and the ticks to see a removed edge."""
    proc, url = start_simulator(size, V2)
    workdir = Path(tempfile.mkdtemp(prefix="dnabot-bench-v2-"))
    drops: list[Callable[[], None]] = []
    try:
        db_url = fresh_db(postgres, workdir, drops)
        full, full_s, _ = run_sync(url, db_url, "full")
        tick, tick_s, _ = run_sync(url, db_url, "incremental")
        sweep = detect_removed_edge(url, db_url, (tick["lineage_sweep"] or {}).get("cursor"))
        return {
            "om_version": full["om_version"],
            "full_sync_s": round(full_s, 2),
            "nochange_tick_s": round(tick_s, 2),
            "nochange_tick_requests": tick["requests"],
            "nochange_tick_lineage": tick["lineage_sweep"],
            "sweep": sweep | {"load_rps": load([tick["requests"], *sweep["requests_per_tick"]])},
        }
    finally:
        stop(proc, drops, workdir)


def report(f: dict) -> None:
    """The figures issue 9 asks for, one per line (the JSON line follows)."""
    s = f["sweep"]
    print(f"== {f['tables']} tables, {f['entities']} entities, {f['store']} ==")
    print(f"floor, best of {ROUNDS}: {f['floor_s']} s {f['floor_runs_s']} ({f['floor_requests']} requests)")
    print(f"full sync, best of {ROUNDS}: {f['full_sync_s']} s {f['full_sync_runs_s']} ({f['full_sync_requests']} req)")
    print(f"full sync / floor: {f['full_vs_floor']}x (target <= 1.5x at 10k)")
    print(f"peak RSS of the full sync: {f['full_peak_rss_mb']} MB (target <= 400 MB)")
    print(
        f"no-change snapshot rows: full {f['nochange_full_snapshots']}, incremental "
        f"{f['nochange_incremental_snapshots']} (target 0)"
    )
    print(
        f"1 % change ({f['changed_tables']} tables): {f['one_percent_incremental_s']} s = "
        f"{f['one_percent_vs_full']} of the full sync (target <= 0.2); {f['one_percent_snapshots']} snapshots; "
        f"with incidents {f['with_incidents_incremental_s']} s"
    )
    print_sweep(s, "lineage sweep (1.x)")
    q = f["quiet_tick_after_changes"]
    print(
        f"a quiet tick after the 1 % changes: {q['requests']} requests ({q['events_seen']} events re-read, "
        f"{q['entities_seen']} entities re-read) vs {f['nochange_incremental_requests']} before any change"
    )


def print_sweep(s: dict, title: str) -> None:
    reads = [x.get("read") if x else None for x in s["sweep"]]
    source = s["sweep"][0].get("source") if s["sweep"][0] else None
    how = f"the ends of the edges the {source} names"
    if source == "sweep":
        how = f"a slice of {s['slice']} of {s['catalog']} entities"
    print(
        f"{title}: each tick reads the lineage of {how}; requests per tick {s['requests_per_tick']} "
        f"(lineage reads {reads}); one tick every {SWEEP.sync_interval_seconds:.0f} s"
    )
    print(f"  average load on OpenMetadata: {s['load_rps']} requests/s (target <= 5)")
    predicted = f" (predicted {s['predicted_ticks']})" if source == "sweep" else ""
    print(
        f"  removed edge {s['edge']} (sweep position {s['edge_sweep_position']}): detected after "
        f"{s['ticks']} tick(s){predicted} = {s['detect_s']} s at the default interval; "
        f"those runs took {s['ticks_wall_s']} s wall {s['tick_wall_s']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--postgres", action="store_true", help="use a throwaway PostgreSQL database")
    args = parser.parse_args()
    versions = simulator_has_versions()
    for size in (int(s) for s in args.sizes.split(",")):
        figures = bench(size, args.postgres)
        report(figures)
        if versions:
            figures["v2"] = bench_v2(size, args.postgres)
            v2 = figures["v2"]
            print(
                f"OpenMetadata {v2['om_version']}: no-change tick {v2['nochange_tick_requests']} requests, "
                f"lineage via {v2['nochange_tick_lineage']}"
            )
            print_sweep(v2["sweep"], f"lineage on {V2}")
        else:
            print(f"OpenMetadata {V2}: skipped (the simulator has no --om-version yet)")
        print(json.dumps(figures))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
