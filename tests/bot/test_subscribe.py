"""`/dna subscribe` over signed HTTP, and subscribed channels told about new incident threads."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.delivery.notifier import PublishResult
from storage.persistence import subscriptions
from storage.persistence.db import session_factory
from tests.bot.test_app_http import ADMIN, bot, texts  # noqa: F401  (the running-bot fixture)
from tests.bot.test_notifier import ORDERS, engine, notifier, renamed_incident, router  # noqa: F401
from tests.fakes.slack_signing import slash_command

ANALYTICS_GLOB = "warehouse.shop.analytics.*"


def ask(bot, text: str, rid: str, channel: str = "C2") -> dict:  # noqa: F811
    """Asked by an admin: who else may subscribe is tests/bot/test_authz.py's story."""
    bot.post(slash_command(text, user=ADMIN, channel=channel, response_url=bot.slack.response_url(rid)))
    [reply] = bot.slack.wait_for(lambda: bot.slack.responses(rid))
    return reply


def stored(bot, channel: str) -> list[tuple[str, str]]:  # noqa: F811
    from bot.core import services

    with session_factory(services.engine_for(bot.settings))() as session:
        return [(s.kind, s.target) for s in subscriptions.list_for(session, channel)]


def test_subscribe_and_unsubscribe_answer_ephemerally_in_the_channel(bot):  # noqa: F811
    reply = ask(bot, f"subscribe {ANALYTICS_GLOB}", "sub")
    assert reply["response_type"] == "ephemeral"
    assert ANALYTICS_GLOB in texts(reply["blocks"]) and "<#C2>" in texts(reply["blocks"])
    assert "This channel now hears" in reply["text"] and "<" not in reply["text"]  # the notification is plain text
    assert stored(bot, "C2") == [("fqn", ANALYTICS_GLOB)]
    assert stored(bot, "C1") == []

    again = ask(bot, f"subscribe {ANALYTICS_GLOB}", "again")
    assert again["response_type"] == "ephemeral" and stored(bot, "C2") == [("fqn", ANALYTICS_GLOB)]

    listing = ask(bot, "subscriptions", "list")
    assert ANALYTICS_GLOB in texts(listing["blocks"])

    gone = ask(bot, f"unsubscribe {ANALYTICS_GLOB}", "unsub")
    assert gone["response_type"] == "ephemeral" and "no longer" in gone["text"]
    assert stored(bot, "C2") == []
    nothing = ask(bot, f"unsubscribe {ANALYTICS_GLOB}", "unsub2")
    assert "not subscribed" in nothing["text"]


def test_subscribing_to_a_fuzzy_name_stores_the_fqn_and_an_unknown_one_gets_did_you_mean(bot):  # noqa: F811
    ask(bot, "subscribe stg_orders", "fuzzy")
    assert stored(bot, "C2") == [("fqn", "warehouse.shop.staging.stg_orders")]

    reply = ask(bot, "subscribe stg_ordrs", "unknown")
    assert reply["response_type"] == "ephemeral"
    assert "did you mean" in reply["text"].lower() and "stg_orders" in texts(reply["blocks"])
    assert stored(bot, "C2") == [("fqn", "warehouse.shop.staging.stg_orders")]


def test_a_new_thread_is_announced_once_in_subscribed_channels(db_url, om_demo, engine, notifier, slack_api):  # noqa: F811
    with session_factory(engine).begin() as session:
        subscriptions.subscribe(session, "C2", ANALYTICS_GLOB, user="U2", now=datetime.now(UTC))
        subscriptions.subscribe(session, ORDERS, ANALYTICS_GLOB, user="U2", now=datetime.now(UTC))  # the routed one
        subscriptions.subscribe(session, "C3", "domain:Nowhere", user="U2", now=datetime.now(UTC))

    incident_id, ts = renamed_incident(db_url, om_demo, engine, notifier)

    [permalink_call] = [c for c in slack_api.calls("chat.getPermalink") if c.args.get("message_ts") == ts]
    assert permalink_call.args["channel"] == ORDERS
    # The earlier, already-known incident (analytics breaks too) was announced in C2 as well.
    link = f"/archives/{ORDERS}/p{ts.replace('.', '')}"
    [notice] = [m for m in slack_api.messages("C2") if link in (m.get("text") or "")]
    assert not notice.get("thread_ts")
    before = len(slack_api.messages("C2"))
    # The routed channel has the thread itself, never a notice pointing at it.
    assert not [m for m in slack_api.messages(ORDERS) if link in (m.get("text") or "")]
    assert slack_api.messages("C3") == []

    calls = len(slack_api.calls())
    assert notifier.publish(engine) == PublishResult()
    assert len(slack_api.calls()) == calls and len(slack_api.messages("C2")) == before
    assert incident_id
