"""`make demo`: the DNA store on embedded defaults — simulator, sync, a breaking rename upstream, sync, answers."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from bot import services, terminal
from bot.settings import Settings
from storage.fqn import url_segment
from storage.simulator import Catalog, create_app, run_in_thread

TOKEN = "demo-token"
STG_ORDERS = "warehouse.shop.staging.stg_orders"


def _save(out: Path, name: str, data: Any) -> Path:
    path = out / name
    path.write_text(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _sync(console: Console, settings: Settings) -> Any:
    with terminal.SyncProgress(console) as progress:
        result = asyncio.run(services.sync(settings, progress=progress.update))
    terminal.print_sync_result(console, result)
    if not result.ok:
        raise SystemExit(f"demo sync failed: {result.error}")
    return result


def run(console: Console, out_dir: str = "demo-out") -> None:
    """Run the whole store story against the bundled simulator; files land in `out_dir`."""
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    handle = run_in_thread(create_app(Catalog.demo(), token=TOKEN))
    settings = Settings(
        database_url=f"sqlite:///{(out / 'dnabot.db').resolve()}",
        openmetadata_url=handle.url,
        openmetadata_token=TOKEN,
    )
    try:
        _story(console, settings, handle.url, out)
    finally:
        handle.stop()


def _story(console: Console, settings: Settings, om_url: str, out: Path) -> None:
    console.rule("[bold]DNA Bot demo[/] — the living DNA store")
    console.print(
        f"OpenMetadata simulator with the demo warehouse at {om_url}; store: {settings.database_url}\n"
        "1. First sync: every table, dashboard, chart, data model, pipeline and topic gets a DNA snapshot."
    )
    first = _sync(console, settings)
    _save(out, "sync-1.json", first.to_dict())
    before = datetime.now(UTC)

    console.rule("2. The DNA of staging.stg_orders")
    terminal.print_dna(console, services.dna(settings, "stg_orders", None), None)

    console.rule("3. Upstream, someone renames stg_orders.status → order_state")
    response = httpx.post(
        f"{om_url}/admin/tables/{url_segment(STG_ORDERS)}/columns/status/rename",
        json={"newName": "order_state", "user": "ben"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    response.raise_for_status()
    console.print(f"OpenMetadata now has {STG_ORDERS} at version {response.json().get('version')} (a change event).")

    console.rule("4. Next sync: incremental, from the change-events feed")
    second = _sync(console, settings)
    _save(out, "sync-2.json", second.to_dict())

    console.rule("5. What changed on stg_orders (dnabot timeline stg_orders --since 1h)")
    fqn, changes = services.timeline(settings, "stg_orders", before)
    terminal.print_timeline(console, fqn, before, changes)
    _save(out, "timeline.json", [services.change_json(c) for c in changes])

    console.rule("6. Who breaks downstream (dnabot blast stg_orders --column status)")
    radius = services.blast(settings, "stg_orders", "status", None)
    terminal.print_blast(console, radius)
    _save(out, "blast.json", services.blast_json(radius))

    console.rule("7. Time travel (dnabot dna stg_orders --at <before the rename>)")
    then = services.dna(settings, "stg_orders", before)
    now = services.dna(settings, "stg_orders", None)
    cols = lambda view: [c["name"] for c in view.genes["schema"]["columns"]]  # noqa: E731
    console.print(f"at {before.isoformat()}: {', '.join(cols(then))}")
    console.print(f"now: {', '.join(cols(now))}")
    console.print(
        f"\nFiles in {out}/: sync-1.json, sync-2.json, timeline.json, blast.json and the SQLite store dnabot.db "
        f"(try: DATABASE_URL=sqlite:///{out}/dnabot.db dnabot timeline stg_orders --since 1d)."
    )
