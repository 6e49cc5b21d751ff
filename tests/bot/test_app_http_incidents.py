"""DNA Bot over real HTTP: mentions in threads, incident card buttons, the resolve modal and a 429 on chat.update."""

from __future__ import annotations

import time

from bot.core import services
from bot.core.actions import ActionId
from tests.bot import test_app_http
from tests.bot.test_app_http import ADMIN, STG_ORDERS, texts
from tests.fakes.slack_signing import app_mention_event, block_action, slash_command, view_submission

bot = test_app_http.bot  # the running-bot fixture, shared with the command tests


def _status(bot, incident_id):
    return services.incident_detail(bot.settings, incident_id).incident.status


def test_a_mention_gets_a_placeholder_then_the_answer_and_follow_ups_keep_the_dataset(bot):
    bot.rename_status()
    ts = bot.slack.user_message("C1", "<@UBOT> why did stg_orders break?")
    assert bot.post(app_mention_event("<@UBOT> why did stg_orders break?", ts=ts)).status_code == 200
    reply = bot.slack.wait_for(lambda: [m for m in bot.slack.thread("C1", ts) if m["ts"] != ts])[0]
    placeholders = [c for c in bot.slack.calls("chat.postMessage") if "Looking into it" in str(c.args.get("text"))]
    assert placeholders and reply.get("thread_ts") == ts
    answered = bot.slack.wait_for(
        lambda: bot.slack.message("C1", reply["ts"]).get("edited") and bot.slack.message("C1", reply["ts"])
    )
    assert STG_ORDERS in texts(answered["blocks"]) and "Answered by rules" in texts(answered["blocks"])

    follow = bot.slack.user_message("C1", "<@UBOT> and what now?", thread_ts=ts)
    bot.post(app_mention_event("<@UBOT> and what now?", ts=follow, thread_ts=ts))
    replies = bot.slack.wait_for(
        lambda: [m for m in bot.slack.thread("C1", ts) if m.get("edited") and "what now" in texts(m.get("blocks"))]
    )
    assert STG_ORDERS in texts(replies[0]["blocks"])


def test_acknowledge_updates_the_card_in_place_and_the_thread(bot):
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    click = block_action(
        ActionId.ACK, bot.value(incident_id), user=ADMIN, message_ts=card_ts, response_url=bot.slack.response_url("ack")
    )
    assert bot.post(click).status_code == 200
    bot.slack.wait_for(lambda: len(bot.slack.thread("C1", card_ts)) == 2)
    assert _status(bot, incident_id) == "acknowledged"
    card, change = bot.slack.thread("C1", card_ts)
    assert card["edited"] and "Acknowledged by <@UADMIN>" in texts(card["blocks"])
    assert "acknowledged the incident" in texts(change["blocks"])


def test_resolve_is_refused_for_others_and_goes_through_the_modal_for_admins(bot):
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    value = bot.value(incident_id)
    bot.post(
        block_action(
            ActionId.RESOLVE, value, user="UNOBODY", message_ts=card_ts, response_url=bot.slack.response_url("no")
        )
    )
    [refusal] = bot.slack.wait_for(lambda: bot.slack.responses("no"))
    assert refusal["response_type"] == "ephemeral" and "only DNA Bot admins or the owners" in texts(refusal["blocks"])
    assert _status(bot, incident_id) == "open" and not bot.slack.calls("views.open")

    bot.post(block_action(ActionId.RESOLVE, value, user=ADMIN, message_ts=card_ts))
    [opened] = bot.slack.wait_for(lambda: bot.slack.calls("views.open"))
    modal = opened.args["view"]
    assert modal["callback_id"] == ActionId.RESOLVE_MODAL
    submit = view_submission(
        ActionId.RESOLVE_MODAL,
        modal["private_metadata"],
        {
            ActionId.RESOLVE_REASON: {
                ActionId.RESOLVE_REASON: {"type": "static_select", "selected_option": {"value": "fixed"}}
            },
            ActionId.RESOLVE_COMMENT: {ActionId.RESOLVE_COMMENT: "compat view deployed"},
        },
        user=ADMIN,
    )
    assert bot.post(submit).status_code == 200
    bot.slack.wait_for(lambda: len(bot.slack.thread("C1", card_ts)) == 2)
    assert _status(bot, incident_id) == "resolved"
    card, change = bot.slack.thread("C1", card_ts)
    assert "Resolved" in texts(card["blocks"]) and "Reopen" in texts(card["blocks"])
    assert "compat view deployed" in texts(change["blocks"])


def test_snooze_by_a_non_admin_changes_nothing(bot):
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    bot.post(
        block_action(
            ActionId.SNOOZE,
            user="UNOBODY",
            message_ts=card_ts,
            block_id=bot.value(incident_id),
            selected_option=bot.value(incident_id, d="1h"),
            response_url=bot.slack.response_url("z"),
        )
    )
    [refusal] = bot.slack.wait_for(lambda: bot.slack.responses("z"))
    assert "Nothing was changed" in texts(refusal["blocks"]) and _status(bot, incident_id) == "open"
    assert not bot.slack.calls("chat.update")


def test_assign_is_for_admins_and_owners_and_simulate_fix_is_open_to_everyone(bot):
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    bot.post(
        block_action(
            ActionId.ASSIGN, user=ADMIN, message_ts=card_ts, block_id=bot.value(incident_id), selected_user="U5"
        )
    )
    bot.slack.wait_for(lambda: len(bot.slack.thread("C1", card_ts)) == 2)
    assert services.incident_detail(bot.settings, incident_id).incident.assignee == "U5"
    bot.post(
        block_action(
            ActionId.SIMULATE_FIX,
            bot.value(incident_id),
            user="U9",
            message_ts=card_ts,
            response_url=bot.slack.response_url("sim"),
        )
    )
    [sim] = bot.slack.wait_for(lambda: bot.slack.responses("sim"))
    assert sim["response_type"] == "ephemeral" and "Fix simulation" in texts(sim["blocks"])


def test_a_429_on_chat_update_is_retried_and_the_card_still_lands(bot):
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    bot.slack.fail("chat.update", retry_after=0, times=1)
    bot.post(block_action(ActionId.ACK, bot.value(incident_id), user=ADMIN, message_ts=card_ts))
    bot.slack.wait_for(lambda: bot.slack.message("C1", card_ts).get("edited"), timeout=10)
    updates = bot.slack.calls("chat.update")
    assert len(updates) == 2 and "Acknowledged" in texts(bot.slack.message("C1", card_ts)["blocks"])


def test_slack_retrying_an_event_gets_an_ack_and_no_second_answer(bot):
    """One process on SQLite: the delivery ids are remembered in memory (no wait on the database file)."""
    bot.sync()
    ts = bot.slack.user_message("C1", "<@UBOT> why did stg_orders break?")
    event = app_mention_event("<@UBOT> why did stg_orders break?", ts=ts, event_id="EvRETRY0001")
    assert bot.post(event).status_code == 200
    assert bot.post(event).status_code == 200  # Slack's retry (it did not hear our ack in time)
    bot.slack.wait_for(lambda: [m for m in bot.slack.thread("C1", ts) if m["ts"] != ts and m.get("edited")])
    command = slash_command("help", response_url=bot.slack.response_url("help"))
    assert bot.post(command).status_code == 200 and bot.post(command).status_code == 200
    bot.slack.wait_for(lambda: bot.slack.responses("help"))
    time.sleep(1.0)  # room for a doubled answer to show up, if there were one
    assert len([m for m in bot.slack.thread("C1", ts) if m["ts"] != ts]) == 1
    assert len(bot.slack.responses("help")) == 1
