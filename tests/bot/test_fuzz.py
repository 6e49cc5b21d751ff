"""Abuse: whatever text a user types after `/dna` or `@DNA Bot`, the signed request is acked and answered, never a 5xx.

Hypothesis writes the text (any unicode, control characters, quotes, very long, subcommands with junk arguments,
nothing at all); each example is a correctly signed HTTP request to the running bot, and the reply is read back
from the loopback Slack: the `response_url` for a command, the thread for a mention. The deterministic tests at
the end pin the problems the fuzzing found, so they fail the same way on every run.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bot.core.actions import ActionId
from bot.slack.listeners.mentions import PLACEHOLDER
from tests.bot import test_app_http
from tests.bot.test_app_http import texts
from tests.fakes.slack_signing import FORM, JSON, app_mention_event, block_action, slash_command

bot = test_app_http.bot  # the running-bot fixture: demo catalog synced, signed HTTP, loopback Slack

# A modest budget keeps the file well under a minute. No shrinking: one slow example (a 3 s ack timeout) would be
# replayed dozens of times; the failing text is short enough to read as found. Found failures replay first from
# the example database.
FUZZ = settings(
    max_examples=50,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
REPLY_SECONDS = 15.0
ACK_SECONDS = 2.5  # Slack gives up on an ack after 3 s
GENERIC_ERROR = "Something went wrong"
_ids = itertools.count(1)

SUBCOMMANDS = ("show", "timeline", "blast", "why", "incidents", "status", "sync", "help")
SUBCOMMANDS += ("subscribe", "unsubscribe", "subscriptions", "SHOW", "Why", "TIMELINE")
DATASETS = ("stg_orders", "warehouse.shop.staging.stg_orders", "orders", "ordrs", '"dim.product"', "*", "domain:")
QUOTES = ('"', "'", "`", "“", "”", "‘", "’", "«", "»", "\\", "\\\\", '""', "''", "```")
SPANS = ("7d", "0d", "-1d", "1.5h", "2026-13-45", "9999-12-31T23:59Z", "0001-01-01", "1e9d", "７d")

any_text = st.text(max_size=200)
control_text = st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), max_size=40)
quotes = st.lists(st.sampled_from(QUOTES), max_size=6).map("".join)
spans = st.one_of(
    st.sampled_from(SPANS),
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10**12), st.sampled_from(("s", "m", "h", "d", "w", "W"))),
)
junk = st.one_of(any_text, control_text, quotes, st.sampled_from(DATASETS), spans)
long_text = st.builds(
    lambda head, n: (head + " ") * n,
    st.sampled_from(("show", "x", "é", "🧬", "stg_orders")),
    st.integers(100, 1500),
)
subcommand_with_junk = st.builds(
    lambda sub, args: " ".join([sub, *args]), st.sampled_from(SUBCOMMANDS), st.lists(junk, max_size=4)
)
command_text = st.one_of(
    st.just(""),
    st.sampled_from((" ", "\t", "\n", "\u00a0", "\u200b")),
    any_text,
    control_text,
    quotes,
    long_text,
    subcommand_with_junk,
)

MENTIONS = ("<@UBOT>", "<@UBOT|dna-bot>", "<@U0SOMEONE>", "<@>", "<@UBOT", "@UBOT", "<!here>", "<#C1|general>")
mention_text = st.builds(
    lambda prefix, body: f"{prefix} {body}" if prefix else body,
    st.lists(st.sampled_from(MENTIONS), max_size=3).map(" ".join),
    st.one_of(st.just(""), any_text, control_text, quotes, long_text, subcommand_with_junk),
)


def _readable(payload: dict[str, Any]) -> str:
    return f"{payload.get('text') or ''} {texts(payload.get('blocks'))}"


def command(bot: Any, text: str, *, user: str = "U2") -> tuple[httpx.Response, float, dict[str, Any]]:
    """Send `/dna text` signed; (the ack, its seconds, the last reply posted to the response_url)."""
    rid = f"fuzz-cmd-{next(_ids)}"
    started = time.monotonic()
    ack = bot.post(slash_command(text, user=user, response_url=bot.slack.response_url(rid)))
    seconds = time.monotonic() - started
    replies = bot.slack.wait_for(lambda: bot.slack.responses(rid), REPLY_SECONDS)
    return ack, seconds, replies[-1]


# ------------------------------------------------------------------------------------------------ fuzzing


@FUZZ
@given(text=command_text)
def test_any_dna_command_text_is_acked_and_answered_privately(bot, text: str) -> None:
    bot.slack.reset()
    ack, _, reply = command(bot, text)
    assert ack.status_code == 200, f"/dna {text!r} was answered HTTP {ack.status_code}: {ack.text[:300]}"
    assert reply.get("response_type") in ("ephemeral", "in_channel") and (reply.get("text") or reply.get("blocks"))
    assert GENERIC_ERROR not in _readable(reply), f"/dna {text!r} hit an unexpected error: {_readable(reply)[:300]}"


@FUZZ
@given(text=mention_text)
def test_any_mention_text_gets_an_answer_in_its_thread(bot, text: str) -> None:
    bot.slack.reset()
    channel = f"CFUZZ{next(_ids)}"
    ts = bot.slack.user_message(channel, text)
    ack = bot.post(app_mention_event(text, channel=channel, ts=ts))
    assert ack.status_code == 200, f"mention {text!r} was answered HTTP {ack.status_code}: {ack.text[:300]}"

    def answered() -> list[dict[str, Any]]:
        mine = [m for m in bot.slack.messages(channel) if m.get("user") == "UBOT" and m.get("thread_ts") == ts]
        return [m for m in mine if m.get("text") != PLACEHOLDER] + bot.slack.ephemerals(channel)

    [reply, *_] = bot.slack.wait_for(answered, REPLY_SECONDS)
    assert reply.get("text") or reply.get("blocks")
    stuck = [m for m in bot.slack.messages(channel) if m.get("text") == PLACEHOLDER]
    assert not stuck, f"mention {text!r} left the placeholder in the thread"
    assert GENERIC_ERROR not in _readable(reply), f"mention {text!r} hit an unexpected error: {_readable(reply)[:300]}"


raw_body = st.one_of(
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.text(max_size=300),
    st.builds(lambda t: "payload=" + t, st.text(max_size=100)),
    st.builds(lambda t: json.dumps({"type": t}), st.text(max_size=30)),
    st.builds(lambda t: json.dumps({"type": "event_callback", "event": t}), st.one_of(st.text(max_size=30), st.none())),
    st.sampled_from(("command=/dna", "command=/dna&text=show", "{}", "[]", "null", "payload={}", "payload=[]")),
)


@FUZZ
@given(body=raw_body, content_type=st.sampled_from((FORM, JSON, "text/plain", "")))
def test_signed_garbage_bodies_are_refused_or_ignored_never_a_5xx(bot, body: str, content_type: str) -> None:
    response = bot.post((body, content_type))
    assert response.status_code < 500, f"{content_type!r} body {body[:80]!r} got HTTP {response.status_code}"


# ------------------------------------------------------------------------------------- what fuzzing found


def test_a_command_that_fails_after_its_ack_is_still_acked_200_at_once(bot):
    """Slack shows the user an error of its own when the ack is not a 200 within 3 s."""
    bad = {}
    for attempt in range(8):
        for text in ("show", "show nosuchdataset", "sync", "incidents maybe", "timeline stg_orders 7 fortnights"):
            ack, seconds, reply = command(bot, text)
            assert reply["response_type"] == "ephemeral"  # the user did get the hint
            if ack.status_code != 200 or seconds > ACK_SECONDS:
                bad.setdefault(text, []).append(f"#{attempt}: HTTP {ack.status_code} after {seconds:.1f}s")
    assert not bad, (
        "BUG (bot/slack/listeners/commands.py dna_command): an error raised after ack() reaches Bolt's thread runner, "
        "which resets the ack (slack_bolt/listener/thread_runner.py, `ack.response = response` with response None "
        f"or 500): the HTTP answer becomes a 404 after 3 s or a 500, at random. Seen: {bad}"
    )


def test_a_refused_button_click_is_still_acked_200_at_once(bot):
    incident_id = bot.rename_status()
    card_ts = bot.post_card(incident_id)
    bad = []
    for attempt in range(8):
        rid = f"refused-{attempt}"
        click = block_action(
            ActionId.RESOLVE,
            bot.value(incident_id),
            user="UNOBODY",
            message_ts=card_ts,
            response_url=bot.slack.response_url(rid),
        )
        started = time.monotonic()
        ack = bot.post(click)
        seconds = time.monotonic() - started
        [refusal] = bot.slack.wait_for(lambda rid=rid: bot.slack.responses(rid))
        assert "only DNA Bot admins" in texts(refusal["blocks"])
        if ack.status_code != 200 or seconds > ACK_SECONDS:
            bad.append(f"#{attempt}: HTTP {ack.status_code} after {seconds:.1f}s")
    assert not bad, f"BUG (bot/slack/listeners/actions.py): a refusal raised after ack() spoils the ack: {bad}"


@pytest.mark.parametrize("span", ["110000w", "10000000000d", "99999999999999999999s", "9999999999999h"])
def test_an_absurd_time_span_gets_a_hint_not_an_internal_error(bot, span):
    _, _, reply = command(bot, f"timeline stg_orders {span}")
    assert GENERIC_ERROR not in _readable(reply), (
        f"BUG (bot/core/timeparse.py parse_span/parse_since): `{span}` overflows datetime/timedelta (OverflowError) "
        f"instead of a TimeArgError hint: {_readable(reply)[:200]}"
    )
    assert "span" in _readable(reply)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("\x00", JSON), ("{", JSON), ("", JSON), ("payload", FORM), ("payload=%7B", FORM), ("payload=1", FORM)],
)
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_a_body_slack_never_sends_is_refused_not_a_500(bot, body, content_type, signed):
    if signed:
        response = bot.post((body, content_type))
    else:
        headers = {"content-type": content_type}
        response = bot.http.post(f"{bot.url}/slack/events", content=body.encode(), headers=headers)
    assert response.status_code < 500, (
        f"BUG (bot/runtime/http.py slack_events): BoltRequest parses the body before the signature check and raises on "
        f"{body!r} ({content_type}); anyone can make the app answer HTTP {response.status_code} and log a stack"
    )
