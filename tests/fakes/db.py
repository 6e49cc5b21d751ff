"""Database fixtures: a fresh, migrated SQLite file or PostgreSQL database per test."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from storage.persistence import db

# The server CI starts (see .ci/run); each test gets its own throwaway database on it.
POSTGRES_ADMIN_URL = os.environ.get("DNABOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DB_KINDS = ("sqlite", "postgres")

_postgres_problem: list[str] = []  # cached for the session: probe an absent server only once


def _postgres_required() -> bool:
    return os.environ.get("DNABOT_REQUIRE_POSTGRES") == "1"


def _admin_engine() -> Engine:
    return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


def require_postgres() -> None:
    """Skip the current test when PostgreSQL is unreachable, or fail if `DNABOT_REQUIRE_POSTGRES=1`."""
    if not _postgres_problem:
        admin = _admin_engine()
        try:
            with admin.connect() as conn:
                conn.execute(text("SELECT 1"))
            _postgres_problem.append("")
        except Exception as exc:  # any connection failure means "no server here"
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            _postgres_problem.append(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {reason}")
        finally:
            admin.dispose()
    problem = _postgres_problem[0]
    if problem:
        if _postgres_required():
            pytest.fail(f"{problem} (DNABOT_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(problem)


@contextlib.contextmanager
def _postgres_database() -> Iterator[str]:
    require_postgres()
    name = f"dnabot_test_{uuid.uuid4().hex[:16]}"
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield admin.url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                # FORCE: engines the test forgot to dispose must not keep the database alive.
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextlib.contextmanager
def _sqlite_database(directory: Path | None) -> Iterator[str]:
    if directory is not None:
        yield f"sqlite:///{directory / f'dnabot-{uuid.uuid4().hex[:8]}.db'}"
        return
    with tempfile.TemporaryDirectory(prefix="dnabot-test-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'dnabot.db'}"


@contextlib.contextmanager
def fresh_database(kind: str, *, migrated: bool = True, directory: Path | None = None) -> Iterator[str]:
    """A URL of a brand-new database (`kind` is "sqlite" or "postgres"), dropped afterwards."""
    if kind == "sqlite":
        manager = _sqlite_database(directory)
    elif kind == "postgres":
        manager = _postgres_database()
    else:
        raise ValueError(f"unknown database kind {kind!r}; expected one of {DB_KINDS}")
    with manager as url:
        if migrated:
            db.migrate(url)
        yield url


_KIND_PARAMS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=_KIND_PARAMS)
def db_kind(request: pytest.FixtureRequest) -> str:
    """The database engine under test: "sqlite" or "postgres"."""
    return request.param


@pytest.fixture
def db_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh database migrated to head, once on SQLite and once on PostgreSQL."""
    with fresh_database(db_kind, directory=tmp_path) as url:
        yield url


@pytest.fixture
def blank_db_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, never-migrated database (for migration tests)."""
    with fresh_database(db_kind, migrated=False, directory=tmp_path) as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on `db_url`, disposed after the test."""
    eng = db.make_engine(db_url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session on `engine` (objects stay readable after commit)."""
    with db.session_factory(engine)() as sess:
        yield sess
