"""`dnabot serve --http` drops clients that hold a connection without finishing a request (slow-loris, idle)."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.replicas import Replica, ReplicaSet
from tests.fakes.db import fresh_database

TIMEOUTS = {"DNABOT_HTTP_READ_TIMEOUT_SECONDS": "1", "DNABOT_HTTP_KEEPALIVE_SECONDS": "1"}
HEADERS = b"POST /slack/events HTTP/1.1\r\nHost: dnabot\r\nContent-Type: application/json\r\nX-Padding: " + b"x" * 80


@pytest.fixture
def bot(om_demo, slack_api, tmp_path: Path) -> Iterator[Replica]:
    with fresh_database("sqlite", directory=tmp_path) as url:
        replicas = ReplicaSet(url, om_demo, slack_api, tmp_path, extra_env=TIMEOUTS)
        try:
            [replica] = replicas.start(1)
            yield replica
        finally:
            replicas.stop()


def connect(replica: Replica) -> socket.socket:
    return socket.create_connection(("127.0.0.1", replica.port), timeout=5)


def closed_by_server(sock: socket.socket, wait: float) -> bool:
    """True when the server has closed the connection (EOF or reset) within `wait` seconds."""
    readable, _, _ = select.select([sock], [], [], wait)
    if not readable:
        return False
    try:
        return sock.recv(65536) == b""
    except ConnectionError:
        return True


def test_a_slow_loris_client_is_disconnected_before_its_headers_are_in(bot):
    with connect(bot) as sock:
        sent = 0
        for byte in HEADERS:  # one header byte every 0.1 s: 100 bytes would take 10 s
            try:
                sock.sendall(bytes([byte]))
                sent += 1
            except ConnectionError:
                break
            if closed_by_server(sock, 0.1):
                break
        else:
            pytest.fail("the server kept reading a request that never ended")
    assert sent < len(HEADERS)
    assert "no complete request within 1 s" in bot.log()


def test_a_connection_that_sends_nothing_is_closed(bot):
    with connect(bot) as sock:
        assert closed_by_server(sock, 15), "an idle new connection stayed open"


def test_an_idle_keep_alive_connection_is_closed_after_its_response(bot):
    with connect(bot) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: dnabot\r\n\r\n")
        response = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in response and time.monotonic() < deadline:
            response += sock.recv(65536)
        assert response.startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 15
        while not closed_by_server(sock, 0.5):  # the rest of the body, then EOF after the keep-alive timeout
            assert time.monotonic() < deadline, "the idle keep-alive connection stayed open"


def test_normal_requests_are_unaffected(bot):
    with httpx.Client(base_url=bot.url, timeout=10) as client:  # one kept-alive connection, requests in a row
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        unsigned = client.post("/slack/events", content=b'{"type": "event_callback"}')
        assert unsigned.status_code == 401
