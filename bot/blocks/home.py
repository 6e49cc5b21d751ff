"""App Home, `/dna help`, `status` and `incidents`, and the did-you-mean and error replies, as Block Kit JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from slack_sdk.models.views import View

from bot.blocks.incident import root_label
from bot.blocks.kit import (
    MESSAGE_BLOCKS,
    SEVERITY_ORDER,
    STATUS_EMOJI,
    VIEW_BLOCKS,
    actions,
    button,
    cap_blocks,
    clip,
    code,
    context,
    divider,
    elapsed,
    esc,
    fit_text,
    header,
    join_capped,
    more,
    section,
    severity_emoji,
    trust_emoji,
    when,
)
from bot.core.actions import ActionId, encode_value
from bot.core.freshness import short_error, summary
from bot.core.slack_text import ago
from storage.openmetadata.fqn import short_names
from storage.persistence.coordination import LeaseView
from storage.persistence.incident_views import IncidentView
from storage.persistence.outbox import OutboxStats
from storage.persistence.store import FreshnessView, RunView

LIST_INCIDENTS = 40
HOME_ASSETS = 10
HOME_PER_SEVERITY = 8  # 4 severities x (8 rows + 2) + assets stays well under 100 blocks


class HelpEntry(NamedTuple):
    """One `/dna` subcommand as the help shows it."""

    name: str
    usage: str
    example: str
    what: str


HELP: tuple[HelpEntry, ...] = (
    HelpEntry("help", "/dna help", "/dna help", "this list"),
    HelpEntry(
        "show",
        "/dna show <table>",
        "/dna show analytics.orders",
        "an asset's DNA card: trust score and why, schema, owners, lineage, tests",
    ),
    HelpEntry(
        "timeline", "/dna timeline <table> [7d]", "/dna timeline stg_orders 3d", "what changed on an asset lately"
    ),
    HelpEntry(
        "blast", "/dna blast <table> [column]", "/dna blast stg_orders status", "what breaks downstream if it changes"
    ),
    HelpEntry(
        "why",
        "/dna why <table> [question]",
        "/dna why analytics.orders why did revenue drop?",
        "the likely cause, with evidence",
    ),
    HelpEntry("incidents", "/dna incidents [open|all]", "/dna incidents open", "the incidents, newest first"),
    HelpEntry("sync", "/dna sync", "/dna sync", "sync with OpenMetadata now (admins)"),
    HelpEntry("status", "/dna status", "/dna status", "last sync, lag, failures and open incidents"),
    HelpEntry(
        "subscribe",
        "/dna subscribe <table|service|domain>",
        "/dna subscribe warehouse",
        "post its incidents in this channel",
    ),
    HelpEntry(
        "unsubscribe", "/dna unsubscribe <table|service|domain>", "/dna unsubscribe warehouse", "stop posting them here"
    ),
)


def _incident_row(i: IncidentView) -> dict[str, Any]:
    status = f"{STATUS_EMOJI.get(i.status, '')} {esc(i.status)}"
    title = f"{severity_emoji(i.severity)} *#{i.id}* {esc(clip(i.title, 400))}"
    text = f"{title}\n{status} · {code(root_label(i))} · opened {when(i.opened_at)}"
    # one Show button per row: the incident id keeps each action_id unique in the list (each incident shows once)
    show = button("Show", ActionId.SHOW_INCIDENT.nth(i.id), value=encode_value("incident", id=i.id))
    return section(text, accessory=show)


def render_incidents(items: Sequence[IncidentView]) -> list[dict[str, Any]]:
    """A list of incidents, each with a Show button; cut with "…and N more" to fit one message."""
    if not items:
        return [section(":tada: No incidents.")]
    blocks = [header(f"Incidents ({len(items)})")]
    blocks.extend(_incident_row(i) for i in items[:LIST_INCIDENTS])
    if len(items) > LIST_INCIDENTS:
        blocks.append(context(more(len(items) - LIST_INCIDENTS)))
    return fit_text(cap_blocks(blocks, MESSAGE_BLOCKS), pointer="`dnabot incidents`")


def render_help() -> list[dict[str, Any]]:
    """Every `/dna` subcommand with what it does and an example."""
    blocks = [header(":dna: DNA Bot: /dna commands")]
    for h in HELP:
        blocks.append(section(f"*{h.name}*: {esc(h.what)}\n{code(h.usage)}  e.g. {code(h.example)}"))
    blocks.append(
        context(
            "Names are fuzzy: `orders` finds `warehouse.shop.analytics.orders`. Mention @DNA Bot with a question too."
        )
    )
    return blocks


def _open_counts(counts: Mapping[str, int]) -> str:
    keys = [*SEVERITY_ORDER, *sorted(k for k in counts if k not in SEVERITY_ORDER)]
    parts = [f"{severity_emoji(k)} {esc(k)}: {counts[k]}" for k in keys if counts.get(k)]
    return "\n".join(parts) or "none :tada:"


def _last_good(view: FreshnessView | None) -> str:
    if view is None or view.last_run is None:
        return "no sync has run yet"
    good = view.last_good
    if good is None or view.good_at is None or view.age_seconds is None:
        return "never"
    return f"{when(view.good_at)}\n(lag {ago(view.age_seconds)}, run #{good.id}, {esc(good.mode)})"


def _latest_run(run: RunView) -> str:
    text = f"#{run.id} {esc(run.status)} {when(run.started_at)} ({esc(run.mode)})"
    if run.status == "failed":
        text += f"\n{esc(short_error(run.error) or 'no error recorded')}"
    return text


def _outbox(stats: OutboxStats) -> str:
    oldest = stats.oldest_pending_age_seconds
    waiting = f"{stats.pending} message(s) waiting" + (f", oldest {ago(oldest)}" if oldest is not None else "")
    dead = f"{':rotating_light: ' if stats.dead else ''}{stats.dead} dead letter(s)"
    return f"{waiting}\n{dead}"


def _leader(lease: LeaseView | None, now: datetime) -> str:
    if lease is None:
        return "none yet (no replica has taken the lease)"
    if elapsed(now, lease.expires_at) > 0:
        return f"none: {code(lease.holder)}'s lease expired {ago(elapsed(now, lease.expires_at))} ago"
    return f"{code(lease.holder)}\n(renewed {ago(elapsed(now, lease.renewed_at))} ago)"


def _mcp(servers: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per MCP server: up (with its tool count), starting, or down with why."""
    lines = []
    for name, state in sorted(servers.items())[:8]:
        what = str(state.get("state") or "unknown")
        if what == "up" and state.get("tools") is not None:
            tools = state["tools"]
            what += f" ({len(tools) if isinstance(tools, list | tuple) else tools} tools)"
        elif what == "down" and state.get("error"):
            what += f": {clip(str(state['error']), 120)}"
        lines.append(f"{code(name)} {esc(what)}")
    return join_capped(lines, 1900, max_lines=8)


def render_status(
    freshness: FreshnessView | None,
    *,
    open_by_severity: Mapping[str, int],
    stale_after: float,
    outbox: OutboxStats | None = None,
    leader: LeaseView | None = None,
    mcp: Mapping[str, Mapping[str, Any]] | None = None,
    now: datetime,
    internal: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Sync health: freshness, the last good sync and its lag, failures since, open incidents, outbox, leader, and
    the outside-context (MCP) servers; `internal` (the endpoints, given to admins only) closes it."""
    blocks = [header(":satellite_antenna: DNA Bot status"), section(summary(freshness, stale_after))]
    fields = [f"*Last good sync*\n{_last_good(freshness)}", f"*Open incidents*\n{_open_counts(open_by_severity)}"]
    if freshness is not None and freshness.last_run is not None:
        fields.append(f"*Latest run*\n{_latest_run(freshness.last_run)}")
    fields.append(f"*Failures since last good sync*\n{freshness.failures if freshness else 0}")
    if outbox is not None:
        fields.append(f"*Outbox*\n{_outbox(outbox)}")
    fields.append(f"*Scheduler leader*\n{_leader(leader, now)}")
    if mcp:
        fields.append(f"*Outside context (MCP)*\n{_mcp(mcp)}")
    blocks.append(section(fields=fields))
    failures = freshness.recent_failures if freshness is not None else ()
    if failures:
        lines = [
            f"• run #{r.id} {when(r.started_at)}: {esc(clip(r.error or 'no error recorded', 300))}" for r in failures
        ]
        if freshness is not None and freshness.failures > len(failures):
            lines.append(more(freshness.failures - len(failures)))
        blocks.append(section("*Failures*\n" + join_capped(lines, 2900, max_lines=len(failures) + 1)))
    good = freshness.last_good if freshness is not None else None
    if good is not None and good.om_version:
        blocks.append(context(f"OpenMetadata {esc(good.om_version)}"))
    if internal:
        blocks.append(context(clip("Admins only: " + " · ".join(esc(e) for e in internal), 2000)))
    return blocks


def render_not_found(query: str, suggestions: Sequence[str]) -> list[dict[str, Any]]:
    """The ephemeral "did you mean …" for an unknown dataset, with a button per suggestion."""
    if not suggestions:
        return [section(f":mag: No dataset matches {code(query)}. Try a longer name, or `/dna help`.")]
    lines = [f"• {code(s)}" for s in suggestions]
    blocks = [
        section(f":mag: No dataset matches {code(query)}. Did you mean:\n" + join_capped(lines, 2800, max_lines=5))
    ]
    blocks += _show_buttons(suggestions, {s: s.rsplit(".", 1)[-1] or s for s in suggestions})
    return blocks


def _show_buttons(fqns: Sequence[str], labels: dict[str, str]) -> list[dict[str, Any]]:
    """An actions block with a "show its DNA" button for each of the first five datasets (none: no block)."""
    shown = []
    for n, fqn in enumerate(fqns[:5]):
        try:
            value = encode_value("dna", fqn=fqn)
        except ValueError:
            continue  # an FQN too long for a button value still shows in the list above
        shown.append(button(labels.get(fqn, fqn), ActionId.SHOW_DNA.nth(n), value=value))
    return [actions(shown)] if shown else []


def render_ambiguous(query: str, candidates: Sequence[str]) -> list[dict[str, Any]]:
    """The "which one?" for a name several datasets share: the candidates, a button per candidate (up to five)."""
    names = short_names(candidates)
    lines = [f"• {code(c)}" for c in candidates]
    blocks = [
        section(
            f":mag: {code(query)} matches {len(candidates)} datasets. Which one?\n"
            + join_capped(lines, 2800, max_lines=10)
        )
    ]
    blocks += _show_buttons(candidates, names)
    if candidates:
        example = names.get(candidates[0], candidates[0])
        blocks.append(context(f"Ask again with more of the name, e.g. {code(example)}."))
    return blocks


def render_error(reference_id: str) -> list[dict[str, Any]]:
    """The short reply for an unexpected error, with the reference id that finds it in the logs."""
    return [
        section(
            f":warning: Something went wrong on our side. It is logged as {code(reference_id)};"
            " quote it when you ask for help."
        ),
    ]


def _home_assets(lowest_trust: Sequence[tuple[str, int, str]]) -> list[dict[str, Any]]:
    blocks = [header("Lowest trust")]
    if not lowest_trust:
        return [*blocks, section("_No scored assets yet._")]
    for n, (fqn, score, reason) in enumerate(lowest_trust[:HOME_ASSETS]):
        text = f"{trust_emoji(score)} *{score}* {code(fqn)}\n_{esc(clip(reason or '', 300))}_"
        try:
            accessory = button("Show DNA", ActionId.SHOW_DNA.nth(n), value=encode_value("dna", fqn=fqn))
        except ValueError:
            accessory = None
        blocks.append(section(text, accessory=accessory))
    if len(lowest_trust) > HOME_ASSETS:
        blocks.append(context(more(len(lowest_trust) - HOME_ASSETS)))
    return blocks


def _home_incidents(items: Sequence[IncidentView]) -> list[dict[str, Any]]:
    blocks = [header(f"Open incidents ({len(items)})")]
    if not items:
        return [*blocks, section(":tada: Nothing open.")]
    severities = [*SEVERITY_ORDER, *sorted({i.severity for i in items} - set(SEVERITY_ORDER))]
    for sev in severities:
        group = sorted((i for i in items if i.severity == sev), key=lambda i: -i.id)
        if not group:
            continue
        blocks.append(context(f"{severity_emoji(sev)} *{esc(sev)}* ({len(group)})"))
        blocks.extend(_incident_row(i) for i in group[:HOME_PER_SEVERITY])
        if len(group) > HOME_PER_SEVERITY:
            blocks.append(context(f"{more(len(group) - HOME_PER_SEVERITY)} {esc(sev)}: `/dna incidents open`"))
    return blocks


def render_app_home(
    *,
    lowest_trust: Sequence[tuple[str, int, str]],
    open_incidents: Sequence[IncidentView],
    freshness: FreshnessView | None,
    stale_after: float,
    problem: str | None = None,
    hidden_note: str | None = None,
) -> dict[str, Any]:
    """The App Home tab: freshness, the lowest-trust assets and the open incidents by severity (≤100 blocks).

    `problem` says what could not be read (the tab then shows what it has, never an error page); `hidden_note`
    how many incidents this user may not see (routed to private channels they are not in)."""
    sync = summary(freshness, stale_after)
    refresh = button("Refresh", ActionId.HOME_REFRESH, value=encode_value("home"))
    blocks = [header(":dna: DNA Bot"), section(sync, accessory=refresh)]
    if problem:
        blocks.append(context(f":warning: {esc(problem)}"))
    blocks.append(divider())
    blocks.extend(_home_assets(lowest_trust))
    blocks.append(divider())
    blocks.extend(_home_incidents(open_incidents))
    if hidden_note:
        blocks.append(context(f":lock: {esc(hidden_note)}"))
    blocks.append(context("Type `/dna help` in any channel for commands."))
    view = View(type="home", blocks=cap_blocks(blocks, VIEW_BLOCKS, keep_tail=1))
    return view.to_dict()
