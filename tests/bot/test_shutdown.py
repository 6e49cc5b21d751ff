"""SIGTERM stops `dnabot serve` cleanly: exit 0, the scheduler lease given up (another replica leads at once),
the delivery under way finished and the rest of its batch claimable again at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.core import services
from bot.runtime import serve as runtime
from bot.slack.app import build_client
from storage.persistence import outbox
from tests.e2e.replicas import DNABOT, ReplicaSet, wait_until
from tests.fakes.db import fresh_database

CHANNEL = "C0INCIDENTS"
# A long lease (TTL = half the interval = 30 s, heartbeat every 10 s): a takeover well inside it is the release.
SLOW_TICKS = {"DNABOT_SYNC_INTERVAL_SECONDS": "60"}


def lease_rows(query) -> list[sa.Row]:
    return query("SELECT holder, acquired_at, expires_at FROM leases WHERE name = 'scheduler'")


@pytest.fixture
def cluster(om_demo, slack_api, tmp_path: Path) -> Iterator[ReplicaSet]:
    with fresh_database("postgres") as url:
        replicas = ReplicaSet(url, om_demo, slack_api, tmp_path, extra_env=SLOW_TICKS)
        try:
            yield replicas
        finally:
            replicas.stop()


@pytest.mark.postgres
def test_sigterm_releases_the_lease_and_the_other_replica_leads_before_it_would_have_run_out(cluster):
    cluster.start(2)
    [first] = wait_until(lambda: lease_rows(cluster.query), 30, "a leader")
    leader = cluster.by_name(first.holder)
    other = next(r for r in cluster.replicas if r is not leader)
    assert leader.process is not None

    leader.process.send_signal(signal.SIGTERM)
    assert leader.process.wait(timeout=30) == 0, leader.log()
    assert "released the scheduler lease" in leader.log()
    assert first.holder not in {row.holder for row in lease_rows(cluster.query)}

    [taken] = wait_until(
        lambda: [row for row in lease_rows(cluster.query) if row.holder == other.name], 30, "the other replica leading"
    )
    assert taken.acquired_at < first.expires_at  # it did not wait for the old lease to run out
    assert other.healthy()


def test_sigterm_in_socket_mode_exits_0_and_gives_the_lease_up(bot_env, om_demo, slack_api, slack_socket, tmp_path):
    settings = bot_env(SLACK_APP_TOKEN=slack_api.app_token, DNABOT_CHANNEL=CHANNEL, **SLOW_TICKS)
    env = dict(os.environ) | {"PYTHONUNBUFFERED": "1", "DNABOT_REPLICA_ID": "socket-replica"}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(DNABOT), "serve", "--socket"], env=env, stdout=log, stderr=subprocess.STDOUT)
    engine = services.engine_for(settings)

    def leases() -> list[str]:
        with engine.connect() as conn:
            return [r.holder for r in conn.execute(sa.text("SELECT holder FROM leases WHERE name = 'scheduler'"))]

    try:
        wait_until(lambda: slack_socket.connects >= 1 and leases() == ["socket-replica"], 60, "connected and leading")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert leases() == []
    assert "SIGTERM: shutting down" in log_path.read_text(errors="replace")


def test_stopping_finishes_the_post_under_way_and_hands_the_rest_back_at_once(bot_env, om_demo, slack_api):
    settings = bot_env(DNABOT_CHANNEL=CHANNEL)
    asyncio.run(services.sync(settings))  # the open test incident: a card and its thread replies owed to Slack
    engine = services.engine_for(settings)
    notifier = runtime.notifier_for(settings, build_client(settings))
    slack_api.stall("chat.postMessage", 2)  # the card is posted, its answer takes a while
    drain = threading.Thread(target=notifier.publish, args=(engine,))
    drain.start()
    slack_api.wait_for(lambda: slack_api.calls("chat.postMessage"), 10)

    assert notifier.stop(engine, timeout=10)  # SIGTERM arrives while the card is in flight
    drain.join(timeout=10)
    assert len(slack_api.parents(CHANNEL)) == 1
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT kind, status, claimed_by, attempts FROM outbox ORDER BY id")).all()
    assert [(r.kind, r.status) for r in rows[:1]] == [("card", "delivered")]
    left = [r for r in rows if r.status == "pending"]
    assert left and all(r.claimed_by is None and r.attempts == 0 for r in left), rows
    taken = outbox.claim(engine, "another-replica/1", now=datetime.now(UTC), lease_seconds=30)
    assert taken and not any(row.retried for row in taken)  # claimable now, and never tried: no look-before-post
    assert notifier.publish(engine).posted == []  # a stopped drainer takes nothing more
