"""A wrong OPENMETADATA_URL, as a new user meets it: a refused port or an unknown host fails fast in one sentence,
and a web page that is not OpenMetadata is named as such, without its HTML."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from storage.errors import OMNotOpenMetadata, OMUnavailable
from storage.openmetadata.client import OpenMetadataClient
from tests.storage.test_om_client import VERSION, FakeOM, Sleeps, ok, om_client

pytestmark = pytest.mark.anyio

PAGE = "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body>" + "<p>hello world</p>" * 50


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def refused_url() -> Iterator[str]:
    """An address where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


class _Page(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = PAGE.encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[200, 404])
def web_page(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, list[str]]]:
    """A tiny web server answering every GET with an HTML page and `status`; yields (url, status, paths asked)."""
    asked: list[str] = []
    status = request.param

    class Handler(_Page):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.status = status
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", status, asked
    finally:
        server.shutdown()
        server.server_close()


async def test_a_refused_port_is_tried_twice_then_told_in_one_sentence(refused_url: str) -> None:
    sleeps = Sleeps()
    async with OpenMetadataClient(refused_url, "tok", sleep=sleeps) as om:
        with pytest.raises(OMUnavailable) as caught:
            await om.server_version()
        assert om.stats.requests == 2 and om.stats.retries == 1  # one quick retry, not six attempts
    assert sleeps.delays == [0.3]
    assert str(caught.value) == (
        f"cannot reach OpenMetadata at {refused_url} (connection refused): "
        "is the server running and OPENMETADATA_URL right?"
    )


async def test_an_unknown_host_is_named_as_such() -> None:
    fake = FakeOM().on(VERSION, httpx.ConnectError("[Errno -2] Name or service not known"))
    async with om_client(fake, base_url="http://om.nowhere.invalid:8585/api") as om:
        with pytest.raises(OMUnavailable) as caught:
            await om.server_version()
    assert len(fake.requests) == 2
    assert str(caught.value).startswith("cannot reach OpenMetadata at http://om.nowhere.invalid:8585 (unknown host)")


async def test_a_connect_failure_between_other_faults_keeps_their_retries() -> None:
    fake = FakeOM().on(
        VERSION,
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
        httpx.ReadTimeout("read timed out"),
        ok({"version": "1.13.6"}),
    )
    async with om_client(fake) as om:
        assert (await om.server_version()).version == "1.13.6"
    assert len(fake.requests) == 4


async def test_a_web_page_is_not_openmetadata_and_its_html_is_not_dumped(web_page: tuple[str, int, list[str]]) -> None:
    url, status, asked = web_page
    async with OpenMetadataClient(url, "tok", sleep=Sleeps()) as om:
        with pytest.raises(OMNotOpenMetadata) as caught:
            await om.check_version()
    text = str(caught.value)
    assert asked == ["/api/v1/system/version"]  # asked once: a page is not retried
    assert text.startswith(
        f"{url} does not look like OpenMetadata (it answered GET /api/v1/system/version with HTTP {status} text/html: "
        '"<!DOCTYPE html> <html><head><title>Welcome to nginx!'
    )
    assert text.endswith('…"): check OPENMETADATA_URL')
    quoted = text[text.index('"') : text.rindex('"') + 1]
    assert len(quoted) <= 103 and "\n" not in text  # at most 100 characters of the page, on one line
    assert text.count("hello world") <= 2


async def test_json_that_is_no_version_is_not_openmetadata_either() -> None:
    fake = FakeOM().on(VERSION, ok({"status": "healthy"}))
    async with om_client(fake) as om:
        with pytest.raises(OMNotOpenMetadata) as caught:
            await om.server_version()
    assert str(caught.value) == (
        "http://om.test:8585 does not look like OpenMetadata (its /api/v1/system/version answer has no version: "
        '"{\\"status\\": \\"healthy\\"}"): check OPENMETADATA_URL'
    )
