"""`make demo`: on embedded defaults — simulator, sync, a breaking rename upstream, the incident, a revert."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console

from bot.blocks import render_incident_card, render_incident_thread
from bot.blocks.lineage_png import incident_png
from bot.blocks.text import blocks_to_text, builder_url
from bot.cli import terminal, terminal_incidents
from bot.cli.terminal_text import mrkdwn
from bot.core import services
from bot.core.settings import Settings, get_settings
from simulator import Catalog, create_app, run_in_thread
from storage.openmetadata.fqn import url_segment

TOKEN = "demo-token"
STG_ORDERS = "warehouse.shop.staging.stg_orders"
ORDERS_TEST = "warehouse.shop.analytics.orders.status.status_in_accepted_set"


def _save(out: Path, name: str, data: Any) -> Path:
    path = out / name
    path.write_text(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _slack_preview(console: Console, out: Path, detail: Any) -> None:
    """The incident's Slack card and thread as the bot posts them: readable text, JSON, Block Kit Builder link."""
    card = render_incident_card(detail.incident)
    thread = render_incident_thread(detail)
    console.rule("The Slack card DNA Bot posts for it (parent message; technical detail goes in the thread)")
    console.print(mrkdwn(blocks_to_text(card)), highlight=False)
    _save(out, "slack-card.json", {"blocks": card})
    _save(out, "slack-thread.json", [{"blocks": blocks} for blocks in thread])
    console.print(f"{len(thread)} thread replies and the lineage PNG follow. JSON: {out}/slack-card.json")
    (out / "slack-card.builder-url.txt").write_text(builder_url(card) + "\n", encoding="utf-8")
    console.print(f"Block Kit Builder link (open in a browser): {out}/slack-card.builder-url.txt")


def _post_for_real(console: Console, settings: Settings) -> None:
    """With SLACK_BOT_TOKEN and DNABOT_CHANNEL set, publish the incident threads to that Slack workspace."""
    if not (settings.slack_bot_token and (settings.channel or settings.routing_config)):
        console.print("(Set SLACK_BOT_TOKEN and DNABOT_CHANNEL to have the demo post these threads to Slack.)")
        return
    from bot.core.slack_client import build_client
    from bot.runtime import serve as runtime

    published = runtime.notifier_for(settings, build_client(settings)).publish(services.engine_for(settings))
    console.print(f"Posted to Slack: new threads for incidents {published.posted or 'none'}")


def _admin(om_url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    """A change made in OpenMetadata (through the simulator's admin API)."""
    response = httpx.post(f"{om_url}{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    response.raise_for_status()
    return response


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
    real = get_settings()  # Slack settings from the environment, if any: then the demo posts for real
    settings = real.model_copy(
        update={
            "database_url": f"sqlite:///{(out / 'dnabot.db').resolve()}",
            "openmetadata_url": handle.url,
            "openmetadata_token": SecretStr(TOKEN),
        }
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
    response = _admin(
        om_url,
        f"/admin/tables/{url_segment(STG_ORDERS)}/columns/status/rename",
        {"newName": "order_state", "user": "ben"},
    )
    console.print(f"OpenMetadata now has {STG_ORDERS} at version {response.json().get('version')} (a change event).")

    console.rule("4. Next sync: incremental, from the change-events feed")
    second = _sync(console, settings)
    _save(out, "sync-2.json", second.to_dict())
    during = datetime.now(UTC)

    console.rule("5. What changed on stg_orders (dnabot timeline stg_orders --since 1h)")
    fqn, changes = services.timeline(settings, "stg_orders", before)
    terminal.print_timeline(console, fqn, before, changes)
    _save(out, "timeline.json", [services.change_json(c) for c in changes])

    console.rule("6. Who breaks downstream (dnabot blast stg_orders --column status)")
    radius = services.blast(settings, "stg_orders", "status", None)
    terminal.print_blast(console, radius)
    _save(out, "blast.json", services.blast_json(radius))

    opened = (second.incidents or {}).get("opened", [])
    shown = f"dnabot incident {opened[-1]}" if opened else "dnabot incident N"
    console.rule(f"7. The incident DNA Bot opened (dnabot incidents; {shown})")
    terminal_incidents.print_incidents(console, services.incidents_list(settings, "open"), "open")
    if opened:
        terminal_incidents.print_incident(console, services.incident_detail(settings, opened[-1]))
        detail = services.incident_detail(settings, opened[-1])
        _save(out, "incident.json", services.plain(detail))
        picture = out / f"incident-{detail.incident.id}-lineage.png"
        picture.write_bytes(incident_png(detail.incident))
        console.print(f"Lineage picture of the incident (for its Slack thread): {picture}")
        _slack_preview(console, out, detail)
        _post_for_real(console, settings)

    console.rule('8. Ask it (dnabot why analytics.orders "why did it break?")')
    answer = asyncio.run(services.why(settings, "analytics.orders", "why did it break?"))
    terminal_incidents.print_why(console, answer)
    _save(out, "why.json", services.plain(answer))

    console.rule("9. Downstream, the status test on analytics.orders starts failing")
    _admin(om_url, f"/admin/tests/{url_segment(ORDERS_TEST)}/result", {"status": "Failed", "result": "status is null"})
    third = _sync(console, settings)
    attached = (third.incidents or {}).get("attached", {})
    console.print(
        f"The failing test joined incident {', '.join(attached) or '?'} as a symptom; no new incident was opened."
        if attached
        else f"Incidents after the failing test: {third.incidents}"
    )

    console.rule("10. The engineer reverts the rename: the incident resolves itself")
    _admin(om_url, f"/admin/tables/{url_segment(STG_ORDERS)}/columns/order_state/rename", {"newName": "status"})
    fourth = _sync(console, settings)
    for incident_id in (fourth.incidents or {}).get("resolved", []):
        detail = services.incident_detail(settings, incident_id)
        last = detail.events[-1]
        console.print(f"incident {incident_id} is {detail.incident.status}: {last.reason or last.note}")
    console.print("Asked again, `dnabot why analytics.orders` says what broke, when, and what healed it:")
    terminal_incidents.print_why(console, asyncio.run(services.why(settings, "analytics.orders", None)))

    console.rule("11. Time travel (dnabot dna stg_orders --at <time>)")
    cols = lambda view: ", ".join(c["name"] for c in view.genes["schema"]["columns"])  # noqa: E731
    for label, when in (("before the rename", before), ("during the incident", during), ("now", None)):
        console.print(f"{label:>20}: {cols(services.dna(settings, 'stg_orders', when))}")
    _closing(console, out)


def _closing(console: Console, out: Path) -> None:
    """What the demo left behind, and how to go on from here with the `dnabot` command."""
    scratch = (".lock", "-shm", "-wal", "-journal")  # SQLite's and our locks' working files, not results
    files = sorted(p.name for p in out.iterdir() if p.is_file() and not p.name.endswith(scratch))
    console.print(f"\nFiles in {out}/: " + ", ".join(files), markup=False, highlight=False)
    console.print(
        "  sync-*.json, timeline.json, blast.json, incident.json and why.json are each step's --json output; "
        "slack-card.json and slack-thread.json are the Block Kit messages (slack-card.builder-url.txt opens the card "
        "in Slack's Block Kit Builder); the PNG is the lineage picture posted in the thread; dnabot.db is the store.",
        markup=False,
        highlight=False,
    )
    command = "dnabot" if shutil.which("dnabot") else ".venv/bin/dnabot"
    if command != "dnabot":
        console.print(
            "`dnabot` is not on your PATH: run it as .venv/bin/dnabot, or `source .venv/bin/activate` first.",
            markup=False,
            highlight=False,
        )
    console.print(
        f"Try: DATABASE_URL=sqlite:///{out}/dnabot.db {command} timeline stg_orders --since 1d",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
