"""What the benchmarks share: a free port, the simulator in a child process, and a throwaway store."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_simulator(
    size: int, token: str, version: str | None = None, *, root: Path, timeout: float = 180
) -> tuple[subprocess.Popen[bytes], str]:
    """`dnabot simulator --catalog synthetic:N` (as OpenMetadata `version`) in a child process, once it answers."""
    port = free_port()
    args = ["--catalog", f"synthetic:{size}", "--port", str(port), "--token", token]
    args += ["--om-version", version] if version else []
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as err:  # read only when it fails to start
        cmd = [sys.executable, "-m", "bot.cli", "simulator", *args]
        proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/api/v1/system/version", timeout=1).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        proc.kill()
        proc.wait()
        err.seek(0)
        raise SystemExit(f"simulator did not start: {err.read().decode()[-1500:]}")


def fresh_db(postgres: bool, workdir: Path, prefix: str = "dnabot_bench") -> tuple[str, Callable[[], None]]:
    """(DATABASE_URL, drop): a SQLite file in `workdir`, or a new database on the local PostgreSQL."""
    if not postgres:
        return f"sqlite:///{workdir / 'bench.db'}", lambda: None
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"postgresql://postgres@127.0.0.1:5432/{name}", drop
