"""Database wiring: engines and sessions, Alembic upgrades and the cross-process sync lock."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text, update
from sqlalchemy.engine import URL, CursorResult, Result, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from storage.errors import DnaBotError

if TYPE_CHECKING:  # Alembic loads only when a migration runs: reading a store that is up to date never needs it
    from alembic.config import Config
from storage.persistence.models import SyncRun, json_serializer

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_LOCK_NAME = "dnabot-sync"
MIGRATE_LOCK_NAME = "dnabot-migrate"
MIGRATE_LOCK_TIMEOUT_SECONDS = 300.0
SQLITE_BUSY_TIMEOUT_MS = 10_000


class SyncAlreadyRunning(DnaBotError):
    """Another process (or thread) holds the sync lock."""

    def __init__(self, name: str = DEFAULT_LOCK_NAME) -> None:
        super().__init__(f"a sync is already running (lock {name!r} is held elsewhere)")
        self.name = name


class SchemaOutOfDate(DnaBotError):
    """The database schema is not at the head revision of the migrations."""

    def __init__(self, current: str | None, head: str | None, *, newer: bool = False) -> None:
        if newer:
            text = f"database schema revision {current} is newer than this DNA Bot (knows up to {head})"
        else:
            text = f"database schema is at revision {current or 'none'}, the code needs {head}: run `dnabot migrate`"
        super().__init__(text)
        self.current = current
        self.head = head
        self.newer = newer


def normalise_url(url: str | URL | None, *, default_sqlite_path: str | os.PathLike[str] = "dnabot.db") -> URL:
    """The URL to connect to: SQLite file by default, `postgresql://` pinned to the psycopg 3 driver."""
    if url is None:
        return make_url(f"sqlite:///{Path(default_sqlite_path).resolve()}")
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def make_engine(
    url: str | URL | None, *, default_sqlite_path: str | os.PathLike[str] = "dnabot.db", **kwargs: Any
) -> Engine:
    """Create an engine; SQLite gets foreign keys, WAL and a busy timeout on every connection."""
    parsed = normalise_url(url, default_sqlite_path=default_sqlite_path)
    kwargs.setdefault("json_serializer", json_serializer)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **kwargs)
    memory = _is_sqlite_memory(parsed)
    if memory:
        # One shared connection, or every session would see its own empty database.
        kwargs.setdefault("poolclass", StaticPool)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
    engine = create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A sessionmaker whose objects stay readable after commit (views are built from them)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """The rows an UPDATE or DELETE matched: `Session.execute` of such a statement returns a `CursorResult`, though
    its type says only `Result`."""
    return cast("CursorResult[*tuple[Any, ...]]", result).rowcount


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic Config pointing at the package's migrations, without any alembic.ini."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


@contextlib.contextmanager
def _engine_for(url_or_engine: str | URL | Engine) -> Iterator[Engine]:
    if isinstance(url_or_engine, Engine):
        yield url_or_engine
        return
    engine = make_engine(url_or_engine)
    try:
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for Alembic; on SQLite, foreign keys are off while batch mode copies tables."""
    if engine.url.get_backend_name() != "sqlite":
        with engine.begin() as connection:
            if engine.url.get_backend_name() == "postgresql":
                # Replicas starting together migrate one at a time; the lock ends with the transaction.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key("dnabot-migrate")})
            yield connection
        return
    # With foreign keys on, the DROP TABLE of a batch copy would fire ON DELETE actions on other tables.
    # The pragma is a no-op inside a transaction, so it is set before Alembic begins one.
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()  # ends SQLAlchemy's autobegun transaction; the driver opened none for a pragma
        try:
            with connection.begin():
                yield connection
                problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise RuntimeError(f"migration left dangling foreign keys: {problems[:5]}")
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """One migration at a time on a SQLite file: processes starting together wait for each other's upgrade
    (PostgreSQL takes an advisory lock inside the migration transaction instead)."""
    if engine.url.get_backend_name() != "sqlite" or _is_sqlite_memory(engine.url):
        yield
        return
    from filelock import FileLock  # only a migration needs it: not imported by every question's process
    from filelock import Timeout as FileLockTimeout

    path = lock_file_path(Path(engine.url.database or "").resolve(), MIGRATE_LOCK_NAME)
    try:
        with FileLock(path, timeout=MIGRATE_LOCK_TIMEOUT_SECONDS):
            yield
    except FileLockTimeout:
        raise DnaBotError(
            f"another `dnabot migrate` has held {path.name} for {MIGRATE_LOCK_TIMEOUT_SECONDS:.0f} s: try again later"
        ) from None


def migrate(url_or_engine: str | URL | Engine, revision: str = "head") -> None:
    """Upgrade the database to `revision` (head by default), one process at a time; a store already there is left
    alone (no lock, no Alembic run), and one INFO line says when a migration did run."""
    with _engine_for(url_or_engine) as engine:
        target = head_revision() if revision == "head" else revision
        if current_revision(engine) == target:
            return  # every sync calls this: the usual case costs one query
        from alembic import command
        from alembic.runtime.migration import MigrationContext

        with _migration_lock(engine), _migration_connection(engine) as connection:
            before = MigrationContext.configure(connection).get_current_revision()
            if before is not None and before not in _known_revisions():
                raise SchemaOutOfDate(before, head_revision(), newer=True)
            cfg = alembic_config(engine.url)
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
            after = MigrationContext.configure(connection).get_current_revision()
        if after != before:
            log.info("migrated the store from %s to %s", before or "an empty database", after)


def downgrade(url_or_engine: str | URL | Engine, revision: str = "base") -> None:
    """Downgrade the database to `revision` (everything dropped by default)."""
    from alembic import command

    with _engine_for(url_or_engine) as engine, _migration_lock(engine), _migration_connection(engine) as connection:
        cfg = alembic_config(engine.url)
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*(?:\"([^\"]*)\"|'([^']*)'|None)\s*$", re.M)


@functools.cache
def _script_revisions() -> dict[str, str | None]:
    """revision → down_revision of every migration script shipped with the code, read from the scripts' own
    `revision = "…"` / `down_revision = "…"` lines (a linear history; importing Alembic to read them costs a
    quarter of a second per command; tests/storage/test_migrations.py holds this equal to Alembic's own reading)."""
    found: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        values = {m[0]: m[1] or m[2] or None for m in _REVISION_LINE.findall(path.read_text(encoding="utf-8"))}
        if revision := values.get("revision"):
            found[revision] = values.get("down_revision")
    return found


@functools.cache
def head_revision() -> str | None:
    """The newest migration revision shipped with the code (read from the scripts once per process)."""
    revisions = _script_revisions()
    downs = {down for down in revisions.values() if down}
    heads = [rev for rev in revisions if rev not in downs]
    if len(heads) != 1:
        from alembic.script import ScriptDirectory  # branches: Alembic knows best

        return ScriptDirectory.from_config(alembic_config()).get_current_head()
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when it was never migrated), read from `alembic_version`."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        versions = [row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))]
    return versions[0] if len(versions) == 1 else None if not versions else ",".join(sorted(versions))


def ensure_migrated(engine: Engine) -> None:
    """Raise `SchemaOutOfDate` unless the database is at the head revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDate(current, head, newer=current is not None and current not in _known_revisions())


def _known_revisions() -> frozenset[str]:
    return frozenset(_script_revisions())


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `pg_try_advisory_lock` (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def sync_lock(engine: Engine, name: str = DEFAULT_LOCK_NAME) -> Iterator[None]:
    """Hold the named sync lock for the block, or raise `SyncAlreadyRunning` at once (never waits)."""
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        lock = _pg_advisory_lock(engine, name)
    elif backend == "sqlite" and _is_sqlite_memory(engine.url):
        lock = _process_lock(engine, name)
    elif backend == "sqlite":
        lock = _file_lock(Path(engine.url.database or ""), name)
    else:
        raise NotImplementedError(f"no sync lock for database backend {backend!r}")
    with lock:
        yield


@contextlib.contextmanager
def _pg_advisory_lock(engine: Engine, name: str) -> Iterator[None]:
    # A session-level advisory lock on a dedicated autocommit connection: no transaction stays open, and
    # the server releases the lock by itself if this process dies.
    key = lock_key(name)
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        if not connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            raise SyncAlreadyRunning(name)
        try:
            yield
        finally:
            try:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            except Exception:
                # A pooled connection must never keep the lock: drop it so the server frees the lock.
                connection.invalidate()
                raise
    finally:
        connection.close()


def lock_file_path(db_path: Path, name: str = DEFAULT_LOCK_NAME) -> Path:
    """The lock file beside a SQLite database (`<db>.sync.lock` for the default lock)."""
    suffix = "sync" if name == DEFAULT_LOCK_NAME else "".join(c if c.isalnum() else "-" for c in name)
    return db_path.with_name(f"{db_path.name}.{suffix}.lock")


@contextlib.contextmanager
def _file_lock(db_path: Path, name: str) -> Iterator[None]:
    # flock locks belong to the open file description, so two opens conflict even inside one process.
    path = lock_file_path(db_path.resolve(), name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SyncAlreadyRunning(name) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


DEAD_RUN_ERROR = "the process running this sync stopped before it finished (killed or crashed); detected at {at}"


def fail_dead_runs(session: Session, *, now: datetime) -> int:
    """Mark every `running` sync run failed, with the reason; call it only while holding the sync lock, when no
    live process can be running one (a run left `running` then belongs to a process that was killed or crashed)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware (UTC), got naive {now!r}")
    result = session.execute(
        update(SyncRun)
        .where(SyncRun.status == "running")
        .values(status="failed", finished_at=now, error=DEAD_RUN_ERROR.format(at=now.isoformat(timespec="seconds")))
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


def reap_dead_runs(engine: Engine) -> int | None:
    """At start-up: if no sync is running anywhere (the sync lock is free), fail the runs a dead process left
    `running`. Never waits: None when a sync holds the lock, else how many runs were marked failed."""
    try:
        with sync_lock(engine), session_factory(engine).begin() as session:
            return fail_dead_runs(session, now=datetime.now(UTC))
    except SyncAlreadyRunning:
        return None


_process_locks: dict[tuple[int, str], threading.Lock] = {}
_process_locks_guard = threading.Lock()


@contextlib.contextmanager
def _process_lock(engine: Engine, name: str) -> Iterator[None]:
    # An in-memory database lives in this process only, so a process-local lock is enough.
    with _process_locks_guard:
        lock = _process_locks.setdefault((id(engine), name), threading.Lock())
    if not lock.acquire(blocking=False):
        raise SyncAlreadyRunning(name)
    try:
        yield
    finally:
        lock.release()
