"""Sync benchmark: synthetic 1k/10k-table catalogs served by the simulator on loopback; prints the figures.

For each size it starts the simulator in its own process, then measures:
- the fetch-and-parse floor: the same requests as a full sync (lists, tests, incidents, lineage of every
  entity, same page size and concurrency), JSON-decoded and nothing else;
- a full sync into a fresh store (`dnabot sync --json` in a child process: time, peak RSS of that process);
- a no-change re-sync, full and incremental (snapshot rows written must be 0);
- a 1 %-changed re-sync (1 % of tables get a column dropped/renamed/retyped through the admin API), incremental;
- another 1 % change synced *with* the incident pipeline after it (what `dnabot sync` does by default);
- the rows in the store.
Targets (2 cores): 10k full sync ≤ 30 s and ≤ 1.5× the floor, peak RSS ≤ 400 MB, no-change writes 0 snapshot
rows, 1 % change ≤ 20 % of the full sync. Usage: `python bench/sync_bench.py [--sizes 1000,10000] [--postgres]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchlib  # bench/ is the script directory: first on sys.path
import httpx
from sqlalchemy import create_engine, func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage import fqn as fqnlib  # noqa: E402
from storage import om_versions  # noqa: E402
from storage.models import Change, Entity, LineageEdge, Snapshot, SyncRun  # noqa: E402
from storage.om_models import ENTITY_COLLECTIONS  # noqa: E402

SERVER_VERSION = "1.13.6"  # what the simulator reports by default

TOKEN = "bench-token"
PAGE_SIZE = 500
CONCURRENCY = 8


def start_simulator(size: int) -> tuple[subprocess.Popen[bytes], str]:
    port = benchlib.free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "simulator",
            "--catalog",
            f"synthetic:{size}",
            "--port",
            str(port),
            "--token",
            TOKEN,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/system/version", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("simulator did not start")


async def floor(url: str) -> tuple[float, int]:
    """The same requests as a full sync, JSON-decoded only: the time no sync can beat."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    started = time.perf_counter()
    requests = 0
    async with httpx.AsyncClient(base_url=f"{url}/api/v1/", headers=headers, limits=limits, timeout=60) as client:

        async def pages(path: str, params: dict[str, str]) -> list[dict]:
            nonlocal requests
            items, after = [], None
            while True:
                query = {**params, "limit": str(PAGE_SIZE)} | ({"after": after} if after else {})
                body = (await client.get(path, params=query)).json()
                requests += 1
                items.extend(body["data"])
                after = body.get("paging", {}).get("after")
                if not after:
                    return items

        await pages("dataQuality/testCases", {"fields": om_versions.profile_for(SERVER_VERSION).fields("testCase")})
        now = int(time.time() * 1000)
        await client.get(
            "dataQuality/testCases/testCaseIncidentStatus",
            params={"startTs": now - 30 * 86_400_000, "endTs": now, "latest": "true", "limit": "1000"},
        )
        requests += 1
        entities: list[tuple[str, str]] = []
        profile = om_versions.profile_for(SERVER_VERSION)
        for entity_type, (collection, _) in ENTITY_COLLECTIONS.items():
            fields = profile.fields(entity_type)
            for item in await pages(collection, {"fields": fields, "include": "non-deleted"}):
                entities.append((entity_type, item["fullyQualifiedName"]))
        sem = asyncio.Semaphore(CONCURRENCY)

        async def lineage(entity_type: str, name: str) -> None:
            nonlocal requests
            async with sem:
                response = await client.get(
                    f"lineage/{entity_type}/name/{fqnlib.url_segment(name)}",
                    params={"upstreamDepth": "1", "downstreamDepth": "1"},
                )
                response.json()
                requests += 1

        await asyncio.gather(*(lineage(t, n) for t, n in entities))
    return time.perf_counter() - started, requests


def run_sync(url: str, db_url: str, mode: str, incidents: bool = False) -> tuple[dict, float, float]:
    """`dnabot sync --json` in a child process; returns (summary, wall seconds, peak RSS MB of the child)."""
    env = os.environ | {
        "OPENMETADATA_URL": url,
        "OPENMETADATA_TOKEN": TOKEN,
        "DATABASE_URL": db_url,
        "DNABOT_OM_PAGE_SIZE": str(PAGE_SIZE),
        "DNABOT_OM_CONCURRENCY": str(CONCURRENCY),
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
    return json.loads(text_out), wall, usage.ru_maxrss / 1024


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


def rows(db_url: str) -> dict[str, int]:
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        out = {
            m.__tablename__: conn.scalar(select(func.count()).select_from(m))
            for m in (Entity, Snapshot, LineageEdge, Change, SyncRun)
        }
    engine.dispose()
    return out


def fresh_db(postgres: bool, workdir: Path) -> tuple[str, Callable[[], None]]:
    return benchlib.fresh_db(postgres, workdir, "dnabot_bench")


def bench(size: int, postgres: bool) -> dict:
    proc, url = start_simulator(size)
    workdir = Path(tempfile.mkdtemp(prefix="dnabot-bench-"))
    db_url, drop = fresh_db(postgres, workdir)
    try:
        subprocess.run(
            [sys.executable, "-m", "bot.cli", "migrate"],
            cwd=ROOT,
            env=os.environ | {"DATABASE_URL": db_url},
            check=True,
            capture_output=True,
        )
        floor_s, floor_requests = asyncio.run(floor(url))
        full, full_s, full_rss = run_sync(url, db_url, "full")
        same_full, same_full_s, _ = run_sync(url, db_url, "full")
        same_inc, same_inc_s, _ = run_sync(url, db_url, "incremental")
        changed = mutate(url, size)
        inc, inc_s, inc_rss = run_sync(url, db_url, "incremental")
        # another 1 % (other tables), this time with the incident pipeline after the sync, as `dnabot sync` does
        changed_again = mutate(url, size, offset=1)
        with_incidents, with_incidents_s, _ = run_sync(url, db_url, "incremental", incidents=True)
        figures = {
            "tables": size,
            "store": "postgresql" if postgres else "sqlite",
            "entities": full["entities_seen"],
            "floor_s": round(floor_s, 2),
            "floor_requests": floor_requests,
            "full_sync_s": round(full_s, 2),
            "full_sync_internal_s": full["duration_seconds"],
            "full_fetch_s": full["fetch_seconds"],
            "full_write_s": full["write_seconds"],
            "nochange_full_fetch_s": same_full["fetch_seconds"],
            "full_vs_floor": round(full_s / floor_s, 2),
            "full_peak_rss_mb": round(full_rss, 1),
            "full_snapshots": full["snapshots_written"],
            "nochange_full_s": round(same_full_s, 2),
            "nochange_full_snapshots": same_full["snapshots_written"],
            "nochange_incremental_s": round(same_inc_s, 2),
            "nochange_incremental_snapshots": same_inc["snapshots_written"],
            "changed_tables": changed,
            "one_percent_incremental_s": round(inc_s, 2),
            "one_percent_snapshots": inc["snapshots_written"],
            "one_percent_changes": inc["changes_by_kind"],
            "one_percent_vs_full": round(inc_s / full_s, 3),
            "incremental_peak_rss_mb": round(inc_rss, 1),
            "with_incidents_changed_tables": changed_again,
            "with_incidents_incremental_s": round(with_incidents_s, 2),
            "with_incidents_pipeline": with_incidents.get("incidents"),
            "rows": rows(db_url),
        }
        return figures
    finally:
        proc.terminate()
        proc.wait(10)
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--postgres", action="store_true", help="use a throwaway PostgreSQL database")
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        figures = bench(size, args.postgres)
        print(json.dumps(figures))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
