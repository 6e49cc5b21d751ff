"""Over signed HTTP against the loopback Slack: did-you-mean buttons that Slack takes and that work, nothing from
the catalog pinging a channel, and card updates under fresh block ids."""

from __future__ import annotations

import json
from typing import Any

from bot.core.actions import ActionId
from storage.openmetadata.fqn import url_segment
from tests.bot import test_app_http
from tests.bot.test_app_http import ADMIN, STG_ORDERS, texts
from tests.fakes.slack_signing import app_mention_event, block_action, slash_command

bot = test_app_http.bot  # the running-bot fixture: demo catalog synced, signed HTTP, loopback Slack
PING = "<!channel>"


def buttons(blocks: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Every interactive element of a message, as Slack sees them."""
    found = []
    for block in blocks or []:
        found.extend(block.get("elements") or [] if block.get("type") == "actions" else [])
        if (block.get("accessory") or {}).get("action_id"):
            found.append(block["accessory"])
    return [e for e in found if e.get("action_id")]


def unique_ids(blocks: list[dict[str, Any]] | None) -> bool:
    ids = [e["action_id"] for e in buttons(blocks)]
    block_ids = [b["block_id"] for b in blocks or [] if b.get("block_id")]
    return len(ids) == len(set(ids)) and len(block_ids) == len(set(block_ids))


def click(bot, button: dict[str, Any], rid: str, **where: Any) -> dict[str, Any]:
    """Click `button` as Slack would post it; returns the bot's one answer through the response_url."""
    body = block_action(button["action_id"], button.get("value"), response_url=bot.slack.response_url(rid), **where)
    assert bot.post(body).status_code == 200
    [answer] = bot.slack.wait_for(lambda: bot.slack.responses(rid), 15)
    return answer


def test_a_typo_in_dna_show_gets_suggestion_buttons_that_each_open_their_dna_card(bot):
    bot.post(slash_command("show ordrs", response_url=bot.slack.response_url("typo")))
    [reply] = bot.slack.wait_for(lambda: bot.slack.responses("typo"))
    assert "Did you mean" in texts(reply["blocks"])
    offered = buttons(reply["blocks"])
    assert len(offered) >= 2 and unique_ids(reply["blocks"])  # Slack refuses a message with duplicate action ids
    assert all(b["action_id"].startswith(f"{ActionId.SHOW_DNA}:") for b in offered)

    second = offered[1]
    fqn = json.loads(second["value"])["fqn"]
    card = click(bot, second, "clicked")
    assert card["response_type"] == "ephemeral" and f"DNA of {fqn}" == card["text"]
    assert fqn in texts(card["blocks"]) and "Trust" in texts(card["blocks"])


def test_a_misspelt_dataset_in_a_mention_gets_a_did_you_mean_with_working_buttons(bot):
    question = "<@UBOT> why did ordrs break?"
    ts = bot.slack.user_message("C1", question)
    assert bot.post(app_mention_event(question, ts=ts)).status_code == 200
    answered = bot.slack.wait_for(
        lambda: [m for m in bot.slack.thread("C1", ts) if m["ts"] != ts and m.get("edited")], 15
    )
    [reply] = answered
    assert "Did you mean" in texts(reply["blocks"]) and "Something went wrong" not in texts(reply["blocks"])
    offered = buttons(reply["blocks"])
    assert offered and unique_ids(reply["blocks"])

    card = click(bot, offered[0], "from-thread", message_ts=reply["ts"])
    fqn = json.loads(offered[0]["value"])["fqn"]
    assert card["text"] == f"DNA of {fqn}" and fqn in texts(card["blocks"])


def test_a_description_or_a_name_saying_channel_pings_nobody(bot):
    bot.om.admin("PUT", f"/admin/entities/table/{url_segment(STG_ORDERS)}/description", {"description": f"{PING} hi"})
    bot.sync()

    seen: list[dict[str, Any]] = []
    for n, text in enumerate(["show stg_orders", "why stg_orders", f"show {PING}", f"timeline {PING}"]):
        bot.post(slash_command(text, response_url=bot.slack.response_url(f"ping{n}")))
        seen.extend(bot.slack.wait_for(lambda n=n: bot.slack.responses(f"ping{n}"), 15))
    assert "&lt;!channel&gt; hi" in texts(seen[0]["blocks"])  # the description is shown, as text

    for question in ("why did stg_orders break?", f"why did {PING} break?"):
        ts = bot.slack.user_message("C1", f"<@UBOT> {question}")
        bot.post(app_mention_event(f"<@UBOT> {question}", ts=ts))
        seen.extend(bot.slack.wait_for(lambda ts=ts: [m for m in bot.slack.thread("C1", ts) if m.get("edited")], 15))

    assert len(seen) == 6
    for answer in seen:
        assert answer.get("text") and PING not in answer["text"], answer["text"]
        assert PING not in texts(answer.get("blocks")), texts(answer.get("blocks"))[:500]
    assert "&lt;!channel&gt;" in seen[2]["text"]  # `show <!channel>`: "No dataset matches …", escaped


def test_a_card_updated_after_a_click_gets_fresh_block_ids_for_what_changed(bot):
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    before = bot.slack.message("C1", card_ts)["blocks"]
    [bar] = [b for b in before if b["type"] == "actions"]

    bar_id = bar["block_id"]
    pick = block_action(ActionId.ASSIGN, user=ADMIN, message_ts=card_ts, block_id=bar_id, selected_user="U0BEN")
    assert bot.post(pick).status_code == 200
    after = (
        bot.slack.wait_for(lambda: bot.slack.message("C1", card_ts).get("edited"), 15)
        and bot.slack.message("C1", card_ts)["blocks"]
    )

    assert unique_ids(after)
    [new_bar] = [b for b in after if b["type"] == "actions"]
    assert new_bar["block_id"] != bar["block_id"]  # the clients drop the half-made choice in the Assign menu
    assert json.loads(new_bar["block_id"])["id"] == incident_id  # and a users_select still finds its incident
    assert before[0] == after[0]  # the header did not change: same block, same id
    fields = [b for b in after if b.get("fields")]
    old_fields = [b for b in before if b.get("fields")]
    assert fields[0]["block_id"] != old_fields[0]["block_id"] and "<@U0BEN>" in texts(fields)
