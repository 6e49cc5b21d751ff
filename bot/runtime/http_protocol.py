"""uvicorn's h11 protocol with a request read timeout, so idle and slow (slow-loris) clients are dropped."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# The client is still sending a request (or has not begun one) in these states; the timer runs meanwhile.
_READING = (h11.IDLE, h11.SEND_BODY)


class ReadTimeoutH11Protocol(H11Protocol):
    """Close a connection whose request (headers and body) is not complete within `read_timeout` seconds.

    uvicorn times out idle keep-alive connections only after a response; it never times out a new connection
    that sends nothing, nor a request that trickles in a byte at a time. The timer starts when the connection
    opens and again when the next request begins, and stops once the request has been read in full."""

    read_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._read_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_read_timer()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state not in _READING:
            self._disarm_read_timer()  # the request is in (or the connection is done with)

    def _arm_read_timer(self) -> None:
        self._disarm_read_timer()
        self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing() or self.conn.their_state not in _READING:
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info("closed the connection of %s: no complete request within %.0f s", client, self.read_timeout)
        self.transport.close()


def with_read_timeout(seconds: float) -> type[ReadTimeoutH11Protocol]:
    """The protocol class to pass as uvicorn's `http=`, with its read timeout set."""
    return type("ReadTimeoutH11Protocol", (ReadTimeoutH11Protocol,), {"read_timeout": float(seconds)})
