"""Block Kit that Slack accepts, from the renderers alone: unique action ids, fresh block ids on update, every message
within the total-text budget (counted in UTF-16 code units), and one escaping path for the notification text."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from agents.why import WhyAnswer
from bot.blocks import (
    render_app_home,
    render_blast,
    render_dna_card,
    render_help,
    render_incident_card,
    render_incident_thread,
    render_incidents,
    render_not_found,
    render_simulation,
    render_why,
)
from bot.blocks.kit import (
    MESSAGE_BLOCKS,
    MESSAGE_TEXT,
    clip,
    fit_text,
    header,
    message,
    plain,
    section,
    split_text,
    text_units,
    units,
)
from bot.core.actions import ActionId, decode_value
from storage.domain.lineage import BlastRadius, Impact
from storage.persistence.incident_views import IncidentDetailView
from storage.persistence.store import SnapshotView
from tests.bot.test_blocks import BREAKS, DETAILS, FIX, NOW, ROOT, make_incident
from tests.bot.test_blocks import run as sync_run
from tests.bot.test_freshness import view as fresh

EMOJI = "🧬"  # outside the BMP: 1 code point, 2 UTF-16 code units


def interactive(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for block in blocks:
        if block.get("type") == "actions":
            found.extend(block["elements"])
        elif (block.get("accessory") or {}).get("action_id"):
            found.append(block["accessory"])
    return found


def assert_acceptable(blocks: list[dict[str, Any]], *, limit: int = MESSAGE_BLOCKS) -> None:
    """What Slack checks on every message: unique action and block ids, the block count, the total text."""
    action_ids = [e["action_id"] for e in interactive(blocks)]
    assert len(action_ids) == len(set(action_ids)), action_ids
    block_ids = [b["block_id"] for b in blocks if b.get("block_id")]
    assert len(block_ids) == len(set(block_ids)), block_ids
    assert len(blocks) <= limit and text_units(blocks) <= MESSAGE_TEXT


def wide_details() -> dict[str, Any]:
    """An incident as wide as they come: long SQL in every fix, long steps, many breaks, many hypotheses."""
    breaks = [{**BREAKS[0], "entity_fqn": f"warehouse.shop.mart.t{i:03}", "column": f"c{i}"} for i in range(80)]
    fix = {**FIX, "sql": "SELECT " + ", ".join(f"col_{i} AS c{i}" for i in range(400)), "remains": breaks[:40]}
    fix["steps"] = [f"Step {i}: " + "check the model carefully " * 8 for i in range(10)]
    fixes = [{**fix, "title": f"Fix number {n}"} for n in range(5)]
    hypotheses = [
        {**DETAILS["hypotheses"][0], "summary": f"Hypothesis {n} " + "x" * 300, "evidence": [
            {"kind": "change", "ref": f"change:{i}", "summary": "e" * 280, "url": None} for i in range(5)
        ]}
        for n in range(5)
    ]  # fmt: skip
    return {**DETAILS, "breaks": breaks, "fixes": fixes, "hypotheses": hypotheses}


# ------------------------------------------------------------------------------------------ utf-16


def test_lengths_are_counted_and_clipped_in_utf16_code_units() -> None:
    assert units("abc") == 3 and units(EMOJI) == 2 and units("é") == 1
    cut = clip(EMOJI * 100, 75)
    assert units(cut) <= 75 and cut.endswith("…") and "\ud83e" not in cut  # never half an emoji
    assert clip(EMOJI * 10, 20) == EMOJI * 10  # exactly at the limit: kept whole
    title = header(EMOJI * 149)["text"]["text"]
    assert units(title) <= 150 and len(title) < 150  # 75 emoji fit; Python's len would have let 149 through


def test_every_clip_in_a_rendered_card_holds_in_utf16_units() -> None:
    incident = make_incident(title=EMOJI * 300, details={**DETAILS, "explanation": {"brief": EMOJI * 4000}})
    card = render_incident_card(incident)
    assert units(card[0]["text"]["text"]) <= 150
    assert all(units(b["text"]["text"]) <= 3000 for b in card if b.get("text") and b["type"] == "section")
    assert_acceptable(card)


# ------------------------------------------------------------------------------------------ action ids


def test_every_renderer_gives_each_element_its_own_action_id() -> None:
    suggestions = [f"warehouse.shop.s{i}.orders" for i in range(5)]
    did_you_mean = render_not_found("ordrs", suggestions)
    ids = [e["action_id"] for e in interactive(did_you_mean)]
    assert ids == [f"dna_show:{i}" for i in range(5)]
    assert [decode_value(e["value"]).get("fqn") for e in interactive(did_you_mean)] == suggestions

    listed = render_incidents([make_incident(id=i) for i in range(1, 30)])
    assert [e["action_id"] for e in interactive(listed)][:2] == ["incident_show:1", "incident_show:2"]

    lowest = [(f"warehouse.shop.t{i}", 10 + i, "no owner") for i in range(12)]
    home = render_app_home(
        lowest_trust=lowest,
        open_incidents=[make_incident(id=i, severity=f"SEV{1 + i % 4}") for i in range(1, 60)],
        freshness=fresh(sync_run(4, "succeeded", 5)),
        stale_after=900,
    )
    for blocks in (did_you_mean, listed, render_incident_card(make_incident(), om_url="http://om"), render_help()):
        assert_acceptable(blocks)
    home_ids = [e["action_id"] for e in interactive(home["blocks"])]
    assert len(home_ids) == len(set(home_ids)) and "dna_show:0" in home_ids and "home_refresh" in home_ids
    assert_acceptable(render_simulation([FIX, FIX, FIX]))


@pytest.mark.parametrize("action_id", ["dna_show", "dna_show:0", "dna_show:17"])
def test_listeners_match_an_action_and_every_numbered_copy_of_it(action_id: str) -> None:
    assert ActionId.SHOW_DNA.pattern.search(action_id)
    assert not ActionId.SHOW_DNA.pattern.search("dna_showcase") and not ActionId.SHOW_INCIDENT.pattern.search(
        "incident_snooze"
    )


# ------------------------------------------------------------------------------------------ block ids on update


def test_a_card_update_renews_the_block_ids_of_what_changed_and_keeps_the_others() -> None:
    before = render_incident_card(make_incident(version=3))
    snoozed = render_incident_card(make_incident(version=4, status="snoozed", snoozed_until=NOW))
    assigned = render_incident_card(make_incident(version=5, status="snoozed", snoozed_until=NOW, assignee="U0BEN"))
    assert_acceptable(before)
    ids = [[b["block_id"] for b in card] for card in (before, snoozed, assigned)]
    assert ids[0][0] == ids[1][0] == ids[2][0]  # the header did not change
    assert ids[0][2] != ids[1][2] != ids[2][2]  # the status field, then the assignee field did
    bars = [next(b for b in card if b["type"] == "actions") for card in (before, snoozed, assigned)]
    # open and snoozed cards show the same menus; the bar's id still changes, or a client keeps "1 hour" picked
    assert bars[0]["elements"] == bars[1]["elements"] and bars[0]["block_id"] != bars[1]["block_id"]
    assert all(decode_value(bar["block_id"]).id == 2 for bar in bars)  # a users_select finds its incident here
    assert render_incident_card(make_incident(version=3)) == before  # and the same card renders the same ids


# ------------------------------------------------------------------------------------------ the total-text budget


def test_a_wide_incident_s_technical_thread_is_split_across_replies_with_nothing_left_out() -> None:
    detail = IncidentDetailView(make_incident(details=wide_details()), [], [], [])
    messages = render_incident_thread(detail)
    total = sum(text_units(m) for m in messages)
    assert total > 20_000 and len(messages) >= 4  # ~20k characters: three replies would be refused
    for blocks in messages:
        assert_acceptable(blocks)
        assert blocks[0]["type"] != "divider"
    everything = json.dumps(messages, ensure_ascii=False)
    assert all(f"Fix number {n}" in everything for n in range(5)) and "left out to fit" not in everything


def test_a_wide_card_or_dna_card_is_summarised_with_a_pointer_to_the_whole() -> None:
    wide = make_incident(details={**wide_details(), "severity_reasons": ["r" * 900] * 10})
    card = render_incident_card(wide)
    assert_acceptable(card)
    long = "n" * 150
    edges = [{"fqn": f"{ROOT}{i}" + "u" * 200} for i in range(40)]
    genes = {
        "entity": {"name": "orders"},
        "ownership": {"description": "d" * 600, "owners": []},
        "schema": {
            "columns": [{"name": f"c{i}{long}", "type": "varchar", "description": "w" * 120} for i in range(60)]
        },
        "lineage": {"upstream": edges, "downstream": edges},
        "quality": {"tests": [{"name": f"t{i}{long}", "status": "Failed", "result": "r" * 150} for i in range(40)]},
    }
    factors = [{"name": f"f{i}", "weight": 10, "score": 0.5, "reason": "z" * 400} for i in range(20)]
    snap = SnapshotView(ROOT, "table", NOW, "fp", genes, 40, factors, 4, False)  # type: ignore[arg-type]
    dna = render_dna_card(snap)
    assert_acceptable(dna)
    assert "left out to fit one Slack message; `dnabot dna warehouse.shop.staging.stg_orders` shows it all" in (
        json.dumps(dna)
    )
    radius = BlastRadius(
        ROOT, None, entities=[Impact(f"{ROOT}.x{i}" + "e" * 150, "table", 1, "column", ()) for i in range(300)]
    )
    assert_acceptable(render_blast(radius))
    answer = WhyAnswer("why?", ROOT, "a" * 20_000, tuple(f"https://e.example/{i}" for i in range(50)), "llm", steps=2)
    assert_acceptable(render_why(answer))


def test_fit_text_keeps_the_buttons_and_says_where_to_read_the_rest() -> None:
    blocks = [section("s" * 2900) for _ in range(8)] + render_incident_card(make_incident())[-1:]
    fitted = fit_text(blocks, 10_000, pointer="`dnabot incident 2`")
    assert_acceptable(fitted)
    assert fitted[-1]["type"] == "actions" and "`dnabot incident 2` shows it all" in fitted[-2]["elements"][0]["text"]
    assert "…and 5 more part(s)" in fitted[-2]["elements"][0]["text"]
    assert fit_text(blocks[:2], 10_000) == blocks[:2]  # within the budget: untouched
    one_huge = [section(fields=["f" * 2000] * 10)]  # 20k in one block: cut, never an empty answer
    assert text_units(fit_text(one_huge, 5000)) <= 5000


def test_split_text_packs_blocks_in_order_within_the_budget_and_the_block_count() -> None:
    blocks = [section(f"{i} " + "x" * 2500) for i in range(20)] + [section("small")] * 60
    messages = split_text(blocks)
    assert [b for m in messages for b in m] == blocks  # nothing lost, nothing reordered
    assert all(text_units(m) <= MESSAGE_TEXT and len(m) <= MESSAGE_BLOCKS for m in messages)


# ------------------------------------------------------------------------------------------ the notification text


def test_the_notification_text_is_escaped_clipped_and_never_empty() -> None:
    sent = message("No dataset matches '<!channel>' & <@U123>", [section("x")])
    assert sent["text"] == "No dataset matches '&lt;!channel&gt;' &amp; &lt;@U123&gt;"
    assert units(plain(EMOJI * 5000)) <= 3000 and plain("") == "DNA Bot"
    assert message("hi") == {"text": "hi"}  # no blocks: a text message


def test_the_card_notification_is_plain_words_escaped_once_on_sending() -> None:
    from bot.blocks import card_fallback_text

    incident = dataclasses.replace(make_incident(), title="<!here> & co")
    assert card_fallback_text(incident) == "SEV1 open: <!here> & co"  # plain words …
    assert message(card_fallback_text(incident))["text"] == "SEV1 open: &lt;!here&gt; &amp; co"  # … escaped once
