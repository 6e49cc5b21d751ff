"""A name three datasets share (`orders`), over real HTTP: Slack asks "which one?" with a button per candidate."""

from __future__ import annotations

from typing import Any

from tests.bot import test_app_http
from tests.bot.test_app_http import texts
from tests.fakes.slack_signing import app_mention_event, block_action, slash_command

bot = test_app_http.bot  # the running-bot fixture, shared with the command tests

CANDIDATES = ["looker.model.orders", "warehouse.shop.analytics.orders", "warehouse.shop.raw.orders"]


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def assert_asks_which_one(blocks: list[dict[str, Any]]) -> None:
    shown = texts(blocks)
    assert "`orders` matches 3 datasets. Which one?" in shown
    assert all(f"`{fqn}`" in shown for fqn in CANDIDATES)
    assert "No dataset matches" not in shown and "Most likely cause" not in shown
    labels = [(b["text"]["text"], b["action_id"]) for b in buttons(blocks)]
    assert labels == [("model.orders", "dna_show:0"), ("analytics.orders", "dna_show:1"), ("raw.orders", "dna_show:2")]


def test_show_with_a_shared_name_lists_the_candidates_and_a_button_shows_one(bot):
    bot.post(slash_command("show orders", response_url=bot.slack.response_url("amb")))
    [reply] = bot.slack.wait_for(lambda: bot.slack.responses("amb"))
    assert reply["response_type"] == "ephemeral"
    assert reply["text"].startswith("'orders' matches 3 datasets: " + ", ".join(CANDIDATES))
    assert_asks_which_one(reply["blocks"])

    raw = buttons(reply["blocks"])[2]
    bot.post(block_action(raw["action_id"], raw["value"], response_url=bot.slack.response_url("picked")))
    [card] = bot.slack.wait_for(lambda: bot.slack.responses("picked"))
    assert card["text"] == "DNA of warehouse.shop.raw.orders"


def test_slash_why_and_blast_ask_which_one_too(bot):
    for n, command in enumerate(("why orders", "blast orders")):
        bot.post(slash_command(command, response_url=bot.slack.response_url(f"c{n}")))
        [reply] = bot.slack.wait_for(lambda n=n: bot.slack.responses(f"c{n}"))
        assert reply["response_type"] == "ephemeral", command
        assert_asks_which_one(reply["blocks"])


def answer_in_thread(bot, ts: str, after: int = 0) -> dict[str, Any]:
    def answered() -> dict[str, Any] | None:
        done = [m for m in bot.slack.thread("C1", ts) if m["ts"] != ts and m.get("edited")]
        return done[after] if len(done) > after else None

    return bot.slack.wait_for(answered, 30)


def test_a_mention_about_a_shared_name_asks_which_one_in_the_thread(bot):
    ts = bot.slack.user_message("C1", "<@UBOT> why did orders break?")
    assert bot.post(app_mention_event("<@UBOT> why did orders break?", ts=ts)).status_code == 200
    reply = answer_in_thread(bot, ts)
    assert reply.get("thread_ts") == ts
    assert_asks_which_one(reply["blocks"])


def test_in_a_thread_about_one_of_them_the_shared_name_means_that_one(bot):
    ts = bot.slack.user_message("C1", "<@UBOT> why did raw.orders break?")
    bot.post(app_mention_event("<@UBOT> why did raw.orders break?", ts=ts))
    assert "warehouse.shop.raw.orders" in texts(answer_in_thread(bot, ts)["blocks"])

    follow = bot.slack.user_message("C1", "<@UBOT> is orders still broken?", thread_ts=ts)
    bot.post(app_mention_event("<@UBOT> is orders still broken?", ts=follow, thread_ts=ts))
    answer = answer_in_thread(bot, ts, after=1)
    assert "Which one?" not in texts(answer["blocks"])
    assert "warehouse.shop.raw.orders" in texts(answer["blocks"])
