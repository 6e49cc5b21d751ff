"""Alembic migrations on SQLite and PostgreSQL: head equals the models, and downgrade undoes everything."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from storage.persistence import db
from storage.persistence.models import Base, Entity, LineageEdge, Snapshot, SyncRun

T = datetime(2026, 3, 1, tzinfo=UTC)
TABLES = {"sync_runs", "entities", "snapshots", "lineage_edges", "changes"}


def schema_diffs(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, Base.metadata))


def table_names(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def test_head_is_exactly_the_models(blank_db_url: str) -> None:
    engine = db.make_engine(blank_db_url)
    try:
        assert db.current_revision(engine) is None
        db.migrate(engine)
        assert db.current_revision(engine) == db.head_revision() == "0005"
        assert schema_diffs(engine) == []
        db.ensure_migrated(engine)
    finally:
        engine.dispose()


def test_the_comparison_would_notice_a_missing_piece(blank_db_url: str) -> None:
    engine = db.make_engine(blank_db_url)
    try:
        db.migrate(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP INDEX ix_changes_kind"))
        assert [diff[0] for diff in schema_diffs(engine)] == ["add_index"]  # type: ignore[index]
    finally:
        engine.dispose()


def test_the_snapshot_pointer_is_a_foreign_key_that_clears_itself(blank_db_url: str) -> None:
    engine = db.make_engine(blank_db_url)
    try:
        db.migrate(engine)
        with engine.connect() as conn:
            fks = sa.inspect(conn).get_foreign_keys("entities")
        assert [(fk["name"], fk["referred_table"], fk["options"].get("ondelete")) for fk in fks] == [
            ("fk_entities_current_snapshot_id_snapshots", "snapshots", "SET NULL")
        ]
        with db.session_factory(engine)() as session:
            run = SyncRun(started_at=T, status="succeeded")
            entity = Entity(fqn="s.d.orders", entity_type="table", name="orders", first_seen=T, last_seen=T)
            session.add_all([run, entity])
            session.flush()
            snap = Snapshot(entity_id=entity.id, sync_run_id=run.id, taken_at=T, fingerprint="f", genes={})
            session.add(snap)
            session.flush()
            entity.current_snapshot_id = snap.id
            session.commit()
            session.delete(snap)
            session.commit()
            session.refresh(entity)
            assert entity.current_snapshot_id is None
            entity.current_snapshot_id = 12345
            with pytest.raises(sa.exc.IntegrityError):
                session.commit()
    finally:
        engine.dispose()


def test_only_one_live_row_per_edge(blank_db_url: str) -> None:
    engine = db.make_engine(blank_db_url)
    try:
        db.migrate(engine)
        with db.session_factory(engine)() as session:
            run = SyncRun(started_at=T, status="succeeded")
            session.add(run)
            session.flush()

            def edge(removed: datetime | None = None) -> LineageEdge:
                return LineageEdge(
                    from_fqn="a.b.raw",
                    from_type="table",
                    to_fqn="a.b.mart",
                    to_type="table",
                    first_seen=T,
                    last_seen=T,
                    removed_at=removed,
                    first_run_id=run.id,
                )

            session.add_all([edge(removed=T), edge(removed=T), edge()])
            session.commit()  # removed rows may repeat, one live row is fine
            session.add(edge())
            with pytest.raises(sa.exc.IntegrityError):
                session.commit()
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_everything_and_upgrade_again_works(blank_db_url: str) -> None:
    engine = db.make_engine(blank_db_url)
    try:
        db.migrate(engine)
        assert table_names(engine) >= TABLES
        db.downgrade(engine, "base")
        assert table_names(engine) == {"alembic_version"}
        assert db.current_revision(engine) is None
        db.migrate(blank_db_url)  # by URL this time
        assert schema_diffs(engine) == []
    finally:
        engine.dispose()


def test_an_unmigrated_database_asks_for_dnabot_migrate(blank_db_url: str) -> None:
    engine = db.make_engine(blank_db_url)
    try:
        with pytest.raises(db.SchemaOutOfDate, match="run `dnabot migrate`") as caught:
            db.ensure_migrated(engine)
        assert caught.value.current is None and caught.value.head == "0005"
    finally:
        engine.dispose()


def test_migrating_twice_is_harmless(db_url: str) -> None:
    db.migrate(db_url)
    engine = db.make_engine(db_url)
    try:
        db.ensure_migrated(engine)
    finally:
        engine.dispose()


def test_a_database_from_a_newer_release_is_not_told_to_migrate(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(db.SchemaOutOfDate, match="newer than this DNA Bot") as caught:
            db.ensure_migrated(engine)
        assert caught.value.newer is True
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced_again_after_migrating_sqlite() -> None:
    engine = db.make_engine("sqlite://")  # one shared connection: the one the migration used
    db.migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def _dnabot_migrate(url: str) -> subprocess.Popen[bytes]:
    scrubbed = {k: v for k, v in os.environ.items() if not k.startswith(("DNABOT_", "OPENAI_", "SLACK_"))}
    env = scrubbed | {"DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    dnabot = Path(sys.executable).with_name("dnabot")
    return subprocess.Popen([str(dnabot), "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_several_dnabot_migrate_at_once_on_a_fresh_database_all_succeed(blank_db_url: str) -> None:
    """Replicas starting together each run `dnabot migrate`: one migrates, the others wait and find it at head."""
    processes = [_dnabot_migrate(blank_db_url) for _ in range(5)]
    outputs = [(p.wait(timeout=120), p.stdout.read().decode(errors="replace") if p.stdout else "") for p in processes]
    assert [code for code, _ in outputs] == [0] * len(processes), outputs
    assert all("revision 0005" in out for _, out in outputs), outputs
    engine = db.make_engine(blank_db_url)
    try:
        assert db.current_revision(engine) == db.head_revision()
        assert schema_diffs(engine) == []
    finally:
        engine.dispose()


def test_the_scripts_are_read_as_alembic_reads_them_and_the_revision_as_alembic_sees_it(db_url: str) -> None:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(db.alembic_config())
    assert db._script_revisions() == {rev.revision: rev.down_revision for rev in scripts.walk_revisions()}
    assert db.head_revision() == scripts.get_current_head()
    engine = db.make_engine(db_url)
    try:
        with engine.connect() as connection:
            assert db.current_revision(engine) == MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def test_a_question_to_an_up_to_date_store_never_imports_alembic(db_url: str) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from storage.persistence import db; e = db.make_engine(sys.argv[1]); db.ensure_migrated(e); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    out = subprocess.run([sys.executable, "-c", code, db_url], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
