"""What the benchmarks share: a free port, and a throwaway store (a SQLite file, or a PostgreSQL database)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
