"""Who may change an incident or a subscription, over signed HTTP: admins, and owners by verified Slack email.

Owners of the renamed `stg_orders` incident include `ben` (ben@shop.example in the demo catalog). A refusal is
an ephemeral message and changes nothing: not the incident, not its card, not OpenMetadata.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.blocks import incident_value
from bot.core import authz, services
from bot.core.actions import ActionId
from bot.core.settings import Settings
from bot.delivery import writeback
from storage.persistence import subscriptions
from storage.persistence.db import session_factory
from tests.bot import test_app_http
from tests.bot.test_app_http import ADMIN, STG_ORDERS, texts
from tests.fakes.slack_signing import block_action, slash_command, view_submission

bot = test_app_http.bot  # the running-bot fixture

BEN = "ben@shop.example"  # the OpenMetadata owner `ben`'s email
REVENUE_TEST = "warehouse.shop.analytics.revenue_daily.revenue_usd.revenue_not_null"  # owned by chloe
INCIDENT_PATH = "/api/v1/dataQuality/testCases/testCaseIncidentStatus"


def people(bot, directory: dict[str, str], **fields: dict[str, Any]) -> None:
    """Slack's users: `directory` (email → user id) and `users.info` fields per user id over the defaults."""
    bot.slack.users(directory)
    with bot.slack.state.cond:
        bot.slack.state.people.update(fields)


def detail(bot, incident_id: int):
    return services.incident_detail(bot.settings, incident_id)


def click(bot, action: str, incident_id: int, user: str, card_ts: str, rid: str, **extra: Any) -> dict:
    """A button click; the ephemeral answer it got through its response_url."""
    value = bot.value(incident_id, **extra)
    kw: dict[str, Any] = {"block_id": value, "selected_user": user} if action == ActionId.ASSIGN else {}
    if action == ActionId.SNOOZE:
        kw = {"block_id": value, "selected_option": bot.value(incident_id, d="1h")}
    body = block_action(
        action,
        None if kw else value,
        user=user,
        message_ts=card_ts,
        response_url=bot.slack.response_url(rid),
        **kw,
    )
    assert bot.post(body).status_code == 200
    [reply] = bot.slack.wait_for(lambda: bot.slack.responses(rid))
    return reply


def write_backs(om_demo, state_id: str) -> list[str]:
    response = om_demo.http.get(f"{INCIDENT_PATH}/stateId/{state_id}")
    response.raise_for_status()
    body = response.json()
    return [r["testCaseResolutionStatusType"] for r in (body["data"] if isinstance(body, dict) else body)]


def refused(reply: dict, what: str) -> None:
    seen = texts(reply["blocks"])
    assert reply["response_type"] == "ephemeral", reply
    assert f"only DNA Bot admins or the owners of {STG_ORDERS} can {what} this incident" in seen, seen
    assert "Nothing was changed" in seen


# -------------------------------------------------------------------------------------------- incidents


def _before(bot, incident_id: int, action: str) -> None:
    """What an admin did first, that the click would undo (the issue's reproduction)."""
    if action == ActionId.ACK:
        until = datetime.now(UTC) + timedelta(hours=4)
        writeback.set_incident_status(bot.settings, incident_id, "snoozed", actor=ADMIN, snoozed_until=until)
    elif action == ActionId.REOPEN:
        writeback.set_incident_status(bot.settings, incident_id, "resolved", actor=ADMIN, reason="fixed")


@pytest.mark.parametrize(
    ("action", "what"),
    [
        (ActionId.ACK, "acknowledge"),
        (ActionId.REOPEN, "reopen"),
        (ActionId.ASSIGN, "assign"),
        (ActionId.SNOOZE, "snooze"),
        (ActionId.RESOLVE, "resolve"),
    ],
)
def test_someone_neither_admin_nor_owner_changes_nothing(bot, action, what):
    people(bot, {"eve@shop.example": "U0EVE"})
    incident_id = bot.rename_status()
    _before(bot, incident_id, action)
    card_ts = bot.post_card(incident_id)
    card = json.dumps(bot.slack.message("C1", card_ts))
    before = detail(bot, incident_id)

    refused(click(bot, action, incident_id, "U0EVE", card_ts, "no"), what)

    after = detail(bot, incident_id)
    assert (after.incident.status, after.incident.assignee) == (before.incident.status, before.incident.assignee)
    assert len(after.events) == len(before.events)
    assert json.dumps(bot.slack.message("C1", card_ts)) == card and len(bot.slack.thread("C1", card_ts)) == 1
    assert not bot.slack.calls("chat.update") and not bot.slack.calls("views.open")


def test_an_owner_with_a_verified_email_may_act_and_the_card_says_so(bot):
    """Their handle (`u0ben`) is not the owner's name `ben`: the verified email is what counts."""
    people(bot, {BEN: "U0BEN"})
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    value = bot.value(incident_id)
    snooze = block_action(
        ActionId.SNOOZE,
        user="U0BEN",
        message_ts=card_ts,
        block_id=value,
        selected_option=bot.value(incident_id, d="1h"),
    )
    assert bot.post(snooze).status_code == 200
    bot.slack.wait_for(lambda: bot.slack.message("C1", card_ts).get("edited"))
    assert detail(bot, incident_id).incident.status == "snoozed"
    assert "<@U0BEN>" in texts(bot.slack.message("C1", card_ts)["blocks"])


def test_an_owners_second_click_is_answered_from_the_cache(bot):
    people(bot, {BEN: "U0BEN"})
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    bot.post(block_action(ActionId.ACK, bot.value(incident_id), user="U0BEN", message_ts=card_ts))
    bot.slack.wait_for(lambda: detail(bot, incident_id).incident.status == "acknowledged")
    bot.post(block_action(ActionId.RESOLVE, bot.value(incident_id), user="U0BEN", message_ts=card_ts))
    bot.slack.wait_for(lambda: bot.slack.calls("views.open"))
    asked = [c for c in bot.slack.calls("users.info") if c.args.get("user") == "U0BEN"]
    assert len(asked) == 1


def test_a_guest_of_this_workspace_who_owns_the_asset_may_act(bot):
    people(bot, {BEN: "U0BENGUEST"}, U0BENGUEST={"is_restricted": True})
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    bot.post(block_action(ActionId.RESOLVE, bot.value(incident_id), user="U0BENGUEST", message_ts=card_ts))
    bot.slack.wait_for(lambda: bot.slack.calls("views.open"))


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"profile": {"email": "ben@attacker.example"}}, id="other-email"),
        pytest.param({"team_id": "T2"}, id="another-workspace"),
        pytest.param({"is_stranger": True}, id="slack-connect-stranger"),
        pytest.param({"is_email_confirmed": False}, id="unconfirmed-email"),
        pytest.param({"deleted": True}, id="deleted"),
    ],
)
def test_an_account_with_the_owners_handle_is_refused_unless_its_email_is_the_owners_and_trusted(bot, fields):
    """`BEN` has the handle `ben`, the owner's OpenMetadata name; its profile email is someone else's, or the
    owner's in a profile the bot cannot trust (another workspace, Slack Connect, unconfirmed, deleted)."""
    people(bot, {BEN: "BEN"}, BEN=fields)
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    refused(click(bot, ActionId.RESOLVE, incident_id, "BEN", card_ts, "r"), "resolve")
    assert not bot.slack.calls("views.open") and detail(bot, incident_id).incident.status == "open"


def test_a_forged_resolve_submission_is_refused_in_the_modal_and_changes_nothing(bot):
    people(bot, {"ben@attacker.example": "BEN"})  # the handle `ben`, the owner's name; not the owner's email
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    incident = detail(bot, incident_id).incident
    values = {
        ActionId.RESOLVE_REASON: {
            ActionId.RESOLVE_REASON: {"type": "static_select", "selected_option": {"value": "fixed"}}
        }
    }
    submit = view_submission(ActionId.RESOLVE_MODAL, incident_value(incident, ch="C1", ts=card_ts), values, user="BEN")
    answer = bot.post(submit)
    assert answer.status_code == 200
    assert answer.json()["response_action"] == "errors"
    assert "only DNA Bot admins" in answer.json()["errors"][ActionId.RESOLVE_REASON]
    time.sleep(0.5)  # room for a wrongly accepted submission to show up, if there were one
    assert detail(bot, incident_id).incident.status == "open" and not bot.slack.calls("chat.update")


def test_an_ack_by_a_non_owner_is_not_written_back_and_an_owners_is(bot, om_demo):
    people(bot, {"eve@shop.example": "U0EVE", "chloe@shop.example": "U0CHLOE"})
    result = {"timestamp": int(time.time() * 1000), "testCaseStatus": "Failed", "result": "12 rows with a null"}
    om_demo.request("POST", f"/api/v1/dataQuality/testCases/testCaseResults/{om_demo.seg(REVENUE_TEST)}", result)
    bot.sync()
    [incident] = [
        i for i in services.incidents_list(bot.settings, "open") if (i.details or {}).get("test_fqn") == REVENUE_TEST
    ]
    state_id = incident.details["om_incident"]["state_id"]
    card_ts = bot.post_card(incident.id)
    before = write_backs(om_demo, state_id)

    reply = click(bot, ActionId.ACK, incident.id, "U0EVE", card_ts, "eve")
    assert "Nothing was changed" in texts(reply["blocks"])
    assert write_backs(om_demo, state_id) == before and detail(bot, incident.id).incident.status == "open"

    bot.post(block_action(ActionId.ACK, bot.value(incident.id), user="U0CHLOE", message_ts=card_ts))
    bot.slack.wait_for(lambda: write_backs(om_demo, state_id)[len(before) :] == ["Ack"], 10)


def test_admins_by_id_and_by_user_group_may_act(bot):
    bot.slack.usergroups({"S0DATAOPS": ["U0OPS"]})
    bot.settings.admins = f"{ADMIN},S0DATAOPS"
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    bot.post(block_action(ActionId.ACK, bot.value(incident_id), user="U0OPS", message_ts=card_ts))
    bot.slack.wait_for(lambda: detail(bot, incident_id).incident.status == "acknowledged")
    bot.post(block_action(ActionId.REOPEN, bot.value(incident_id), user=ADMIN, message_ts=card_ts))
    bot.slack.wait_for(lambda: detail(bot, incident_id).incident.status == "open")


# ---------------------------------------------------------------------------------------- subscriptions


def ask(bot, text: str, user: str, rid: str, channel: str = "C2") -> str:
    bot.post(slash_command(text, user=user, channel=channel, response_url=bot.slack.response_url(rid)))
    [reply] = bot.slack.wait_for(lambda: bot.slack.responses(rid))
    return texts(reply["blocks"])


def stored(bot, channel: str = "C2") -> list[tuple[str, str]]:
    with session_factory(services.engine_for(bot.settings))() as session:
        return [(s.kind, s.target) for s in subscriptions.list_for(session, channel)]


def test_owners_may_subscribe_a_channel_to_their_dataset_and_only_admins_to_globs(bot):
    people(bot, {BEN: "U0BEN", "eve@shop.example": "U0EVE"})
    assert "only DNA Bot admins can make a channel follow a glob" in ask(bot, "subscribe warehouse.*", "U0BEN", "g")
    assert "only DNA Bot admins can make a channel follow a service" in ask(bot, "subscribe warehouse", "U0BEN", "s")
    assert "only DNA Bot admins" in ask(bot, "subscribe stg_orders", "U0EVE", "e")
    assert stored(bot) == []

    assert "now hears" in ask(bot, "subscribe stg_orders", "U0BEN", "ben")
    assert "now hears" in ask(bot, "subscribe warehouse.shop.analytics.*", ADMIN, "admin")
    assert stored(bot) == [("fqn", "warehouse.shop.analytics.*"), ("fqn", STG_ORDERS)]

    assert "only DNA Bot admins" in ask(bot, "unsubscribe stg_orders", "U0EVE", "e2")
    assert "only DNA Bot admins" in ask(bot, "unsubscribe warehouse.shop.analytics.*", "U0BEN", "b2")
    assert len(stored(bot)) == 2
    assert "no longer" in ask(bot, "unsubscribe stg_orders", "U0BEN", "b3")
    assert stored(bot) == [("fqn", "warehouse.shop.analytics.*")]


# ------------------------------------------------------------------------------------------- the cache


def test_a_changed_slack_profile_counts_once_the_cache_runs_out(slack_api):
    """Five minutes of users.info cache: clicks stay fast, and a profile edited to the owner's email (or away
    from it) counts after that."""
    settings = Settings(slack_api_url=slack_api.url, slack_bot_token=slack_api.token)
    now = [0.0]
    gate = authz.Gate(settings, clock=lambda: now[0])
    slack_api.users({"mallory@attacker.example": "U0MALLORY"})
    assert gate.member("U0MALLORY").email == "mallory@attacker.example"
    with slack_api.state.cond:
        slack_api.state.people["U0MALLORY"] = {"is_stranger": True}
    assert gate.member("U0MALLORY").email == "mallory@attacker.example"  # cached
    now[0] += authz.USER_TTL_SECONDS + 1
    assert gate.member("U0MALLORY") == authz.Member("U0MALLORY", None, "a Slack Connect user of another organisation")
    assert len(slack_api.calls("users.info")) == 2 and len(slack_api.calls("auth.test")) == 1
    assert gate.member("U0NOBODY").email is None  # Slack answers user_not_found
