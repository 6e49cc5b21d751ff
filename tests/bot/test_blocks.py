"""Snapshot-style tests of the Block Kit renderers: what a Slack user would see, within Slack's limits."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest

from agents.why import WhyAnswer
from bot.blocks import (
    HELP,
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
from bot.blocks.text import BUILDER, blocks_to_text, builder_url
from bot.core.actions import ActionId, decode_value, encode_value, read_resolve_submission
from storage.domain.lineage import BlastRadius, ColumnImpact, Impact
from storage.persistence.coordination import LeaseView
from storage.persistence.incident_views import EventView, EvidenceView, IncidentDetailView, IncidentView, LinkView
from storage.persistence.outbox import OutboxStats
from storage.persistence.store import ChangeView, RunView, SnapshotView
from tests.bot.test_freshness import view as fresh

NOW = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
OPENED = datetime(2026, 11, 24, 10, 24, tzinfo=UTC)
ROOT = "warehouse.shop.staging.stg_orders"


def _break(fqn: str, column: str | None, kind: str, distance: int) -> dict[str, Any]:
    return {"entity_fqn": fqn, "column": column, "entity_type": kind, "distance": distance,
            "reason": "missing_column", "via": [f"{ROOT}.status"]}  # fmt: skip


BREAKS = [
    _break("warehouse.shop.analytics.orders", "status", "table", 1),
    _break("warehouse.shop.analytics.revenue_daily", "order_status", "table", 1),
    _break("looker.model.orders", "order_status", "dashboardDataModel", 2),
    _break("looker.customer_health", None, "dashboard", 3),
    _break("looker.sales_overview", None, "dashboard", 3),
    _break("looker.daily_orders", None, "chart", 3),
]
FIX = {
    "kind": "alias_view",
    "title": "Compatibility view: expose order_state as status again",
    "sql": "CREATE OR REPLACE VIEW staging.stg_orders_compat AS SELECT *, order_state AS status FROM stg_orders;",
    "steps": ["Review the SQL, then run it in the warehouse.", "Drop the view once every model reads order_state."],
    "simulated": True,
    "resolves": BREAKS[:5],
    "remains": BREAKS[5:],
}
DETAILS: dict[str, Any] = {
    "breaks": BREAKS,
    "dashboards": ["looker.customer_health", "looker.sales_overview"],
    "charts": ["looker.daily_orders"],
    "display_names": {"looker.customer_health": "Customer health"},
    "owners": ["ben", "ana"],
    "severity_reasons": ["2 dashboards impacted", "Tier.Tier1 asset impacted: warehouse.shop.analytics.orders"],
    "cause": {
        "kind": "column_renamed",
        "entity_fqn": ROOT,
        "subject": "status",
        "old_value": "status",
        "new_value": "order_state",
        "details": {"why": "same type, same position"},
    },
    "hypotheses": [
        {
            "summary": "stg_orders.status renamed to order_state (98% confidence)",
            "confidence": 0.95,
            "path": [ROOT, "warehouse.shop.analytics.orders", "looker.model.orders", "looker.customer_health"],
            "evidence": [{"kind": "change", "ref": "change:1", "summary": "stg_orders.status renamed", "url": None}],
        }
    ],
    "web": [
        {
            "kind": "web",
            "ref": "https://docs.example.com/rename",
            "summary": "Renaming columns safely",
            "url": "https://docs.example.com/rename",
            "data": {"snippet": "Use a view"},
        }
    ],
    "fixes": [FIX],
    "explanation": {
        "brief": "The *Customer health* and *Sales overview* dashboards may show wrong numbers.",
        "source": "template",
        "fallback_reason": None,
    },
}


def make_incident(**changes: Any) -> IncidentView:
    base = IncidentView(
        id=2, fingerprint="f9e11ffc2a5b3c7f22a22a924392cd99", kind="breaking_schema_change", severity="SEV1",
        status="open", title="stg_orders.status renamed to order_state: 3 columns and 2 dashboards impacted",
        root_fqn=ROOT, root_column="status", opened_at=OPENED, updated_at=OPENED, resolved_at=None,
        snoozed_until=None, assignee=None, opened_run_id=2, last_run_id=2, version=3, details=DETAILS,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def texts(blocks: Any) -> str:
    """Every string in the blocks, one per line, for "the user can read X" assertions."""
    if isinstance(blocks, dict):
        return "\n".join(texts(v) for v in blocks.values())
    if isinstance(blocks, list):
        return "\n".join(texts(v) for v in blocks)
    return blocks if isinstance(blocks, str) else ""


def by_type(blocks: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [b for b in blocks if b["type"] == kind]


def action_ids(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in by_type(blocks, "actions") for e in b["elements"]]


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in by_type(blocks, "section") if b.get("text")]


# ------------------------------------------------------------------------------------------ the card


def test_a_new_incident_card_tells_stakeholders_what_broke_who_owns_it_and_what_to_do() -> None:
    details = {**DETAILS, "owners": ["ben", "ana", "data-eng", "USA"]}
    mentions = {"ana": "U0ANA", "data-eng": "S0DATA"}
    card = render_incident_card(make_incident(details=details), owner_mentions=mentions, om_url="http://om.local:8585/")
    assert card[0]["type"] == "header"
    assert card[0]["text"]["text"].startswith(":red_circle: SEV1 · stg_orders.status renamed")
    assert "Customer health* and *Sales overview" in card[1]["text"]["text"]
    impacted = next(t for t in section_texts(card) if t.startswith("*Impacted"))
    order = [impacted.index(name) for name in ("Customer health", "looker.daily_orders", "analytics.orders")]
    assert order == sorted(order)
    fields = " ".join(f["text"] for b in card for f in b.get("fields", []))
    assert "ben, <@U0ANA>, <!subteam^S0DATA>, USA" in fields and "Open since" in fields
    assert action_ids(card) == [
        ActionId.ACK, ActionId.ASSIGN, ActionId.SNOOZE, ActionId.RESOLVE, ActionId.SIMULATE_FIX, ActionId.OPEN_IN_OM
    ]  # fmt: skip
    elements = by_type(card, "actions")[0]["elements"]
    for e in elements:
        if e["type"] == "button":
            assert decode_value(e["value"]).id == 2
    assert {e["type"] for e in elements} >= {"users_select", "static_select", "button"}
    snooze = next(e for e in elements if e["action_id"] == ActionId.SNOOZE)
    assert [o["text"]["text"] for o in snooze["options"]] == ["1 hour", "1 day", "1 week"]
    assert [decode_value(o["value"]).get("d") for o in snooze["options"]] == ["1h", "1d", "1w"]
    assert decode_value(by_type(card, "actions")[0]["block_id"]).id == 2  # users_select finds its incident here
    om = next(e for e in elements if e["action_id"] == ActionId.OPEN_IN_OM)
    assert om["url"] == f"http://om.local:8585/table/{ROOT}"


def test_card_without_om_url_or_fixes_has_no_link_or_simulate_button() -> None:
    card = render_incident_card(make_incident(details={**DETAILS, "fixes": []}))
    assert ActionId.OPEN_IN_OM not in action_ids(card)
    assert ActionId.SIMULATE_FIX not in action_ids(card)


def test_acknowledged_card_says_who_and_drops_the_ack_button() -> None:
    incident = make_incident(status="acknowledged", updated_at=NOW, assignee="U0BEN")
    event = EventView(9, 2, NOW, "status_changed", "open", "acknowledged", "U0ANA", None, None, {})
    card = render_incident_card(incident, status_event=event)
    fields = " ".join(f["text"] for b in card for f in b.get("fields", []))
    assert "Acknowledged by <@U0ANA>" in fields and "<@U0BEN>" in fields
    assert ActionId.ACK not in action_ids(card)
    assign = next(e for e in by_type(card, "actions")[0]["elements"] if e["action_id"] == ActionId.ASSIGN)
    assert assign["initial_user"] == "U0BEN"


def test_resolved_card_keeps_only_reopen_and_the_link() -> None:
    incident = make_incident(status="resolved", resolved_at=NOW)
    event = EventView(9, 2, NOW, "status_changed", "open", "resolved", "U0ANA", "false_positive", None, {})
    card = render_incident_card(incident, status_event=event, om_url="http://om")
    assert card[0]["text"]["text"].startswith(":white_check_mark: Resolved · SEV1")
    assert action_ids(card) == [ActionId.REOPEN, ActionId.OPEN_IN_OM]
    assert "Resolved by <@U0ANA>" in texts(card) and "False positive" in texts(card)


def test_metadata_is_escaped_but_our_own_mentions_and_links_are_not() -> None:
    evil = {
        **DETAILS,
        "owners": ["<!channel>"],
        "dashboards": ["looker.<script>alert(1)</script>"],
        "explanation": {"brief": "Hi <!channel> & <https://evil.example|click>"},
    }
    card = render_incident_card(make_incident(details=evil, title="<!here> & co"), owner_mentions={})
    blob = texts(card)
    assert "<!channel>" not in blob and "<script>" not in blob and "<https://evil" not in blob
    assert "&lt;!channel&gt;" in blob and "&lt;script&gt;" in blob and "&amp;" in blob
    thread = render_incident_thread(IncidentDetailView(make_incident(), [], [], []))
    assert "<https://docs.example.com/rename|Renaming columns safely>" in texts(thread[1])


def test_limits_120_breaks_fit_50_blocks_with_and_n_more() -> None:
    many = [_break(f"warehouse.shop.t{i:03}", "c", "table", 1) for i in range(120)]
    incident = make_incident(details={**DETAILS, "breaks": many, "dashboards": [], "charts": []})
    card = render_incident_card(incident)
    assert len(card) <= 50 and "…and 112 more" in texts(card)
    messages = render_incident_thread(IncidentDetailView(incident, [], [], []))
    assert all(len(m) <= 50 for m in messages)
    breaks = next(t for t in section_texts(messages[0]) if t.startswith("*What breaks (120)*"))
    assert "…and 95 more" in breaks


def test_limits_long_brief_and_title_are_cut_not_refused() -> None:
    incident = make_incident(title="x" * 200, details={**DETAILS, "explanation": {"brief": "b" * 5000}})
    card = render_incident_card(incident)
    assert len(card[0]["text"]["text"]) <= 150 and card[0]["text"]["text"].endswith("…")
    assert all(len(t) <= 3000 for t in section_texts(card))
    assert card[1]["text"]["text"].startswith("bbb") and len(card[1]["text"]["text"]) == 3000


# ------------------------------------------------------------------------------------- thread and modal


def test_thread_tells_the_technical_story_in_three_replies() -> None:
    link = LinkView(2, 1, "cause", "column_renamed", ROOT, "status", "status", "order_state", OPENED)
    web = EvidenceView(10, 2, "web", "https://blog.example.com/x", "A blog post", "https://blog.example.com/x", {}, NOW)
    changed, why, fixes = render_incident_thread(IncidentDetailView(make_incident(), [], [link], [web]))
    assert "`status` → `order_state`" in texts(changed) and "same type, same position" in texts(changed)
    assert "`warehouse.shop.staging.stg_orders` → `warehouse.shop.analytics.orders`" in texts(changed)
    assert "*95%* stg_orders.status renamed" in texts(why)
    assert "https://docs.example.com/rename" in texts(why) and "https://blog.example.com/x" in texts(why)
    assert "```\nCREATE OR REPLACE VIEW" in texts(fixes) and "resolves 5 of 6 breaks" in texts(fixes)
    assert "Still broken after this fix" in texts(fixes)


def test_simulation_answers_with_each_fix_or_says_there_is_none() -> None:
    blocks = render_simulation([FIX])
    assert "resolves 5 of 6 breaks" in texts(blocks) and "CREATE OR REPLACE VIEW" in texts(blocks)
    assert "No fix to simulate" in texts(render_simulation([]))


def ev(kind: str, to: str | None, reason: str | None = None, note: str | None = None, **data: Any) -> EventView:
    actor = "dnabot" if kind in ("auto_resolved", "symptom_attached") else "U0ANA"
    return EventView(1, 2, NOW, kind, "open" if to else None, to, actor, reason, note, data)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (ev("status_changed", "acknowledged"), "<@U0ANA> acknowledged"),
        (ev("status_changed", "resolved", "duplicate", "dup of #1"), "Duplicate"),
        (ev("auto_resolved", "resolved", "column is back"), "Resolved automatically: column is back"),
        (ev("symptom_attached", None, change_ids=[4, 5]), "2 more symptom(s)"),
        (ev("note", None, assignee="U0BEN"), "assigned the incident to <@U0BEN>"),
        (ev("reopened", "open"), "reopened"),
    ],
)
def test_each_status_change_gets_a_thread_reply(event: EventView, expected: str) -> None:
    blocks = render_status_change(event, make_incident())
    assert expected in texts(blocks)
    if event.note:
        assert "> dup of #1" in texts(blocks)


def test_resolve_modal_round_trips_its_private_metadata() -> None:
    view = render_resolve_modal(make_incident())
    assert view["type"] == "modal" and view["callback_id"] == ActionId.RESOLVE_MODAL
    assert decode_value(view["private_metadata"]).id == 2
    reason = next(b for b in view["blocks"] if b.get("block_id") == ActionId.RESOLVE_REASON)
    options = [o["value"] for o in reason["element"]["options"]]
    assert options == ["fixed", "false_positive", "duplicate", "wont_fix", "other"]
    submitted = {**view, "state": {"values": {
        ActionId.RESOLVE_REASON: {ActionId.RESOLVE_REASON: {"selected_option": {"value": "wont_fix"}}},
        ActionId.RESOLVE_COMMENT: {ActionId.RESOLVE_COMMENT: {"value": "  legacy table  "}},
    }}}  # fmt: skip
    got = read_resolve_submission(submitted)
    assert (got.target.id, got.target.get("fp")) == (2, make_incident().fingerprint)
    assert (got.reason, got.comment) == ("wont_fix", "legacy table")


# ------------------------------------------------------------------------------------------ action values


def test_encode_value_is_compact_versioned_json() -> None:
    text = encode_value("incident", id=7, fp="abc")
    assert text == '{"v":1,"k":"incident","id":7,"fp":"abc"}'
    value = decode_value(text)
    assert (value.kind, value.id, value.get("fp"), value.version) == ("incident", 7, "abc", 1)
    with pytest.raises(ValueError, match="2000"):
        encode_value("incident", blob="x" * 2000)


@pytest.mark.parametrize(
    "junk",
    [None, "", "INC-1", "[1,2]", '{"k":"incident","id":1}', '{"v":2,"k":"incident","id":1}',
     '{"v":1,"id":1}', '{"v":1,"k":"incident","id":"1"}', '{"v":true,"k":"x"}', "{" * 5],
)  # fmt: skip
def test_decode_value_rejects_junk_with_a_clear_error(junk: Any) -> None:
    with pytest.raises(ValueError, match="action value"):
        decode_value(junk)


# -------------------------------------------------------------------------------------------- /dna answers


def test_help_lists_every_subcommand_with_an_example() -> None:
    blob = texts(render_help())
    for name in ("help", "show", "timeline", "blast", "why", "incidents", "sync", "status", "subscribe", "unsubscribe"):
        assert f"*{name}*" in blob and f"`/dna {name}" in blob
    assert len(HELP) == 10 and "<table>" not in blob and "&lt;table&gt;" in blob


def test_dna_card_shows_trust_reasons_schema_owners_and_tests() -> None:
    genes = {
        "entity": {"name": "orders", "display_name": None, "service": "warehouse", "service_type": "Snowflake"},
        "ownership": {"owners": [{"name": "ben", "display_name": "Ben Okafor"}], "tier": "Tier.Tier1"},
        "schema": {"columns": [{"name": f"c{i}", "type_display": "varchar"} for i in range(40)]},
        "lineage": {"upstream": [{"fqn": ROOT, "type": "table"}], "downstream": []},
        "quality": {"tests": [{"name": "row_count", "status": "Failed", "result": "Found 0 rows"}]},
    }
    factors = [{"name": "quality", "weight": 25, "score": 0.5, "reason": "1 of 1 tests failing"}]
    snap = SnapshotView("warehouse.shop.analytics.orders", "table", NOW, "fp", genes, 62, factors, 4, False)  # type: ignore[arg-type]
    blob = texts(render_dna_card(snap))
    assert "62/100" in blob and "*quality* 12/25: 1 of 1 tests failing" in blob
    assert "Ben Okafor" in blob and "Tier.Tier1" in blob and "Schema (40 columns)" in blob and "…and 25 more" in blob
    assert ":x: `row_count`: Found 0 rows" in blob and "warehouse.shop.staging.stg_orders" in blob


def test_blast_radius_lists_dashboards_first_and_notes_table_level_lineage() -> None:
    radius = BlastRadius(
        ROOT, "status",
        entities=[Impact("looker.customer_health", "dashboard", 3, "table", (ROOT, "looker.customer_health"))],
        columns=[ColumnImpact("warehouse.shop.analytics.orders", "status", 1, (f"{ROOT}.status",))],
        dashboards=["looker.customer_health"],
    )  # fmt: skip
    blocks = render_blast(radius)
    blob = texts(blocks)
    assert blob.index("Dashboards (1)") < blob.index("Assets by distance")
    assert "table-level lineage only" in blob and "warehouse.shop.analytics.orders.status" in blob
    assert "Nothing downstream" in texts(render_blast(BlastRadius(ROOT, None)))


def test_timeline_lists_changes_newest_first_or_says_none() -> None:
    old = ChangeView(1, 1, ROOT, "table", "column_added", "note", None, "VARCHAR", None, {}, OPENED)
    new = ChangeView(2, 2, ROOT, "table", "column_renamed", "status", "status", "order_state", 0.979, {}, NOW)
    blob = texts(render_timeline(ROOT, [old, new], "7d"))
    assert blob.index("column renamed") < blob.index("column added") and "98% sure" in blob
    assert "No changes since 7d" in texts(render_timeline(ROOT, [], "7d"))


def test_why_answer_cites_evidence_and_flags_degraded_sources() -> None:
    answer = WhyAnswer("why did it break?", "warehouse.shop.analytics.orders", "*Most likely cause*: a rename <!here>",
                       ("change:1", "https://docs.example.com/x"), "llm", steps=3,
                       degraded=("outside context unavailable: timeout",))  # fmt: skip
    blocks = render_why(answer)
    blob = texts(blocks)
    assert "*Most likely cause*: a rename &lt;!here&gt;" in blob
    assert "`change:1`" in blob and "<https://docs.example.com/x|https://docs.example.com/x>" in blob
    assert by_type(blocks, "context")[-1]["elements"][0]["text"].startswith(":warning: outside context unavailable")


def test_incident_list_has_a_show_button_per_incident_and_caps() -> None:
    items = [make_incident(id=i) for i in range(1, 61)]
    blocks = render_incidents(items)
    assert len(blocks) <= 50 and "…and 20 more" in texts(blocks)
    assert decode_value(blocks[1]["accessory"]["value"]).id == 1
    assert "No incidents" in texts(render_incidents([]))


def run(rid: int, status: str, minutes_ago: int, error: str | None = None) -> RunView:
    at = NOW - timedelta(minutes=minutes_ago)
    return RunView(rid, at, at + timedelta(seconds=5), status, "incremental", error, {}, None, "1.13.6", True)


def test_status_shows_last_good_sync_lag_failures_outbox_and_leader() -> None:
    runs = [run(1, "succeeded", 60), run(2, "failed", 30, "OpenMetadata <timeout>"), run(3, "failed", 15, "boom")]
    outbox = OutboxStats(pending=4, dead=1, oldest_pending_age_seconds=125, pending_by_kind={"card": 4})
    lease = LeaseView("scheduler", "replica-b", NOW, NOW - timedelta(seconds=20), NOW + timedelta(seconds=40))
    blocks = render_status(
        fresh(*runs), open_by_severity={"SEV1": 1, "SEV3": 2}, stale_after=7200, outbox=outbox, leader=lease, now=NOW
    )
    blob = texts(blocks)
    assert "lag 59m" in blob and "Failures since last good sync*\n2" in blob and "&lt;timeout&gt;" in blob
    assert "SEV1: 1" in blob and "SEV3: 2" in blob and "4 message(s) waiting, oldest 2m" in blob
    assert "1 dead letter(s)" in blob and "`replica-b`" in blob and "renewed 20s ago" in blob
    assert "*Latest run*\n#3 failed" in blob and "boom" in blob
    assert blocks[1]["text"]["text"].startswith(":warning: Last good sync 59m ago (incremental, run #1); 2 failed")

    stale = texts(render_status(fresh(*runs), open_by_severity={}, stale_after=600, now=NOW))
    assert "Data is 59m old — the last 2 syncs failed (boom). Showing the last good data." in stale
    assert "none yet" in stale  # no replica holds the scheduler lease
    expired = dataclasses.replace(lease, expires_at=NOW - timedelta(minutes=3))
    assert "lease expired 3m ago" in texts(
        render_status(None, open_by_severity={}, stale_after=1, leader=expired, now=NOW)
    )
    assert "no sync has run yet" in texts(render_status(None, open_by_severity={}, stale_after=1, now=NOW))


def test_not_found_suggests_and_error_gives_a_reference() -> None:
    blocks = render_not_found("ordrs", ["warehouse.shop.analytics.orders", "warehouse.shop.raw.orders"])
    assert "Did you mean" in texts(blocks) and "`warehouse.shop.raw.orders`" in texts(blocks)
    assert decode_value(by_type(blocks, "actions")[0]["elements"][0]["value"]).get("fqn").endswith("analytics.orders")
    assert "`ref-123`" in texts(render_error("ref-123"))


def test_ambiguous_lists_ten_candidates_counts_the_rest_and_offers_five_buttons() -> None:
    candidates = [f"warehouse.s{i:02d}.orders" for i in range(12)]
    blocks = render_ambiguous("orders", candidates)
    shown = texts(blocks)
    assert "`orders` matches 12 datasets. Which one?" in shown and "…and 2 more" in shown
    assert "`warehouse.s09.orders`" in shown and "warehouse.s10.orders" not in shown
    elements = by_type(blocks, "actions")[0]["elements"]
    labels = [(e["text"]["text"], e["action_id"]) for e in elements]
    assert labels == [(f"s{i:02d}.orders", f"dna_show:{i}") for i in range(5)]
    assert [decode_value(e["value"]).get("fqn") for e in elements] == candidates[:5]
    assert "e.g. `s00.orders`" in shown


def test_app_home_stays_within_100_blocks() -> None:
    lowest = [(f"warehouse.shop.t{i}", 10 + i, "no owner") for i in range(30)]
    incidents = [make_incident(id=i, severity=f"SEV{1 + i % 4}") for i in range(1, 200)]
    good = fresh(run(4, "succeeded", 5))
    view = render_app_home(lowest_trust=lowest, open_incidents=incidents, freshness=good, stale_after=900)
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    blob = texts(view["blocks"])
    assert "Last good sync 4m ago (incremental, run #4)" in blob and "…and 20 more" in blob
    assert blob.index("*SEV1* (49)") < blob.index("*SEV2* (50)") < blob.index("*SEV4* (50)")
    assert "…and 41 more SEV1" in blob and "…and 42 more SEV4" in blob
    empty = render_app_home(lowest_trust=[], open_incidents=[], freshness=None, stale_after=900)
    assert "No sync has run yet" in texts(empty["blocks"])
    old = render_app_home(lowest_trust=[], open_incidents=[], freshness=good, stale_after=60, problem="store <down>")
    assert "Data is 4m old — no sync has run since" in texts(old["blocks"]) and "store &lt;down&gt;" in texts(old)


# ------------------------------------------------------------------------------------- terminal and builder


def test_blocks_to_text_reads_like_the_card() -> None:
    card = render_incident_card(make_incident(), owner_mentions={"ana": "U0ANA"}, om_url="http://om")
    text = blocks_to_text(card)
    lines = text.splitlines()
    assert lines[0].startswith(":red_circle: SEV1 · stg_orders.status") and set(lines[1]) == {"═"}
    assert "[ Acknowledge ]" in text and "[ Assign… ▾ ]" in text and "[ Open in OpenMetadata ↗ ]" in text
    assert "@U0ANA" in text and "2026-11-24 10:24 UTC" in text and "<!date" not in text
    assert "[image: lineage]" in blocks_to_text([{"type": "image", "image_url": "http://x", "alt_text": "lineage"}])
    assert "Reason: [ Fixed ▾ ]" in blocks_to_text(render_resolve_modal(make_incident()))


def test_builder_url_decodes_back_to_the_blocks() -> None:
    card = render_incident_card(make_incident())
    url = builder_url(card)
    assert url.startswith(BUILDER)
    assert json.loads(unquote(url[len(BUILDER) :])) == {"blocks": card}
    modal = render_resolve_modal(make_incident())
    assert json.loads(unquote(builder_url(modal)[len(BUILDER) :]))["type"] == "modal"
