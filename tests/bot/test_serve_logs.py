"""What `dnabot serve` writes at INFO: one line per tick with its figures, no scheduler chatter, and Alembic only
when the store is really migrated."""

from __future__ import annotations

import io
import logging
import re

import pytest
import sqlalchemy as sa

from bot.core import services
from bot.core.logs import configure_logging
from bot.core.slack_client import build_client
from bot.runtime import serve as runtime
from storage.persistence import db
from tests.bot.test_cli import rename_status
from tests.bot.test_serve_preflight import logging_restored  # noqa: F401 - autouse: configure_logging is undone
from tests.e2e.replicas import wait_until

CHANNEL = "C0INCIDENTS"
CHATTY = ("apscheduler", "alembic")
TICK = re.compile(
    r"^tick: sync run (\d+) \((full|incremental)\) (\d+) entities, (\d+) changes, incidents (\d+) opened, (\d+) "
    r"updated, (\d+) resolved in \d+\.\d\d s; Slack (\d+) posted, (\d+) updated, (\d+) replies; \d+\.\d\d s$"
)


def chatter(records: list[logging.LogRecord]) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in records if r.name.startswith(CHATTY) and r.levelno < logging.WARNING]


def test_scheduled_ticks_log_one_line_each_with_their_figures(bot_env, om_demo, slack_api, caplog):
    settings = bot_env(DNABOT_CHANNEL=CHANNEL, DNABOT_SYNC_INTERVAL_SECONDS="1", DNABOT_OUTBOX_POLL_SECONDS="0.2")
    out = io.StringIO()
    configure_logging(settings, stream=out)  # INFO, as `dnabot serve` runs by default
    caplog.set_level(logging.INFO)
    services.migrate(settings)
    engine = services.engine_for(settings)

    def runs() -> list[int]:
        with engine.connect() as conn:
            return list(conn.scalars(sa.text("SELECT id FROM sync_runs ORDER BY id")))

    notifier = runtime.notifier_for(settings, build_client(settings))
    scheduler = runtime.start_scheduler(settings, notifier)
    try:
        wait_until(lambda: len(runs()) >= 2, 60, "two ticks")
        rename_status(om_demo)  # the next tick finds a breaking change and opens an incident
        wait_until(lambda: len(runs()) >= 4, 60, "two more ticks")
    finally:
        scheduler.shutdown(wait=True)  # the tick under way finishes, and logs its line

    assert chatter(caplog.records) == []
    ticks = [
        r.getMessage() for r in caplog.records if r.name == "bot.runtime.serve" and r.getMessage().startswith("tick:")
    ]
    assert all(TICK.match(t) for t in ticks), ticks
    assert [int(TICK.match(t).group(1)) for t in ticks] == runs()  # exactly one line per tick, for its own run
    figures = [TICK.match(t).groups() for t in ticks]
    assert figures[0][1] == "full" and int(figures[0][2]) > 20  # the first tick read the whole demo catalog
    assert any(int(f[3]) >= 1 and int(f[4]) >= 1 and int(f[7]) >= 1 for f in figures)  # the rename: a new card
    text = out.getvalue()  # what the operator reads
    assert "Running job" not in text and "executed successfully" not in text and "Context impl" not in text
    assert text.count(" INFO bot.runtime.serve: tick: ") == len(ticks)


def test_alembic_speaks_only_when_the_store_is_migrated(tmp_path, caplog, bot_env):
    configure_logging(bot_env(), stream=io.StringIO())
    caplog.set_level(logging.INFO)
    url = f"sqlite:///{tmp_path / 'fresh.db'}"

    db.migrate(url, "0003")
    db.migrate(url)
    assert chatter(caplog.records) == []
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("storage.persistence.db", "migrated the store from an empty database to 0003"),
        ("storage.persistence.db", f"migrated the store from 0003 to {db.head_revision()}"),
    ]

    caplog.clear()
    for _ in range(3):  # what every tick does: the store is already current
        db.migrate(url)
    assert caplog.records == []


def test_a_store_newer_than_the_code_is_one_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    db.migrate(url)
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    try:
        with pytest.raises(db.SchemaOutOfDate) as caught:
            db.migrate(engine)
    finally:
        engine.dispose()
    assert (
        str(caught.value)
        == f"database schema revision 9999 is newer than this DNA Bot (knows up to {db.head_revision()})"
    )
