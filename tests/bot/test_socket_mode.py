"""DNA Bot over Socket Mode, end to end: the real Bolt app behind `SocketModeHandler`, envelopes from a loopback
Socket Mode server, answers in the loopback Slack Web API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient

from bot.core import services
from bot.core.settings import Settings
from bot.slack.app import build_app
from bot.slack.listeners.mentions import PLACEHOLDER
from tests.bot.test_cli import rename_status
from tests.fakes.slack import SlackAPI
from tests.fakes.slack_signing import app_mention_event, slash_command
from tests.fakes.slack_socket import SocketModeServer

STG_ORDERS = "warehouse.shop.staging.stg_orders"


def texts(blocks: Any) -> str:
    return json.dumps(blocks or [], ensure_ascii=False)


@pytest.fixture
def settings(bot_env, slack_api) -> Settings:
    return bot_env(SLACK_APP_TOKEN=slack_api.app_token)  # Socket Mode: no signing secret at all


@pytest.fixture
def handler(settings: Settings, slack_api: SlackAPI, slack_socket: SocketModeServer) -> Iterator[SocketModeHandler]:
    """The real DNA Bot app connected over Socket Mode (non-blocking `connect()`), torn down per the fake's gotcha."""
    app = build_app(settings, client=WebClient(base_url=slack_api.url, token=slack_api.token))
    handler = SocketModeHandler(app, app_token=slack_api.app_token)
    handler.connect()
    try:
        slack_socket.wait_connected()
        yield handler
    finally:
        slack_socket.hang_up(handler.client)  # else close() waits out the client's 3 s recv timeout
        handler.close()


def test_the_app_connects_with_the_app_level_token(handler, slack_api, slack_socket):
    [opened] = slack_api.calls("apps.connections.open")
    assert opened.headers["authorization"] == f"Bearer {slack_api.app_token}"
    assert slack_socket.connects == 1 and handler.client.is_connected()


def test_dna_help_is_acked_and_answered_through_the_response_url(handler, slack_api, slack_socket):
    envelope_id = slack_socket.send_request(*slash_command("help", response_url=slack_api.response_url("help")))
    ack = slack_socket.wait_for_ack(envelope_id)
    assert ack["envelope_id"] == envelope_id and "error" not in json.dumps(ack)
    [reply] = slack_api.wait_for(lambda: slack_api.responses("help"))
    assert reply["response_type"] == "ephemeral" and "/dna commands" in texts(reply["blocks"])
    assert slack_socket.sent[0]["type"] == "slash_commands"


def test_a_mention_gets_a_placeholder_then_the_answer_in_its_thread(
    settings, handler, slack_api, slack_socket, om_demo
):
    asyncio.run(services.sync(settings))
    rename_status(om_demo)
    asyncio.run(services.sync(settings))

    question = "<@UBOT> why did stg_orders break?"
    ts = slack_api.user_message("C1", question)
    envelope_id = slack_socket.send_request(*app_mention_event(question, ts=ts))
    assert slack_socket.wait_for_ack(envelope_id) == {"envelope_id": envelope_id}  # events are acked empty

    reply = slack_api.wait_for(lambda: [m for m in slack_api.thread("C1", ts) if m["ts"] != ts])[0]
    assert reply["thread_ts"] == ts
    [placeholder] = [c for c in slack_api.calls("chat.postMessage") if c.args.get("text") == PLACEHOLDER]
    assert placeholder.args["thread_ts"] == ts
    answered = slack_api.wait_for(
        lambda: slack_api.message("C1", reply["ts"]).get("edited") and slack_api.message("C1", reply["ts"]), 30
    )
    assert answered["thread_ts"] == ts and STG_ORDERS in texts(answered["blocks"])
    assert "Answered by rules" in texts(answered["blocks"])
    assert len(slack_api.thread("C1", ts)) == 2  # the placeholder was replaced, not followed by a second post
