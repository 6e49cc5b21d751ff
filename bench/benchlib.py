"""What the benchmarks share: a throwaway store (a SQLite file, or a PostgreSQL database dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


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
