"""Serve the simulator with uvicorn: in a background thread (tests, demo) or blocking (the CLI)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from simulator.app import create_app
from simulator.catalog import Catalog


@dataclass
class ServerHandle:
    """A running uvicorn server: its base URL (`http://127.0.0.1:PORT`) and a `stop()`."""

    url: str
    port: int
    server: uvicorn.Server = field(repr=False)
    thread: threading.Thread = field(repr=False)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the server to exit, wait for its thread, and stop the catalog's webhook deliveries."""
        self.server.should_exit = True
        self.thread.join(timeout)
        catalog = getattr(getattr(self.server.config.app, "state", None), "catalog", None)
        if catalog is not None:
            catalog.subscriptions.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _config(app: Any, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
    )


def run_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 10.0) -> ServerHandle:
    """Start uvicorn for `app` in a daemon thread on an already bound socket; returns once it serves."""
    # IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on sockets whose proto says TCP (else Nagle adds 40 ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, host, bound_port, "warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"om-sim:{bound_port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the OpenMetadata simulator did not start")
        time.sleep(0.005)
    return ServerHandle(url=f"http://{host}:{bound_port}", port=bound_port, server=server, thread=thread)


def serve(
    catalog: Catalog, host: str = "127.0.0.1", port: int = 8585, token: str = "sim-token", version: str = "1.13.6"
) -> None:
    """Serve `catalog` as OpenMetadata `version` until interrupted (what `dnabot simulator` runs)."""
    app = create_app(catalog, token=token, version=version)
    uvicorn.Server(_config(app, host, port, "info")).run()
