"""Engines, sessions and the sync lock: only one sync at a time, whichever process or database it runs on."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.persistence import db
from tests.fakes.db import fresh_database

TRY_LOCK = """
import sys
from storage.persistence import db
engine = db.make_engine(sys.argv[1])
try:
    with db.sync_lock(engine):
        print("acquired")
except db.SyncAlreadyRunning:
    print("busy")
"""


def try_lock_in_another_process(url: str) -> str:
    done = subprocess.run([sys.executable, "-c", TRY_LOCK, url], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_no_url_means_a_sqlite_file_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert db.make_engine(None).url.database == str(tmp_path / "dnabot.db")
    other = db.make_engine(None, default_sqlite_path="state/bot.db")
    assert other.url.database == str(tmp_path / "state" / "bot.db")


def test_plain_postgresql_urls_use_psycopg_3() -> None:
    for url in ("postgresql://u:p@db.example:5432/dna", "postgres://u:p@db.example:5432/dna"):
        engine = db.make_engine(url)
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.url.password == "p" and engine.url.database == "dna"
    explicit = db.make_engine("postgresql+psycopg://u@h/dna")
    assert explicit.url.drivername == "postgresql+psycopg"


def test_sqlite_connections_enforce_foreign_keys_and_use_wal(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    finally:
        engine.dispose()


def test_an_in_memory_database_is_shared_by_its_sessions() -> None:
    engine = db.make_engine("sqlite://")
    db.migrate(engine)
    db.ensure_migrated(engine)
    with db.session_factory(engine)() as session:
        assert session.execute(sa.text("SELECT count(*) FROM entities")).scalar() == 0


def test_a_second_holder_is_refused_until_the_first_releases(db_url: str) -> None:
    first, second = db.make_engine(db_url), db.make_engine(db_url)
    try:
        with db.sync_lock(first):
            with pytest.raises(db.SyncAlreadyRunning, match="already running"), db.sync_lock(second):
                pytest.fail("two syncs held the lock at once")
            with db.sync_lock(second, name="another-job"):
                pass  # other names are other locks
        with db.sync_lock(second):
            pass
    finally:
        first.dispose()
        second.dispose()


def test_the_lock_is_released_when_the_sync_fails(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        with pytest.raises(RuntimeError), db.sync_lock(engine):
            raise RuntimeError("sync crashed")
        with db.sync_lock(engine):
            pass
    finally:
        engine.dispose()


def test_another_process_sees_the_lock(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        with db.sync_lock(engine):
            assert try_lock_in_another_process(db_url) == "busy"
        assert try_lock_in_another_process(db_url) == "acquired"
    finally:
        engine.dispose()


def test_two_threads_cannot_both_sync_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dna.db'}"
    engine = db.make_engine(url)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.sync_lock(engine):
            holding.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(timeout=30)
        assert (tmp_path / "dna.db.sync.lock").exists()
        with pytest.raises(db.SyncAlreadyRunning), db.sync_lock(engine):
            pass
    finally:
        release.set()
        holder.join(timeout=30)
    with db.sync_lock(engine):
        pass


def test_an_in_memory_database_uses_a_process_lock() -> None:
    engine, unrelated = db.make_engine("sqlite://"), db.make_engine("sqlite://")
    with db.sync_lock(engine):
        with pytest.raises(db.SyncAlreadyRunning), db.sync_lock(engine):
            pass
        with db.sync_lock(unrelated):
            pass  # another in-memory database is another lock
    with db.sync_lock(engine):
        pass


@pytest.mark.postgres
def test_postgres_keeps_no_advisory_lock_after_release() -> None:
    count = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with fresh_database("postgres", migrated=False) as url:
        engine = db.make_engine(url)
        try:
            with engine.connect() as watcher:
                with db.sync_lock(engine):
                    assert watcher.execute(count).scalar() == 1
                assert watcher.execute(count).scalar() == 0
        finally:
            engine.dispose()


def test_lock_keys_are_stable_signed_64_bit() -> None:
    assert db.lock_key("dnabot-sync") == db.lock_key("dnabot-sync")
    assert db.lock_key("dnabot-sync") != db.lock_key("other")
    assert -(2**63) <= db.lock_key("dnabot-sync") < 2**63
