"""The OpenMetadata webhook against real replicas: a change reaches Slack without waiting for a poll."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.replicas import ReplicaSet
from tests.e2e.test_replicas import STG_ORDERS, incident_cards, rename, settled
from tests.fakes.db import fresh_database

pytestmark = pytest.mark.postgres

WEBHOOK_SECRET = "e2e-webhook-secret"


@pytest.fixture
def quiet_cluster(om_demo, slack_api, tmp_path: Path) -> Iterator[ReplicaSet]:
    """Replicas that poll OpenMetadata only once an hour: anything faster came through the webhook."""
    with fresh_database("postgres") as url:
        env = {"DNABOT_SYNC_INTERVAL_SECONDS": "3600", "OPENMETADATA_WEBHOOK_SECRET": WEBHOOK_SECRET}
        replicas = ReplicaSet(url, om_demo, slack_api, tmp_path, extra_env=env)
        try:
            yield replicas
        finally:
            om_demo.catalog.subscriptions.close()
            replicas.stop()


def test_a_webhook_change_reaches_slack_between_polls(quiet_cluster, om_demo, slack_api):
    replicas = quiet_cluster.start(2)
    before = set(settled(quiet_cluster, slack_api, 1))  # the first (full) sync, at start-up
    runs = len(quiet_cluster.query("SELECT id FROM sync_runs"))
    om_demo.subscribe_webhook(replicas[1].url, WEBHOOK_SECRET)

    rename(om_demo, STG_ORDERS, "status", "order_state")
    cards = settled(quiet_cluster, slack_api, len(before) + 1)

    assert set(cards.values()) == {1}
    modes = [row.mode for row in quiet_cluster.query("SELECT mode FROM sync_runs ORDER BY id")]
    assert modes[runs:] == ["targeted"], modes  # no poll ran: the webhook did it
    assert quiet_cluster.query("SELECT count(*) AS n FROM sync_requests")[0].n == 0
    new = set(incident_cards(slack_api)) - before
    [root] = [r.root_fqn for r in quiet_cluster.query("SELECT root_fqn FROM incidents WHERE id = :i", i=min(new))]
    assert root == STG_ORDERS


def test_a_forged_webhook_is_refused_and_changes_nothing(quiet_cluster, om_demo, slack_api):
    [replica] = quiet_cluster.start(1)
    settled(quiet_cluster, slack_api, 1)
    body = b'{"id": "forged", "eventType": "entityUpdated", "entityType": "table", "entityFullyQualifiedName": "x"}'
    for signature in (None, "sha256=AAAA", "sha1=nope"):
        headers = {"content-type": "application/json"} | ({"X-OM-Signature": signature} if signature else {})
        answer = httpx.post(f"{replica.url}/openmetadata/webhook", content=body, headers=headers, timeout=5)
        assert answer.status_code == 401
    assert quiet_cluster.query("SELECT count(*) AS n FROM sync_requests")[0].n == 0
    assert quiet_cluster.query("SELECT count(*) AS n FROM inbound_events WHERE source = 'openmetadata'")[0].n == 0
