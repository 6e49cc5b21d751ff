"""A loopback Socket Mode server: says hello, pushes Slack envelopes to the connected app and records its acks."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

# Slack lets the app answer in the ack for these; events are acked empty.
_ACCEPTS_PAYLOAD = {"events_api": False, "slash_commands": True, "interactive": True}


def envelope_for(body: str, content_type: str) -> tuple[str, dict[str, Any]]:
    """The Socket Mode `(type, payload)` for an HTTP-mode body (as built by `tests.fakes.slack_signing`)."""
    if "json" in content_type:
        return "events_api", json.loads(body)
    form = dict(parse_qsl(body, keep_blank_values=True))
    if "payload" in form:
        return "interactive", json.loads(form["payload"])
    return "slash_commands", form


class SocketModeServer:
    """WebSocket server on 127.0.0.1:<port 0>; `url` is what `apps.connections.open` hands out."""

    def __init__(self, app_id: str = "A1") -> None:
        self.app_id = app_id
        self.cond = threading.Condition()
        self.connections: list[ServerConnection] = []
        self.connects = 0
        self.acks: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._server: Server = serve(self._handle, "127.0.0.1", 0, compression=None, ping_interval=None)
        self.port: int = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"slack-socket:{self.port}", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The `wss`-like URL (plain `ws://` on loopback) the client connects to."""
        return f"ws://127.0.0.1:{self.port}/link/?ticket={uuid.uuid4().hex}&app_id={self.app_id}"

    def _handle(self, conn: ServerConnection) -> None:
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "fake-socket", "approximate_connection_time": 3600},
            "connection_info": {"app_id": self.app_id},
        }
        conn.send(json.dumps(hello))
        with self.cond:
            self.connections.append(conn)
            self.connects += 1
            self.cond.notify_all()
        try:
            for raw in conn:
                message = json.loads(raw)
                with self.cond:
                    self.received.append(message)
                    if "envelope_id" in message:
                        self.acks.append(message)
                    self.cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self.cond:
                self.connections.remove(conn)
                self.cond.notify_all()

    def wait_connected(self, timeout: float = 5.0) -> ServerConnection:
        """The newest open connection, waiting for one (after the hello was sent) up to `timeout`."""
        self._wait(lambda: bool(self.connections), timeout, "no Socket Mode client connected")
        with self.cond:
            return self.connections[-1]

    def send(
        self,
        type_: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 5.0,
    ) -> str:
        """Push one envelope (`events_api`, `slash_commands` or `interactive`) and return its `envelope_id`."""
        envelope_id = f"env-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        accepts = _ACCEPTS_PAYLOAD.get(type_, False) if accepts_response_payload is None else accepts_response_payload
        envelope = {
            "envelope_id": envelope_id,
            "type": type_,
            "payload": payload,
            "accepts_response_payload": accepts,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        self.wait_connected(timeout).send(json.dumps(envelope))
        with self.cond:
            self.sent.append(envelope)
        return envelope_id

    def send_request(self, body: str, content_type: str, **kwargs: Any) -> str:
        """Push what HTTP mode would have POSTed (`body, content_type` from a slack_signing builder)."""
        type_, payload = envelope_for(body, content_type)
        return self.send(type_, payload, **kwargs)

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """The client's ack for `envelope_id` (`{"envelope_id", "payload"?}`), waiting up to `timeout`."""
        self._wait(
            lambda: any(a["envelope_id"] == envelope_id for a in self.acks), timeout, f"no ack for {envelope_id}"
        )
        with self.cond:
            return next(a for a in self.acks if a["envelope_id"] == envelope_id)

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, as Slack does every few hours."""
        self.wait_connected().send(json.dumps({"type": "disconnect", "reason": reason}))

    def _wait(self, ready: Any, timeout: float, failure: str) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(failure)
                self.cond.wait(remaining)

    def drop(self) -> None:
        """Close every open connection from the server side.

        A client's `close()` waits out its blocked `recv` (3 s) unless the peer hung up first; `hang_up(client)`
        does that safely.
        """
        with self.cond:
            open_connections = list(self.connections)
        for conn in open_connections:
            conn.close()

    def hang_up(self, client: Any, timeout: float = 5.0) -> None:
        """Drop the connection of a builtin `SocketModeClient` (or `SocketModeHandler.client`) and wait until it
        notices, so its `close()` is then quick and race-free; auto-reconnect is switched off first."""
        client.auto_reconnect_enabled = False
        self.drop()
        deadline = time.monotonic() + timeout
        while client.is_connected():  # the client's own state, not ours: nothing to wait on but a short poll
            if time.monotonic() > deadline:
                raise TimeoutError("the Socket Mode client did not notice the hang-up")
            time.sleep(0.01)

    def stop(self) -> None:
        """Close every connection and the listening socket (idempotent)."""
        self.drop()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
