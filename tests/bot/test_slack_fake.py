"""The loopback Slack behaves like Slack for slack_sdk and Bolt: messages, files, users, faults, signing, sockets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from slack_bolt import App, BoltRequest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.webhook import WebhookClient

from tests.fakes import slack_state
from tests.fakes.slack import SlackAPI, refusal_report
from tests.fakes.slack_signing import (
    app_home_opened,
    app_mention_event,
    block_action,
    sign,
    signed_headers,
    slash_command,
    view_submission,
)
from tests.fakes.slack_socket import SocketModeServer

SECRET = "s3cret"
INCIDENT = {"event_type": "dna_incident", "event_payload": {"incident_id": "INC-1", "v": 1}}


@pytest.fixture
def client(slack_api: SlackAPI) -> WebClient:
    return WebClient(
        token=slack_api.token,
        base_url=slack_api.url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )


def test_a_card_is_posted_updated_and_threaded_with_its_metadata(slack_api: SlackAPI, client: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*orders* broke"}}]
    card = client.chat_postMessage(channel="C1", text="orders broke", blocks=blocks, metadata=INCIDENT)
    reply = client.chat_postMessage(channel="C1", text="the diff", thread_ts=card["ts"])
    client.chat_update(channel="C1", ts=card["ts"], text="orders acknowledged", blocks=blocks, metadata=INCIDENT)

    assert card["channel"] == "C1" and float(reply["ts"]) > float(card["ts"])
    thread = client.conversations_replies(channel="C1", ts=card["ts"], include_all_metadata=True)["messages"]
    assert [m["text"] for m in thread] == ["orders acknowledged", "the diff"]
    assert thread[0]["metadata"] == INCIDENT and thread[0]["blocks"] == blocks and thread[0]["reply_count"] == 1
    history = client.conversations_history(channel="C1", include_all_metadata=True)["messages"]
    assert [m["ts"] for m in history] == [card["ts"]]  # replies stay in the thread
    assert history[0]["metadata"]["event_payload"]["incident_id"] == "INC-1"
    assert "metadata" not in client.conversations_history(channel="C1")["messages"][0]
    assert [m["ts"] for m in slack_api.thread("C1", card["ts"])] == [card["ts"], reply["ts"]]
    assert slack_api.messages("C1")[1]["thread_ts"] == card["ts"]

    with pytest.raises(SlackApiError) as missing:
        client.chat_update(channel="C1", ts="1.000001", text="x")
    assert missing.value.response["error"] == "message_not_found"


def test_timestamps_are_the_posting_time_so_oldest_finds_a_message_posted_late_in_the_session(
    slack_api: SlackAPI, client: WebClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One loopback serves the whole session; a message posted an hour in must carry that hour's ts, as Slack's
    # do, or a read-back since "ten minutes before the incident opened" misses it (CI posted a second card so).
    later = time.time_ns() + 3600 * 10**9
    monkeypatch.setattr(slack_state, "time", SimpleNamespace(time_ns=lambda: later, time=lambda: later / 1e9))
    first = client.chat_postMessage(channel="C1", text="orders broke", metadata=INCIDENT)
    second = client.chat_postMessage(channel="C1", text="orders broke again")

    assert abs(float(first["ts"]) - later / 1e9) < 1 and float(second["ts"]) > float(first["ts"])
    oldest = f"{later / 1e9 - 600:.6f}"
    found = client.conversations_history(channel="C1", oldest=oldest, include_all_metadata=True)["messages"]
    assert [m["ts"] for m in found] == [second["ts"], first["ts"]]


def test_files_upload_v2_stores_the_picture_in_the_thread(slack_api: SlackAPI, client: WebClient) -> None:
    card = client.chat_postMessage(channel="C1", text="orders broke")
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    client.files_upload_v2(channel="C1", thread_ts=card["ts"], content=png, filename="lineage.png", title="Lineage")

    [stored] = slack_api.files
    assert stored["content"] == png and stored["title"] == "Lineage"
    assert (stored["channel"], stored["thread_ts"]) == ("C1", card["ts"])
    assert slack_api.thread("C1", card["ts"])[-1]["files"][0]["id"] == stored["id"]
    methods = [c.method for c in slack_api.calls()]
    assert methods[-2:] == ["files.getUploadURLExternal", "files.completeUploadExternal"]


def test_owner_emails_resolve_to_slack_users(slack_api: SlackAPI, client: WebClient) -> None:
    slack_api.users({"ana@example.com": "U7"})
    assert client.users_lookupByEmail(email="ana@example.com")["user"]["id"] == "U7"
    assert client.users_info(user="U7")["user"]["profile"]["email"] == "ana@example.com"
    with pytest.raises(SlackApiError) as missing:
        client.users_lookupByEmail(email="nobody@example.com")
    assert missing.value.response["error"] == "users_not_found"


def test_a_429_is_retried_after_retry_after_and_the_message_is_stored_once(
    slack_api: SlackAPI, client: WebClient
) -> None:
    slack_api.fail("chat.postMessage", status=429, retry_after=1, times=1)
    started = time.monotonic()
    client.chat_postMessage(channel="C1", text="orders broke")

    assert time.monotonic() - started >= 1
    assert len(slack_api.calls("chat.postMessage")) == 2
    assert [m["text"] for m in slack_api.messages("C1")] == ["orders broke"]


def test_server_errors_and_ok_false_surface(slack_api: SlackAPI, client: WebClient) -> None:
    slack_api.fail("chat.postMessage", status=500, times=3)
    with pytest.raises(SlackApiError) as server_error:
        client.chat_postMessage(channel="C1", text="x")
    assert server_error.value.response.status_code == 500

    slack_api.fail("chat.update", error="ratelimited", times=1)
    with pytest.raises(SlackApiError) as refused:
        client.chat_update(channel="C1", ts="1.1", text="x")
    assert refused.value.response["error"] == "ratelimited"
    assert slack_api.messages("C1") == []


def test_a_wrong_token_or_method_is_refused(slack_api: SlackAPI) -> None:
    intruder = WebClient(token="xoxb-wrong", base_url=slack_api.url)
    with pytest.raises(SlackApiError) as refused:
        intruder.auth_test()
    assert refused.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as unknown:
        WebClient(token=slack_api.token, base_url=slack_api.url).api_call("chat.frobnicate")
    assert unknown.value.response["error"] == "unknown_method"


def test_response_url_payloads_are_recorded(slack_api: SlackAPI) -> None:
    WebhookClient(slack_api.response_url("cmd-1")).send(text="working…", response_type="ephemeral")
    assert slack_api.responses("cmd-1") == [{"text": "working…", "response_type": "ephemeral"}]


def test_signed_headers_pass_slack_sdk_verification() -> None:
    body, _ = slash_command("show orders")
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(body, sign(body, SECRET))
    assert not verifier.is_valid_request(body, sign(body, "other"))
    assert not verifier.is_valid_request(body, sign(body, SECRET, timestamp=int(time.time()) - 600))


@pytest.fixture
def bolt(slack_api: SlackAPI, client: WebClient) -> Iterator[App]:
    app = App(client=client, signing_secret=SECRET)

    @app.command("/dna")
    def dna(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        ack()
        respond(text=f"you said {command['text']}", replace_original=False)

    @app.event("app_mention")
    def mention(event: dict[str, Any], say: Any) -> None:
        say(text="looking…", thread_ts=event.get("thread_ts") or event["ts"])

    @app.event("app_home_opened")
    def home(event: dict[str, Any], client: WebClient) -> None:
        client.views_publish(user_id=event["user"], view={"type": "home", "blocks": []})

    @app.action("inc_assign")
    def assign(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        chosen = body["actions"][0]["selected_user"]
        client.chat_update(channel=body["channel"]["id"], ts=body["container"]["message_ts"], text=f"<@{chosen}>")

    @app.view("resolve")
    def resolve(ack: Any, view: dict[str, Any], client: WebClient) -> None:
        ack()
        reason = view["state"]["values"]["reason"]["reason_input"]["value"]
        client.chat_postMessage(channel=view["private_metadata"], text=f"resolved: {reason}")

    yield app


def _dispatch(app: App, request: tuple[str, str], secret: str = SECRET) -> int:
    body, content_type = request
    return app.dispatch(BoltRequest(body=body, headers=signed_headers(body, content_type, secret))).status


def test_the_payload_builders_drive_bolt_listeners(slack_api: SlackAPI, bolt: App) -> None:
    card = WebClient(token=slack_api.token, base_url=slack_api.url).chat_postMessage(channel="C1", text="card")

    assert _dispatch(bolt, slash_command("show orders", response_url=slack_api.response_url("r1"))) == 200
    assert _dispatch(bolt, app_mention_event("<@UBOT> why?", ts=card["ts"])) == 200
    assert _dispatch(bolt, app_home_opened("U2")) == 200
    click = block_action(
        "inc_assign", message_ts=card["ts"], selected_user="U9", response_url=slack_api.response_url("r2")
    )
    assert _dispatch(bolt, click) == 200
    submitted = view_submission("resolve", "C1", {"reason": {"reason_input": "fixed upstream"}})
    assert _dispatch(bolt, submitted) == 200
    assert _dispatch(bolt, slash_command("show orders"), secret="wrong") == 401

    slack_api.wait_for(lambda: slack_api.responses("r1") and slack_api.views_published("U2"))
    assert slack_api.responses("r1")[0]["text"] == "you said show orders"
    expected = {"<@U9>", "looking…", "resolved: fixed upstream"}  # listeners run concurrently: order varies
    slack_api.wait_for(lambda: {m["text"] for m in slack_api.messages("C1")} == expected)
    assert {m["text"] for m in slack_api.thread("C1", card["ts"])} == {"<@U9>", "looking…"}


def test_socket_mode_envelopes_are_delivered_and_acked(slack_api: SlackAPI, slack_socket: SocketModeServer) -> None:
    web = WebClient(token=slack_api.token, base_url=slack_api.url)
    received: list[dict[str, Any]] = []

    def listener(client: SocketModeClient, request: SocketModeRequest) -> None:
        received.append(request.payload)
        client.send_socket_mode_response(SocketModeResponse(request.envelope_id, payload={"text": "ok"}))

    socket = SocketModeClient(app_token=slack_api.app_token, web_client=web, auto_reconnect_enabled=False)
    socket.socket_mode_request_listeners.append(listener)
    socket.connect()
    try:
        envelope_id = slack_socket.send_request(*slash_command("status"))
        ack = slack_socket.wait_for_ack(envelope_id)
    finally:
        slack_socket.hang_up(socket)  # else the client's close() waits out its 3 s recv timeout
        socket.close()
    assert ack == {"envelope_id": envelope_id, "payload": {"text": "ok"}}
    assert received[0]["command"] == "/dna" and received[0]["text"] == "status"
    assert slack_api.calls("apps.connections.open")[0].headers["authorization"] == f"Bearer {slack_api.app_token}"
    assert json.loads(json.dumps(slack_socket.sent[0]))["type"] == "slash_commands"


def test_bolt_socket_mode_handler_gets_a_mention_and_acks(
    slack_api: SlackAPI, slack_socket: SocketModeServer, bolt: App
) -> None:
    handler = SocketModeHandler(bolt, app_token=slack_api.app_token)
    handler.connect()
    try:
        envelope_id = slack_socket.send_request(*app_mention_event("<@UBOT> why?", ts="1700000000.000001"))
        assert slack_socket.wait_for_ack(envelope_id) == {"envelope_id": envelope_id}
        slack_api.wait_for(lambda: slack_api.messages("C1"))
    finally:
        slack_socket.hang_up(handler.client)
        handler.close()
    assert slack_api.messages("C1")[0]["thread_ts"] == "1700000000.000001"


def test_a_thread_started_by_a_person_answers_replies(slack_api: SlackAPI, client: WebClient) -> None:
    asked = slack_api.user_message("C1", "<@UBOT> why did orders break?")
    client.chat_postMessage(channel="C1", text="because of a rename", thread_ts=asked)

    thread = client.conversations_replies(channel="C1", ts=asked)["messages"]
    assert [(m["user"], m["text"]) for m in thread] == [
        ("U2", "<@UBOT> why did orders break?"),
        ("UBOT", "because of a rename"),
    ]
    assert thread[0]["reply_count"] == 1


# ---- the fake refuses what Slack refuses ------------------------------------------------------------------------


def _button(action_id: str, text: str = "Show", **more: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": text}, **more}


def _section(text: str, **more: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **more}


def _refused(client: WebClient, method: str = "chat_postMessage", **kwargs: Any) -> Any:
    with pytest.raises(SlackApiError) as refused:
        getattr(client, method)(**kwargs)
    return refused.value.response


@pytest.mark.slack_refusals("invalid_blocks")
def test_a_did_you_mean_with_one_action_id_per_button_is_refused_as_slack_does(
    slack_api: SlackAPI, client: WebClient
) -> None:
    blocks = [_section("Did you mean"), {"type": "actions", "elements": [_button("dna_show"), _button("dna_show")]}]
    answer = _refused(client, channel="C1", text="Did you mean", blocks=blocks)

    pointer = '`action_id` "dna_show" already exists [json-pointer:/blocks/1/elements/1/action_id]'
    assert answer["error"] == "invalid_blocks" and answer["errors"] == [pointer]
    assert answer["response_metadata"]["messages"] == [f"[ERROR] {pointer}"]
    assert slack_api.messages("C1") == []  # nothing reaches the channel
    [refused] = slack_api.refusals()
    assert (refused.method, refused.kind) == ("chat.postMessage in C1", "refused")
    assert '"action_id": "dna_show"' in refused.describe()  # the report shows the offending block


LONG = "🧬" * 1501  # 1,501 characters to Python, 3,002 UTF-16 code units to Slack
BAD_BLOCKS = {
    "mrkdwn header": ([{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}], "/blocks/0/text/type"),
    "long header": ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "/blocks/0/text/text"),
    "section over 3000": ([_section("s" * 3001)], "/blocks/0/text/text"),
    "emoji counted in UTF-16": ([_section(LONG)], "/blocks/0/text/text"),
    "empty section text": ([_section("")], "/blocks/0/text/text"),
    "section without text": ([{"type": "section"}], "/blocks/0"),
    "emoji flag on mrkdwn": ([{"type": "section", "text": {"type": "mrkdwn", "text": "x", "emoji": True}}],
                             "/blocks/0/text/emoji"),
    "verbatim on plain_text": ([{"type": "context", "elements": [
        {"type": "plain_text", "text": "x", "verbatim": True}]}], "/blocks/0/elements/0/verbatim"),
    "11 context elements": ([{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
                            "/blocks/0/elements"),
    "26 buttons": ([{"type": "actions", "elements": [_button(f"b{i}") for i in range(26)]}], "/blocks/0/elements"),
    "11 fields": ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}], "/blocks/0/fields"),
    "long field": ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
                   "/blocks/0/fields/0/text"),
    "mrkdwn button": ([{"type": "actions", "elements": [{"type": "button", "action_id": "a",
                                                         "text": {"type": "mrkdwn", "text": "*b*"}}]}],
                      "/blocks/0/elements/0/text/type"),
    "long button text": ([{"type": "actions", "elements": [_button("a", "b" * 76)]}], "/blocks/0/elements/0/text/text"),
    "long button value": ([{"type": "actions", "elements": [_button("a", value="v" * 2001)]}],
                          "/blocks/0/elements/0/value"),
    "long url": ([{"type": "actions", "elements": [_button("a", url="https://x/" + "u" * 3000)]}],
                 "/blocks/0/elements/0/url"),
    "long action_id": ([{"type": "actions", "elements": [_button("a" * 256)]}], "/blocks/0/elements/0/action_id"),
    "long block_id": ([_section("x", block_id="b" * 256)], "/blocks/0/block_id"),
    "duplicate block_id": ([_section("x", block_id="b"), _section("y", block_id="b")], "/blocks/1/block_id"),
    "51 blocks": ([{"type": "divider"}] * 51, "/blocks"),
    "unknown block": ([{"type": "frobnicate"}], "/blocks/0/type"),
    "unknown key": ([{"type": "divider", "colour": "red"}], "/blocks/0/colour"),
    "long option value": ([{"type": "actions", "elements": [{"type": "static_select", "action_id": "s", "options": [
        {"text": {"type": "plain_text", "text": "o"}, "value": "v" * 151}]}]}], "/blocks/0/elements/0/options/0/value"),
    "101 options": ([{"type": "actions", "elements": [{"type": "static_select", "action_id": "s", "options": [
        {"text": {"type": "plain_text", "text": "o"}, "value": f"v{i}"} for i in range(101)]}]}],
        "/blocks/0/elements/0/options"),
    "long alt_text": ([{"type": "image", "image_url": "https://x/i.png", "alt_text": "a" * 2001}],
                      "/blocks/0/alt_text"),
}  # fmt: skip


@pytest.mark.slack_refusals("invalid_blocks")
@pytest.mark.parametrize(("blocks", "pointer"), list(BAD_BLOCKS.values()), ids=list(BAD_BLOCKS))
def test_each_block_kit_rule_is_refused_with_a_pointer_to_the_field(
    slack_api: SlackAPI, client: WebClient, blocks: list[dict[str, Any]], pointer: str
) -> None:
    answer = _refused(client, channel="C1", text="x", blocks=blocks)
    assert answer["error"] == "invalid_blocks"
    assert any(m.endswith(f"[json-pointer:{pointer}]") for m in answer["response_metadata"]["messages"]), answer


def test_a_message_just_within_every_limit_is_posted(slack_api: SlackAPI, client: WebClient) -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 150, "emoji": True}},
        _section("🧬" * 1500, block_id="b" * 255),  # 3,000 UTF-16 units
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 200, "verbatim": True}] * 10},
        {"type": "actions", "elements": [_button(f"a{i}", "b" * 75, value="v" * 80) for i in range(25)]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10},
        *[{"type": "divider"}] * 45,
    ]
    assert len(blocks) == 50
    client.chat_postMessage(channel="C1", text="everything at its limit", blocks=blocks)
    assert slack_api.messages("C1")[0]["blocks"] == blocks and slack_api.refusals() == []


@pytest.mark.slack_refusals("msg_blocks_too_long")
def test_a_reply_over_12k_characters_in_total_is_refused_although_each_block_fits(
    slack_api: SlackAPI, client: WebClient
) -> None:
    client.chat_postMessage(channel="C1", text="fixes", blocks=[_section("f" * 3000)] * 4)  # 12,000: taken
    answer = _refused(client, channel="C1", text="fixes", blocks=[_section("f" * 2900)] * 5)  # 14,500
    assert answer.data == {"ok": False, "error": "msg_blocks_too_long"}  # Slack says no more than that
    [refused] = slack_api.refusals()
    assert "14,500 characters of text across 5 blocks" in refused.describe()
    assert len(slack_api.messages("C1")) == 1


@pytest.mark.slack_refusals("no_text", "msg_too_long", "text_truncated", "missing_text")
def test_text_is_required_and_capped_at_40k(slack_api: SlackAPI, client: WebClient) -> None:
    with pytest.warns(UserWarning, match="top-level `text` argument is missing"):  # slack_sdk warns, Slack refuses
        assert _refused(client, channel="C1", text=" ")["error"] == "no_text"
    card = client.chat_postMessage(channel="C1", text="x" * 40_001)  # chat.postMessage truncates…
    assert _refused(client, "chat_update", channel="C1", ts=card["ts"], text="y" * 40_001)["error"] == "msg_too_long"
    with pytest.warns(UserWarning, match="top-level `text` argument is missing"):
        client.chat_postMessage(channel="C1", blocks=[_section("no notification text")])  # taken, but…
    assert [(r.error, r.kind) for r in slack_api.refusals()] == [
        ("no_text", "refused"), ("text_truncated", "policy"), ("msg_too_long", "refused"), ("missing_text", "policy")
    ]  # fmt: skip


@pytest.mark.slack_refusals("invalid_arguments")
def test_views_are_judged_as_slack_judges_them(slack_api: SlackAPI, client: WebClient) -> None:
    title = {"type": "plain_text", "text": "Resolve incident #12345678"}  # 26 characters
    why = {"type": "input", "label": {"type": "plain_text", "text": "Why"}}
    modal = {
        "type": "modal",
        "title": title,
        "blocks": [why | {"element": {"type": "plain_text_input", "action_id": "w"}}],
    }
    answer = _refused(client, "views_open", trigger_id="t1", view=modal)
    assert answer["error"] == "invalid_arguments" and "errors" not in answer
    assert answer["response_metadata"]["messages"] == [
        "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]",
        "[ERROR] must provide `submit` when the view has input blocks [json-pointer:/view/submit]",
    ]
    home = {"type": "home", "blocks": [{"type": "divider"}] * 101}
    assert _refused(client, "views_publish", user_id="U1", view=home)["error"] == "invalid_arguments"
    assert _refused(client, "views_publish", user_id="U1", view=modal | {"title": title | {"text": "ok"}})
    assert slack_api.views() == {}


@pytest.mark.slack_refusals("invalid_blocks")
def test_a_response_url_refuses_with_http_400_and_shows_nothing(slack_api: SlackAPI) -> None:
    blocks = [{"type": "actions", "elements": [_button("dna_show"), _button("dna_show")]}]
    answer = WebhookClient(slack_api.response_url("nf")).send(text="Did you mean", blocks=blocks)
    assert (answer.status_code, answer.body) == (400, "invalid_blocks")  # Bolt's respond() does not raise on this
    assert slack_api.responses("nf") == []
    assert WebhookClient(slack_api.response_url("nf")).send(delete_original=True).status_code == 200


@pytest.mark.slack_refusals("action_id_reused", "block_id_reused", "broadcast_in_text")
def test_what_slack_takes_but_the_bot_must_not_send_is_recorded_as_policy(
    slack_api: SlackAPI, client: WebClient
) -> None:
    rows = [_section(f"row {i}", accessory=_button("incident_show")) for i in range(2)]
    picker = {"type": "actions", "block_id": "inc-2", "elements": [_button("incident_ack", "Acknowledge")]}
    card = client.chat_postMessage(channel="C1", text="<!channel> orders broke", blocks=[*rows, picker])
    changed = picker | {"elements": [_button("incident_reopen", "Reopen")]}
    client.chat_update(channel="C1", ts=card["ts"], text="resolved", blocks=[changed])
    assert len(slack_api.messages("C1")) == 1  # Slack took both
    assert {(r.error, r.kind) for r in slack_api.refusals()} == {
        ("action_id_reused", "policy"), ("broadcast_in_text", "policy"), ("block_id_reused", "policy")
    }  # fmt: skip


def test_an_undeclared_refusal_fails_the_test_with_slack_reasons(slack_api: SlackAPI, client: WebClient) -> None:
    _refused(client, channel="C1", text="x", blocks=[{"type": "header", "text": {"type": "mrkdwn", "text": "*x*"}}])
    report = refusal_report(slack_api.unexpected_refusals())
    assert "1 payload(s) real Slack refuses" in report and "chat.postMessage in C1 → invalid_blocks" in report
    assert "must be plain_text [json-pointer:/blocks/0/text/type]" in report
    slack_api.expect_refusals("invalid_blocks")  # else this test itself would fail at teardown
    assert slack_api.unexpected_refusals() == []


def test_strict_can_be_switched_off_for_one_test(slack_api: SlackAPI, client: WebClient) -> None:
    slack_api.strict = False
    client.chat_postMessage(channel="C1", text="x", blocks=[{"type": "frobnicate"}])
    assert slack_api.messages("C1")[0]["blocks"] == [{"type": "frobnicate"}] and slack_api.refusals() == []
