"""Hostile HTTP: whatever anyone sends to the bot's routes, signed or not, gets a short 4xx, never a 5xx, a stack
in the log, a log line over 2 kB, or a body read past 1 MB.

Each deterministic test pins one way the bot could be made to use memory, fill the disk or answer a 500; the
Hypothesis fuzz at the end sends raw bodies and headers to `/slack/events` and `/openmetadata/webhook`, signed and
unsigned, against the running bot (the app `dnabot serve` runs, over real HTTP on loopback).
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bot.core.logs import BOLT, LINE_BYTES, NOISY, configure_logging
from bot.runtime.webhook import PATH as WEBHOOK_PATH
from tests.bot import test_app_http
from tests.bot.test_app_http import SECRET
from tests.bot.test_webhook import change_event
from tests.bot.test_webhook import sign as om_sign
from tests.fakes.slack_signing import FORM, JSON, sign, slash_command, url_verification

bot = test_app_http.bot  # the running-bot fixture: demo catalog synced, signed HTTP, loopback Slack
OM_SECRET = "om-webhook-secret-hostile"
LIMIT = 1_048_576
HUGE = 50 * 1024 * 1024
CHUNK = 64 * 1024
DEEP = 200_000


@dataclass
class Hostile:
    """The running bot, its webhook secret set, and everything it logged (our handler's lines, and any record)."""

    bot: Any
    stream: io.StringIO
    caplog: pytest.LogCaptureFixture

    @property
    def url(self) -> str:
        return self.bot.url

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def assert_log_clean(self) -> None:
        long = [len(line.encode()) for line in self.lines() if len(line.encode()) > LINE_BYTES]
        assert not long, f"log lines of {long} bytes (limit {LINE_BYTES})"
        stacks = [line for line in self.lines() if line.startswith("Traceback")]
        assert not stacks, f"a traceback reached the log: {self.stream.getvalue()[-1500:]}"
        records = [r for r in self.caplog.records if r.exc_info or len(r.getMessage().encode()) > LINE_BYTES]
        assert not records, f"{len(records)} long or stack-carrying records, first: {records[0].getMessage()[:300]}"

    def slack(self, body: bytes, headers: dict[str, str] | list[tuple[str, str]]) -> httpx.Response:
        return self.bot.http.post(f"{self.url}/slack/events", content=body, headers=headers)

    def signed_slack(self, body: bytes, content_type: str = JSON, **extra: str) -> httpx.Response:
        timestamp = str(int(time.time()))
        headers = {"content-type": content_type} | sign_bytes(body, timestamp) | extra
        return self.slack(body, headers)

    def webhook(self, body: bytes, *, signed: bool = True, content_type: str = JSON) -> httpx.Response:
        headers = {"content-type": content_type} | ({"x-om-signature": om_sign(body, OM_SECRET)} if signed else {})
        return self.bot.http.post(f"{self.url}{WEBHOOK_PATH}", content=body, headers=headers)


def sign_bytes(body: bytes, timestamp: str) -> dict[str, str]:
    """Slack's v0 signature headers for raw bytes (`sign()` takes text)."""
    import hashlib
    import hmac

    digest = hmac.new(SECRET.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": timestamp, "x-slack-signature": f"v0={digest}"}


@pytest.fixture
def _om_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENMETADATA_WEBHOOK_SECRET", OM_SECRET)
    monkeypatch.setenv("DNABOT_LOG_LEVEL", "INFO")
    monkeypatch.setenv("DNABOT_LOG_FORMAT", "text")


@pytest.fixture
def hostile(_om_secret: None, bot: Any, caplog: pytest.LogCaptureFixture) -> Iterator[Hostile]:
    """The bot with logging configured as `dnabot serve` does (INFO, text), uvicorn's errors included."""
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    named = {name: logging.getLogger(name).level for name in (*NOISY, *BOLT, "uvicorn")}
    factory = logging.getLogRecordFactory()
    stream = io.StringIO()
    handler = configure_logging(bot.settings, stream=stream)
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(handler)  # uvicorn logs an ASGI app's crash on its own handler, not the root's
    uvicorn_log.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    try:
        yield Hostile(bot, stream, caplog)
    finally:
        uvicorn_log.removeHandler(handler)
        uvicorn_log.removeHandler(caplog.handler)
        for extra in [h for h in root.handlers if h not in saved_root[1]]:
            root.removeHandler(extra)
        root.setLevel(saved_root[0])
        for name, level in named.items():
            logging.getLogger(name).setLevel(level)
        logging.setLogRecordFactory(factory)


class Counted:
    """A request body streamed in chunks (chunked transfer encoding), counting what was handed to the socket."""

    def __init__(self, total: int, chunk: bytes = b"x" * CHUNK) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < self.total:
            self.sent += len(self.chunk)
            yield self.chunk


# ------------------------------------------------------------------------------------------------ body limits


@pytest.mark.parametrize("route", ["/slack/events", WEBHOOK_PATH])
def test_a_50_mb_chunked_body_gets_a_413_long_before_it_is_all_sent(hostile, route):
    body = Counted(HUGE)
    response = hostile.bot.http.post(f"{hostile.url}{route}", content=body, headers={"content-type": JSON})
    assert response.status_code == 413, f"{route} answered {response.status_code} to a 50 MB body"
    assert response.text == "request body too large"
    # the server stops reading at 1 MB: what got through is what the socket buffers held, far from 50 MB
    assert body.sent < HUGE // 2, f"the client could send {body.sent} bytes: the server read on"
    hostile.assert_log_clean()


def test_a_route_that_reads_no_body_does_not_read_a_50_mb_one_either(hostile):
    body = Counted(HUGE)
    response = hostile.bot.http.request("GET", f"{hostile.url}/healthz", content=body)
    assert response.status_code == 200 and response.headers["connection"] == "close"
    assert body.sent < HUGE // 2, f"the client could send {body.sent} bytes: the server read on"
    assert hostile.bot.http.get(f"{hostile.url}/healthz").headers.get("connection") != "close"  # keep-alive kept


@pytest.mark.parametrize("route", ["/slack/events", WEBHOOK_PATH, "/metrics"])
def test_a_declared_content_length_over_1_mb_is_refused_before_any_body_is_read(hostile, route):
    host, port = urlsplit(hostile.url).hostname, urlsplit(hostile.url).port
    method = "GET" if route == "/metrics" else "POST"
    head = f"{method} {route} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {JSON}\r\ncontent-length: {HUGE}\r\n\r\n"
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(head.encode())  # not one byte of the body
        answer = conn.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    hostile.assert_log_clean()


def test_a_body_of_exactly_1_mb_is_still_read(hostile):
    body = json.dumps({"type": "url_verification", "challenge": "c", "pad": ""}).encode()
    body = body[:-2] + b"x" * (LIMIT - len(body)) + b'"}'
    assert len(body) == LIMIT
    response = hostile.signed_slack(body)
    assert response.status_code == 200 and response.json() == {"challenge": "c"}


def test_an_unsigned_body_under_the_limit_is_refused_without_being_logged(hostile):
    """Bolt logged the whole body of a request whose signature fails, at INFO: 1 MB of log per request."""
    body = b"command=/dna&text=" + b"A" * 900_000
    response = hostile.slack(body, {"content-type": FORM, "x-slack-request-timestamp": str(int(time.time()))})
    assert response.status_code == 401
    response = hostile.slack(
        body, {"content-type": FORM} | sign_bytes(body, str(int(time.time()))) | {"x-slack-signature": "v0=" + "0" * 64}
    )
    assert response.status_code == 401
    assert "A" * 2000 not in hostile.stream.getvalue()
    hostile.assert_log_clean()


def test_no_log_line_is_over_2_kb_whatever_is_logged(hostile):
    noisy = logging.getLogger("dnabot.test.hostile")
    noisy.warning("payload %s", "é" * 10_000)
    noisy.warning("%s", "x" * 100_000)
    try:
        raise ValueError("y" * 50_000)
    except ValueError:
        noisy.exception("failed with %s", "z" * 5_000)
    lines = hostile.lines()
    assert len(lines) > 3 and all(len(line.encode()) <= LINE_BYTES for line in lines)
    assert any("[truncated]" in line for line in lines)
    assert all(len(r.getMessage().encode()) <= LINE_BYTES for r in hostile.caplog.records)


# ------------------------------------------------------------------------------------------- /slack/events


def test_a_timestamp_that_is_no_number_is_a_401_not_a_500(hostile):
    """Bolt's verifier did `int()` on the header: `abc` was a 500 and a stack in the log."""
    body, content_type = slash_command("help")
    statuses = {}
    for timestamp in ("abc", "", "1 2", "1e9", "-1", "9" * 40, "0x10", "12.5", "nan"):
        headers = {"content-type": content_type, "x-slack-request-timestamp": timestamp}
        headers["x-slack-signature"] = sign(body, SECRET)["x-slack-signature"]
        statuses[timestamp] = hostile.slack(body.encode(), headers).status_code
    assert set(statuses.values()) == {401}, statuses
    hostile.assert_log_clean()


def test_missing_or_repeated_signature_headers_are_refused(hostile):
    body, content_type = url_verification()
    good = signed = sign(body, SECRET)
    assert hostile.slack(body.encode(), {"content-type": content_type}).status_code == 401
    only_ts = {"content-type": content_type, "x-slack-request-timestamp": signed["x-slack-request-timestamp"]}
    assert hostile.slack(body.encode(), only_ts).status_code == 401
    # two signatures, the last one good: Bolt kept the last header; Slack never sends two
    twice = [("content-type", content_type), ("x-slack-request-timestamp", good["x-slack-request-timestamp"])]
    twice += [("x-slack-signature", "v0=" + "0" * 64), ("x-slack-signature", good["x-slack-signature"])]
    assert hostile.slack(body.encode(), twice).status_code == 401
    hostile.assert_log_clean()


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_json_nested_200k_deep_is_refused_not_a_500(hostile, signed):
    """json.loads raised RecursionError inside Bolt, before (unsigned) or after (signed) the signature check."""
    statuses = {}
    for body, content_type in (("[" * DEEP, JSON), ('{"a":' * DEEP, JSON), ("payload=" + "[" * DEEP, FORM)):
        raw = body.encode()
        response = hostile.signed_slack(raw, content_type) if signed else hostile.slack(raw, {"content-type": JSON})
        statuses[body[:12]] = response.status_code
    assert set(statuses.values()) == {400 if signed else 401}, statuses
    hostile.assert_log_clean()


def test_signed_json_nested_deeper_than_slack_ever_does_is_a_400(hostile):
    body = json.dumps({"type": "event_callback", "event": {"type": "x", "deep": json.loads("[" * 500 + "]" * 500)}})
    response = hostile.signed_slack(body.encode())
    assert response.status_code == 400
    hostile.assert_log_clean()


def test_a_signed_body_of_a_content_type_slack_never_sends_is_a_415(hostile):
    body, _ = url_verification()
    kinds = ("text/plain", "", "application/xml", "multipart/form-data; boundary=x", "application/jsonx")
    statuses = {kind: hostile.signed_slack(body.encode(), kind).status_code for kind in kinds}
    assert set(statuses.values()) == {415}, statuses
    hostile.assert_log_clean()


JUNK = (
    (b"\xff\xfe\x00{", JSON),
    (b"payload=%FF%FE", FORM),
    (b"payload=\xff", FORM),
    (b"payload={not json", FORM),
    (b"payload=" + b"%22" * 3, FORM),
    (b"&&&==&payload&payload=1&payload=[]", FORM),
    (b'{"type": "event_callback", "event": "x"}', JSON),
    (b'{"type": "block_actions", "actions": {}}', JSON),
)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_junk_bodies_are_a_4xx(hostile, signed):
    statuses = {}
    for body, kind in JUNK:
        response = hostile.signed_slack(body, kind) if signed else hostile.slack(body, {"content-type": kind})
        statuses[body[:40]] = response.status_code
    assert all(400 <= status < 500 for status in statuses.values()), statuses
    hostile.assert_log_clean()


def test_slacks_unsigned_certificate_probe_is_answered_but_nothing_else_rides_on_it(hostile):
    probe = {"content-type": FORM, "x-slack-request-timestamp": "abc"}
    assert hostile.slack(b"ssl_check=1&token=legacy-verification-token", probe).status_code == 200
    for body in (b"ssl_check=1&payload=%7B%7D", b"ssl_check=1&payload=" + b"[" * DEEP, b"payload=1&ssl_check=1"):
        response = hostile.slack(body, probe)
        assert response.status_code == 401, f"{body[:30]!r}: HTTP {response.status_code}"
    hostile.assert_log_clean()


def test_huge_headers_are_refused_not_a_500(hostile):
    body, content_type = url_verification()
    for size in (20_000, 200_000):
        headers = {"content-type": content_type, "x-junk": "j" * size} | sign(body, SECRET)
        try:
            status = hostile.slack(body.encode(), headers).status_code
        except httpx.HTTPError:  # the server may drop a connection whose head is too large
            continue
        assert status < 500, f"{size}-byte header: HTTP {status}"
    hostile.assert_log_clean()


# ------------------------------------------------------------------------------------- OpenMetadata webhook


def test_signed_deep_json_on_the_webhook_is_a_400_not_a_500(hostile):
    statuses = {opener: hostile.webhook((opener * (DEEP // len(opener))).encode()).status_code for opener in "[{"}
    statuses['{"data":'] = hostile.webhook(('{"data":' * (DEEP // 8)).encode()).status_code
    assert set(statuses.values()) == {400}, statuses
    hostile.assert_log_clean()


ABSURD_EVENTS = {
    "long-id": change_event(id="i" * 5000),
    "long-type": change_event(entityType="t" * 500),
    "long-fqn": change_event(fqn="f" * 50_000),
    "deep-entity": change_event(entity="[" * DEEP),
    "nested-entity": change_event(entity='{"a":' * 900 + "1" + "}" * 900),
    "deep-lineage": change_event(entityType="lineage", entity="[" * DEEP),
    "lineage-list": change_event(entityType="lineage", entity=json.dumps({"edge": [1]})),
}


def test_signed_events_with_absurd_fields_are_answered_not_a_500(hostile):
    statuses = {name: hostile.webhook(json.dumps(event).encode()).status_code for name, event in ABSURD_EVENTS.items()}
    assert all(status < 500 for status in statuses.values()), statuses
    hostile.assert_log_clean()


# ------------------------------------------------------------------------------------------------ fuzzing

FUZZ = settings(
    max_examples=400,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80).map(str.strip)
header_name = st.sampled_from(
    (
        "x-slack-request-timestamp",
        "x-slack-signature",
        "x-slack-retry-num",
        "x-slack-retry-reason",
        "x-om-signature",
        "content-type",
        "content-encoding",
        "transfer-encoding-x",
        "x-forwarded-for",
        "accept",
    )
)
content_type = st.sampled_from((FORM, JSON, f"{JSON}; charset=utf-8", "text/plain", "", "application/x-www-form"))
nested = st.builds(
    lambda o, n: (o * n).encode(), st.sampled_from(("[", '{"a":', '{"data":[', "payload=[")), st.integers(1, 5000)
)
raw_body = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=300).map(str.encode),
    st.builds(lambda t: ("payload=" + t).encode(), st.text(max_size=100)),
    st.builds(lambda t: json.dumps({"type": t, "event": {"type": t}}).encode(), st.text(max_size=30)),
    st.builds(
        lambda e: json.dumps(change_event(**e)).encode(),
        st.dictionaries(
            st.sampled_from(("id", "eventType", "entityType", "entity", "timestamp")),
            st.one_of(st.text(max_size=40), st.integers(), st.none()),
            max_size=3,
        ),
    ),
    nested,
    st.sampled_from((b"", b"{}", b"[]", b"null", b"payload=", b"ssl_check=1", b"ssl_check=1&payload=[[[")),
)


@FUZZ
@given(
    body=raw_body,
    kind=content_type,
    extra=st.lists(st.tuples(header_name, header_value), max_size=4),
    signed=st.booleans(),
    route=st.sampled_from(("/slack/events", WEBHOOK_PATH)),
)
def test_fuzzed_bodies_and_headers_never_get_a_5xx_nor_a_long_log_line(hostile, body, kind, extra, signed, route):
    headers: list[tuple[str, str]] = [("content-type", kind)] if kind else []
    if signed and route == WEBHOOK_PATH:
        headers.append(("x-om-signature", om_sign(body, OM_SECRET)))
    elif signed:
        headers.extend(sign_bytes(body, str(int(time.time()))).items())
    headers.extend(extra)
    response = hostile.bot.http.post(f"{hostile.url}{route}", content=body, headers=headers)
    assert response.status_code < 500, f"{route} {headers} {body[:80]!r}: HTTP {response.status_code}"
    hostile.assert_log_clean()
