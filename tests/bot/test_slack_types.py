"""Every renderer's output type-checks against Slack's own TypeScript types (`@slack/types`, `tsc --strict`).

A sample of each message and view the bot renders is written as a `.ts` file (`KnownBlock[]`, `ModalView`,
`HomeView`) and compiled with the pinned TypeScript in tests/slack_types (`make slack-types` installs it). The
types catch what a hand-written checker misses: unknown keys, a mrkdwn object where only plain_text is allowed,
an element in a block that does not take it, a missing required field.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from agents.why import WhyAnswer
from bot.blocks import (
    render_ambiguous,
    render_app_home,
    render_blast,
    render_dna_card,
    render_error,
    render_help,
    render_incident_card,
    render_incident_thread,
    render_incidents,
    render_not_found,
    render_resolve_modal,
    render_simulation,
    render_status,
    render_status_change,
    render_timeline,
    render_why,
)
from bot.blocks.kit import with_note
from bot.core.authz import NotAllowed
from bot.delivery.digest import render_digest
from bot.slack.listeners.errors import UsageError, reply_for
from storage.domain.lineage import BlastRadius, ColumnImpact, Impact
from storage.errors import AmbiguousDataset, DatasetNotFound, IncidentNotFound
from storage.persistence.coordination import LeaseView
from storage.persistence.incident_views import EventView, EvidenceView, IncidentDetailView, LinkView
from storage.persistence.outbox import OutboxStats
from storage.persistence.store import ChangeView, SnapshotView
from tests.bot.test_blocks import DETAILS, FIX, NOW, OPENED, ROOT, ev, make_incident, run
from tests.bot.test_freshness import view as fresh

SLACK_TYPES = Path(__file__).resolve().parents[1] / "slack_types"
TSC = SLACK_TYPES / "node_modules" / ".bin" / "tsc"
INSTALL_HINT = "run `make slack-types` (npm ci --prefix tests/slack_types) to install @slack/types and TypeScript"


CANARIES = {  # payloads Slack refuses, one per line, that `@slack/types` must refuse too
    "canary_mrkdwn_header": [{"type": "header", "text": {"type": "mrkdwn", "text": "*no*"}}],
    "canary_unknown_key": [{"type": "divider", "colour": "red"}],
    "canary_select_in_context": [{"type": "context", "elements": [{"type": "button", "text": {"type": "plain_text",
                                  "text": "x"}, "action_id": "a"}]}],
}  # fmt: skip


def _breaks(count: int) -> list[dict[str, Any]]:
    return [
        {"entity_fqn": f"warehouse.shop.t{i:03}", "column": "c", "entity_type": "table", "distance": 1,
         "reason": "missing_column", "via": [f"{ROOT}.status"]}
        for i in range(count)
    ]  # fmt: skip


def _wide_fixes(count: int) -> list[dict[str, Any]]:
    """Many long fixes: the reply that carried ~20k characters of text (issue 10)."""
    sql = "CREATE OR REPLACE VIEW staging.stg_orders_compat AS SELECT *, order_state AS status FROM stg_orders;\n"
    return [
        {**FIX, "title": f"Fix {n}: {FIX['title']}", "sql": sql * 25, "resolves": _breaks(40)} for n in range(count)
    ]


def _cards() -> Iterator[tuple[str, Any]]:
    mentions = {"ana": "U0ANA", "data-eng": "S0DATA"}
    owners = {**DETAILS, "owners": ["ben", "ana", "data-eng", "USA"]}
    yield "card_open", render_incident_card(make_incident(details=owners), owner_mentions=mentions, om_url="http://om/")
    yield "card_no_fixes", render_incident_card(make_incident(details={**DETAILS, "fixes": []}))
    acked = EventView(9, 2, NOW, "status_changed", "open", "acknowledged", "U0ANA", None, None, {})
    incident = make_incident(status="acknowledged", updated_at=NOW, assignee="U0BEN")
    yield "card_acknowledged", render_incident_card(incident, status_event=acked)
    snoozed = make_incident(status="snoozed", snoozed_until=NOW + timedelta(hours=1))
    yield "card_snoozed", render_incident_card(snoozed)
    done = EventView(9, 2, NOW, "status_changed", "open", "resolved", "U0ANA", "false_positive", None, {})
    resolved = make_incident(status="resolved", resolved_at=NOW)
    yield "card_resolved", render_incident_card(resolved, status_event=done, om_url="http://om")
    wide = make_incident(details={**DETAILS, "breaks": _breaks(120), "dashboards": [], "charts": []})
    yield "card_120_breaks", render_incident_card(wide)
    long = {**DETAILS, "explanation": {"brief": "🧬 " * 2500}, "owners": ["<!channel>"]}
    yield "card_long_and_hostile", render_incident_card(make_incident(title="x" * 200, details=long))


def _threads() -> Iterator[tuple[str, Any]]:
    link = LinkView(2, 1, "cause", "column_renamed", ROOT, "status", "status", "order_state", OPENED)
    web = EvidenceView(10, 2, "web", "https://blog.example.com/x", "A blog", "https://blog.example.com/x", {}, NOW)
    for n, reply in enumerate(render_incident_thread(IncidentDetailView(make_incident(), [], [link], [web]))):
        yield f"thread_reply_{n}", reply
    wide = make_incident(details={**DETAILS, "breaks": _breaks(120), "fixes": _wide_fixes(8)})
    for n, reply in enumerate(render_incident_thread(IncidentDetailView(wide, [], [link], [web]))):
        yield f"thread_wide_reply_{n}", reply
    yield "simulation", render_simulation([FIX])
    yield "simulation_wide", render_simulation(_wide_fixes(8))
    yield "simulation_none", render_simulation([])
    events = [
        ev("status_changed", "acknowledged"),
        ev("status_changed", "resolved", "duplicate", "dup of #1"),
        ev("auto_resolved", "resolved", "column is back"),
        ev("symptom_attached", None, change_ids=[4, 5]),
        ev("note", None, assignee="U0BEN"),
        ev("reopened", "open"),
    ]
    for n, event in enumerate(events):
        yield f"status_change_{n}_{event.kind}", render_status_change(event, make_incident())


def _answers() -> Iterator[tuple[str, Any]]:
    genes = {
        "entity": {"name": "orders", "display_name": None, "service": "warehouse", "service_type": "Snowflake"},
        "ownership": {"owners": [{"name": "ben", "display_name": "Ben Okafor"}], "tier": "Tier.Tier1"},
        "schema": {"columns": [{"name": f"c{i}", "type_display": "varchar"} for i in range(40)]},
        "lineage": {"upstream": [{"fqn": ROOT, "type": "table"}], "downstream": []},
        "quality": {"tests": [{"name": "row_count", "status": "Failed", "result": "Found 0 rows"}]},
    }
    factors = [{"name": "quality", "weight": 25, "score": 0.5, "reason": "1 of 1 tests failing"}]
    snap = SnapshotView("warehouse.shop.analytics.orders", "table", NOW, "fp", genes, 62, factors, 4, False)  # type: ignore[arg-type]
    yield "help", render_help()
    yield "dna_card", render_dna_card(snap)
    radius = BlastRadius(
        ROOT, "status",
        entities=[Impact("looker.customer_health", "dashboard", 3, "table", (ROOT, "looker.customer_health"))],
        columns=[ColumnImpact("warehouse.shop.analytics.orders", "status", 1, (f"{ROOT}.status",))],
        dashboards=["looker.customer_health"],
    )  # fmt: skip
    yield "blast", render_blast(radius)
    yield "blast_nothing", render_blast(BlastRadius(ROOT, None))
    old = ChangeView(1, 1, ROOT, "table", "column_added", "note", None, "VARCHAR", None, {}, OPENED)
    new = ChangeView(2, 2, ROOT, "table", "column_renamed", "status", "status", "order_state", 0.979, {}, NOW)
    yield "timeline", render_timeline(ROOT, [old, new], "7d")
    yield "timeline_none", render_timeline(ROOT, [], "7d")
    answer = WhyAnswer("why?", "warehouse.shop.analytics.orders", "*Most likely cause*: a rename <!here>",
                       ("change:1", "https://docs.example.com/x"), "llm", steps=3,
                       degraded=("outside context unavailable: timeout",))  # fmt: skip
    yield "why", render_why(answer)
    yield "why_with_note", with_note(render_why(answer), "Data is 59m old")
    yield "incidents", render_incidents([make_incident(id=i) for i in range(1, 61)])
    yield "incidents_none", render_incidents([])
    runs = [run(1, "succeeded", 60), run(2, "failed", 30, "OpenMetadata <timeout>"), run(3, "failed", 15, "boom")]
    outbox = OutboxStats(pending=4, dead=1, oldest_pending_age_seconds=125, pending_by_kind={"card": 4})
    lease = LeaseView("scheduler", "replica-b", NOW, NOW - timedelta(seconds=20), NOW + timedelta(seconds=40))
    status = render_status(
        fresh(*runs), open_by_severity={"SEV1": 1, "SEV3": 2}, stale_after=7200, outbox=outbox, leader=lease, now=NOW
    )
    yield "status", status
    yield "status_never_synced", render_status(None, open_by_severity={}, stale_after=1, now=NOW)
    yield "not_found", render_not_found("ordrs", ["warehouse.shop.analytics.orders", "warehouse.shop.raw.orders"])
    yield "not_found_nothing", render_not_found("zzz", [])
    yield "ambiguous", render_ambiguous("orders", [f"warehouse.s{i}.orders" for i in range(12)])
    yield "error", render_error("ref-123")
    yield "digest", render_digest([make_incident(id=i) for i in range(1, 30)], channel="C1", now=NOW)
    yield "digest_none", render_digest([], channel="C1", now=NOW)
    errors = [
        DatasetNotFound("ordrs", ["warehouse.shop.raw.orders"]),
        AmbiguousDataset("orders", ["warehouse.shop.raw.orders", "looker.model.orders"]),
        NotAllowed("only admins may resolve"),
        UsageError("Usage: /dna show <dataset>"),
        IncidentNotFound(7),
        TimeoutError("slow"),
    ]
    for error in errors:
        yield f"error_reply_{type(error).__name__}", reply_for(error)[1]


def _views() -> Iterator[tuple[str, Any]]:
    yield "resolve_modal", render_resolve_modal(make_incident())
    lowest = [(f"warehouse.shop.t{i}", 10 + i, "no owner") for i in range(30)]
    incidents = [make_incident(id=i, severity=f"SEV{1 + i % 4}") for i in range(1, 200)]
    good = fresh(run(4, "succeeded", 5))
    yield "app_home", render_app_home(lowest_trust=lowest, open_incidents=incidents, freshness=good, stale_after=900)
    yield "app_home_empty", render_app_home(lowest_trust=[], open_incidents=[], freshness=None, stale_after=900)
    broken = render_app_home(lowest_trust=[], open_incidents=[], freshness=good, stale_after=60, problem="store <down>")
    yield "app_home_problem", broken


def typescript(samples: list[tuple[str, Any]]) -> str:
    """The samples as typed constants; a view's type follows its `type` (`ModalView` or `HomeView`)."""
    lines = ['import type { HomeView, KnownBlock, ModalView } from "@slack/types";', ""]
    # the check has teeth: tsc fails on an unused @ts-expect-error if the types let these through
    for name, bad in CANARIES.items():
        lines += ["// @ts-expect-error", f"export const {name}: KnownBlock[] = {json.dumps(bad)};"]
    for name, payload in samples:
        kind = "KnownBlock[]"
        if isinstance(payload, dict):
            kind = {"modal": "ModalView", "home": "HomeView"}[payload["type"]]
        lines.append(f"export const {name}: {kind} = {json.dumps(payload, indent=1, ensure_ascii=False)};")
    return "\n".join(lines) + "\n"


def _where(source: str, output: str) -> str:
    """tsc's errors, each followed by the sample it is in and the offending line."""
    lines = source.splitlines()
    out = []
    for error in output.strip().splitlines():
        out.append(error)
        found = re.match(r".*\.ts\((\d+),\d+\)", error)
        if found and 0 < int(found.group(1)) <= len(lines):
            row = int(found.group(1)) - 1
            sample = next((ln for ln in reversed(lines[: row + 1]) if ln.startswith("export const")), "")
            out.append(f"    in {sample.split(':')[0].removeprefix('export const ')}: {lines[row].strip()[:200]}")
    return "\n".join(out)


def test_every_renderer_type_checks_against_slack_types(tmp_path: Path) -> None:
    samples = [*_cards(), *_threads(), *_answers(), *_views()]
    assert shutil.which("node"), "Node.js is not installed: the Slack type check needs node (and npm for install)"
    assert TSC.exists(), f"{TSC.relative_to(SLACK_TYPES.parents[1])} is missing: {INSTALL_HINT}"
    source = typescript(samples)
    (tmp_path / "rendered.ts").write_text(source)
    types = SLACK_TYPES / "node_modules" / "@slack" / "types"
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "target": "es2022",
            "module": "esnext",
            "moduleResolution": "bundler",
            "types": [],
            "paths": {"@slack/types": [str(types)]},
        },
        "files": ["rendered.ts"],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    command = [str(TSC), "-p", str(tmp_path / "tsconfig.json"), "--noEmit", "--strict", "--pretty", "false"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"tsc refused the rendered Block Kit:\n{_where(source, done.stdout + done.stderr)}"
    assert len(samples) >= 40 and {type(p) for _, p in samples} == {list, dict}
