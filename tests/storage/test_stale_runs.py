"""A sync killed with `kill -9` leaves its run `running`: the next sync (or `dnabot serve` start) marks it failed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.openmetadata.client import OpenMetadataClient
from storage.persistence import db, store
from storage.persistence.db import make_engine, session_factory
from storage.sync.run import SyncOptions, SyncResult, run_sync
from tests.fakes.omserver import DEFAULT_VERSION

DNABOT = Path(sys.executable).with_name("dnabot")
REASON = "the process running this sync stopped before it finished (killed or crashed); detected at "


@pytest.fixture
def om_version() -> str:
    """One OpenMetadata release is enough here: the story is about our process, not the server."""
    return DEFAULT_VERSION


def runs(db_url: str) -> list[store.RunView]:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return store.last_runs(session, 20)
    finally:
        engine.dispose()


def sync(db_url: str, om) -> SyncResult:
    engine = make_engine(db_url)

    async def go() -> SyncResult:
        async with OpenMetadataClient(om.url, om.token, page_size=7, max_retries=1, backoff=0.01) as client:
            return await run_sync(engine, client, SyncOptions())

    try:
        return asyncio.run(go())
    finally:
        engine.dispose()


def kill9_mid_sync(db_url: str, om) -> int:
    """Start `dnabot sync`, wait until its run is recorded as running, and kill the process with SIGKILL."""
    om.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/tables", "delay_seconds": 3, "times": 1})
    scrubbed = {k: v for k, v in os.environ.items() if not k.startswith(("DNABOT_", "OPENAI_", "SLACK_"))}
    env = scrubbed | {"DATABASE_URL": db_url, "OPENMETADATA_URL": om.url, "OPENMETADATA_TOKEN": om.token}
    process = subprocess.Popen([str(DNABOT), "sync"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not [r for r in runs(db_url) if r.status == "running"]:
            assert process.poll() is None, "the sync ended before it could be killed"
            assert time.monotonic() < deadline, "no running sync within 60 s"
            time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    [killed] = [r for r in runs(db_url) if r.status == "running"]
    return killed.id


def test_the_next_sync_marks_a_killed_run_failed_with_the_reason(db_url, om_sample):
    killed = kill9_mid_sync(db_url, om_sample)
    assert [r.status for r in runs(db_url) if r.id == killed] == ["running"]  # what `dnabot runs` showed for ever

    result = sync(db_url, om_sample)
    assert result.ok
    by_id = {r.id: r for r in runs(db_url)}
    assert by_id[killed].status == "failed"
    assert by_id[killed].error is not None and by_id[killed].error.startswith(REASON)
    assert by_id[killed].finished_at is not None
    assert by_id[result.run_id].status == "succeeded"
    assert [r.id for r in runs(db_url) if r.status == "running"] == []


def test_at_start_up_dead_runs_are_failed_but_a_live_sync_is_left_alone(db_url, om_sample):
    killed = kill9_mid_sync(db_url, om_sample)
    engine = make_engine(db_url)
    try:
        with db.sync_lock(engine):  # another replica is syncing right now: its run is alive, nothing is touched
            assert db.reap_dead_runs(engine) is None
        assert [r.status for r in runs(db_url) if r.id == killed] == ["running"]

        assert db.reap_dead_runs(engine) == 1  # the lock is free: nobody can be running that sync
        [run] = [r for r in runs(db_url) if r.id == killed]
        assert run.status == "failed" and run.error is not None and run.error.startswith(REASON)
        assert db.reap_dead_runs(engine) == 0
    finally:
        engine.dispose()
