"""Loopback Tavily and BrightData APIs for the real npm MCP servers: a TLS Starlette app behind a CONNECT proxy.

`tavily-mcp` 0.2.22 and `@brightdata/mcp` 2.11.3 hard-code `https://api.tavily.com` and `https://api.brightdata.com`
(read in `node_modules/tavily-mcp/build/index.js` and `node_modules/@brightdata/mcp/server.js`); the only way in is
the environment: axios honours `HTTPS_PROXY` with a CONNECT tunnel, and Node trusts `NODE_EXTRA_CA_CERTS`. So the
fake is a proxy that tunnels CONNECTs for those two hosts to a uvicorn app serving a certificate for both names,
issued by a throwaway CA. The app answers what the real APIs answer (and refuses what they refuse: a wrong key,
a missing query, an unknown zone) and records every request, so tests see what the servers sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Host, Route, Router

from tests.fakes.mcp_servers import PAGES, serve_in_thread

TAVILY_HOST, BRIGHTDATA_HOST = "api.tavily.com", "api.brightdata.com"
TAVILY_KEY, BRIGHTDATA_TOKEN = "tvly-loopback-key-5e1f0c", "bd-loopback-token-91ab77"
ZONES = ("mcp_unlocker", "mcp_browser")
Hook = Callable[[dict[str, Any]], None]


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for both API hosts signed by it: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)

    def build(subject: str, issuer: x509.Name | None, key: Any, sign_key: Any, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
            builder = builder.add_extension(usage, critical=True)
        else:
            sans = [x509.DNSName(TAVILY_HOST), x509.DNSName(BRIGHTDATA_HOST)]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(sign_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("dnabot test CA", None, ca_key, ca_key, ca=True)
    leaf = build(TAVILY_HOST, ca_cert.subject, leaf_key, ca_key, ca=False)
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pkcs8 = serialization.PrivateFormat.PKCS8
    paths[2].write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()))
    return paths


@dataclass
class Upstreams:
    """The fake APIs' state: what they were asked, and how they behave next (set by tests)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    zones: list[str] = field(default_factory=lambda: list(ZONES))
    on_request: Hook | None = None  # called with each request record before it is answered
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, host: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """The recorded requests, optionally only those to one host and path."""
        with self.lock:
            return [r for r in self.requests if (host in (None, r["host"])) and (path in (None, r["path"]))]

    async def _record(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        entry = {
            "host": request.url.hostname,
            "method": request.method,
            "path": request.url.path,
            "body": body,
            "authorization": request.headers.get("authorization"),
            "user_agent": request.headers.get("user-agent"),
        }
        with self.lock:
            self.requests.append(entry)
        if self.on_request is not None:
            self.on_request(entry)
        return entry

    # ---------------------------------------------------------------------------------------------- Tavily

    async def tavily_search(self, request: Request) -> Response:
        entry = await self._record(request)
        body = entry["body"] or {}
        if entry["authorization"] != f"Bearer {TAVILY_KEY}" or body.get("api_key") != TAVILY_KEY:
            return JSONResponse({"detail": {"error": "Unauthorized: missing or invalid API key."}}, 401)
        query, max_results = body.get("query"), body.get("max_results", 5)
        if not isinstance(query, str) or not query.strip():
            return JSONResponse({"detail": {"error": "Query is missing."}}, 400)
        if not isinstance(max_results, int) or not 0 <= max_results <= 20:
            return JSONResponse({"detail": {"error": "max_results must be between 0 and 20."}}, 400)
        results = [{**page, "score": 0.9 - i / 10, "raw_content": None} for i, page in enumerate(PAGES)]
        answer = {"query": query, "answer": None, "images": [], "follow_up_questions": None}
        return JSONResponse({**answer, "results": results[:max_results], "response_time": 0.12})

    async def tavily_extract(self, request: Request) -> Response:
        entry = await self._record(request)
        body = entry["body"] or {}
        if entry["authorization"] != f"Bearer {TAVILY_KEY}":
            return JSONResponse({"detail": {"error": "Unauthorized: missing or invalid API key."}}, 401)
        urls = body.get("urls")
        if not isinstance(urls, list) or not urls:
            return JSONResponse({"detail": {"error": "urls is required."}}, 400)
        results = [{"url": url, "raw_content": f"# Release notes\n{PAGES[0]['content']}"} for url in urls]
        return JSONResponse({"results": results, "failed_results": [], "response_time": 0.1})

    # ------------------------------------------------------------------------------------------ BrightData

    def _bd_refused(self, entry: dict[str, Any]) -> Response | None:
        if entry["authorization"] != f"Bearer {BRIGHTDATA_TOKEN}":
            return PlainTextResponse("Unauthorized", 401)
        return None

    async def bd_active_zones(self, request: Request) -> Response:
        entry = await self._record(request)
        return self._bd_refused(entry) or JSONResponse([{"name": z, "type": "unblocker"} for z in self.zones])

    async def bd_create_zone(self, request: Request) -> Response:
        entry = await self._record(request)
        refused = self._bd_refused(entry)
        if refused is not None:
            return refused
        name = ((entry["body"] or {}).get("zone") or {}).get("name")
        if not isinstance(name, str):
            return PlainTextResponse("zone.name is required", 400)
        with self.lock:
            self.zones.append(name)
        return JSONResponse({"name": name})

    async def bd_request(self, request: Request) -> Response:
        entry = await self._record(request)
        refused = self._bd_refused(entry)
        if refused is not None:
            return refused
        body = entry["body"] or {}
        if body.get("zone") not in self.zones:
            return PlainTextResponse(f"zone '{body.get('zone')}' not found", 400)
        target = urlsplit(str(body.get("url") or ""))
        if not target.scheme.startswith("http"):
            return PlainTextResponse("url is required", 400)
        if target.netloc == "www.google.com" and body.get("data_format") == "parsed_light":
            query = parse_qs(target.query).get("q", [""])[0]
            organic = [
                {"link": p["url"], "title": p["title"], "description": p["content"], "rank": i + 1}
                for i, p in enumerate(PAGES)
            ]
            return PlainTextResponse(json.dumps({"general": {"query": query}, "organic": organic}))
        page = PAGES[0]
        markdown = f"# {page['title']}\n\n{page['content']}\n\nSee [the release notes]({page['url']}).\n"
        return PlainTextResponse(markdown)

    def app(self) -> Starlette:
        tavily = Router(
            routes=[
                Route("/search", self.tavily_search, methods=["POST"]),
                Route("/extract", self.tavily_extract, methods=["POST"]),
            ]
        )
        brightdata = Router(
            routes=[
                Route("/zone/get_active_zones", self.bd_active_zones, methods=["GET"]),
                Route("/zone", self.bd_create_zone, methods=["POST"]),
                Route("/request", self.bd_request, methods=["POST"]),
            ]
        )
        return Starlette(routes=[Host(TAVILY_HOST, tavily), Host(BRIGHTDATA_HOST, brightdata)])


class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1:0 tunnelling the two API hosts to `target_port` (others get 403).

    `blackhole = True` makes it accept connections and never answer: a network that drops packets.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.blackhole = False
        self.connects: list[str] = []
        self._sockets: list[socket.socket] = []
        self._stopped = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name=f"connect-proxy:{self.port}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            self.connects.append(f"{method} {target}")
            if self.blackhole:
                self._stopped.wait()
                return
            host = target.rpartition(":")[0]
            if method != "CONNECT" or host not in (TAVILY_HOST, BRIGHTDATA_HOST):
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets.append(upstream)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                upstream.sendall(rest)
            threading.Thread(target=_pipe, args=(upstream, conn), daemon=True).start()
            _pipe(conn, upstream)
        except OSError:
            return
        finally:
            if not self.blackhole:
                _close(conn)

    def stop(self) -> None:
        self._stopped.set()
        _close(self._listener)
        for sock in list(self._sockets):
            _close(sock)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@dataclass
class FakeAPIs:
    """What a test gets: the upstream state, the proxy, and the environment that points a server at them."""

    state: Upstreams
    proxy: ConnectProxy
    ca_file: Path

    def env(self) -> dict[str, str]:
        """Proxy and CA variables, as an operator would set them for the bot."""
        return {"HTTPS_PROXY": self.proxy.url, "NODE_EXTRA_CA_CERTS": str(self.ca_file)}


@pytest.fixture
def fake_apis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAPIs]:
    """Loopback Tavily and BrightData APIs behind a CONNECT proxy, with the CA that signed their certificate."""
    ca, cert, key = make_tls(tmp_path_factory.mktemp("fake-apis-tls"))
    state = Upstreams()
    port, stop = serve_in_thread(
        state.app(), "the fake Tavily/BrightData APIs", lifespan="off", ssl_certfile=str(cert), ssl_keyfile=str(key)
    )
    proxy = ConnectProxy(port)
    try:
        yield FakeAPIs(state, proxy, ca)
    finally:
        proxy.stop()
        stop()
