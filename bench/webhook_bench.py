"""Webhook detection-to-post benchmark: OpenMetadata change → signed webhook → targeted re-sync → incident
pipeline → outbox → incident card in Slack, against one real `dnabot serve` replica (HTTP mode).

The OpenMetadata simulator (demo warehouse) and the loopback Slack Web API run in this process; the replica
polls only once an hour, so every card measured came through the webhook. Each round renames a column of a
table that has downstream dependants (a breaking change: a new incident) and measures the time from the
mutation request to the card's arrival at Slack, and to the incident being stored. Target: ≤ 2 s on loopback.

Usage: `python bench/webhook_bench.py [--rounds 10] [--postgres]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator import Catalog, run_in_thread  # noqa: E402
from storage.openmetadata.fqn import url_segment  # noqa: E402
from tests.e2e.replicas import ReplicaSet, wait_until  # noqa: E402
from tests.e2e.test_replicas import incident_cards  # noqa: E402
from tests.e2e.test_webhook_replicas import WEBHOOK_SECRET  # noqa: E402
from tests.fakes.omserver import start_server  # noqa: E402
from tests.fakes.slack import SlackAPI  # noqa: E402
from tests.fakes.slack_api import create_app  # noqa: E402
from tests.fakes.slack_state import SlackState  # noqa: E402

# (table, column) pairs whose rename breaks something downstream in the demo warehouse
TARGETS = [
    ("warehouse.shop.staging.stg_orders", "status"),
    ("warehouse.shop.staging.stg_orders", "amount_usd"),
    ("warehouse.shop.staging.stg_customers", "email"),
    ("warehouse.shop.raw.orders", "amount"),
    ("warehouse.shop.raw.customers", "country"),
]


def cards(slack: SlackAPI) -> set[int]:
    return set(incident_cards(slack))


@contextlib.contextmanager
def database(postgres: bool):
    if postgres:
        from tests.fakes.db import fresh_database

        with fresh_database("postgres") as url:
            yield url
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=len(TARGETS))
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL at 127.0.0.1:5432 instead of SQLite")
    args = parser.parse_args()
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"

    state = SlackState()
    slack_handle = run_in_thread(create_app(state))
    state.base_url = slack_handle.url
    slack = SlackAPI(state=state, handle=slack_handle)
    om = start_server(Catalog.demo())
    latencies: list[float] = []
    with database(args.postgres) as url, tempfile.TemporaryDirectory() as logs:
        env = {"DNABOT_SYNC_INTERVAL_SECONDS": "3600", "OPENMETADATA_WEBHOOK_SECRET": WEBHOOK_SECRET}
        cluster = ReplicaSet(url, om, slack, Path(logs), extra_env=env)
        try:
            [replica] = cluster.start(1)
            wait_until(lambda: cards(slack), 60, "the first sync's card")
            wait_until(lambda: not cluster.query("SELECT id FROM outbox WHERE status = 'pending'"), 60, "outbox")
            om.subscribe_webhook(replica.url, WEBHOOK_SECRET)
            for n in range(args.rounds):
                table, column = TARGETS[n % len(TARGETS)]
                before = cards(slack)
                started = time.perf_counter()
                path = f"/admin/tables/{url_segment(table)}/columns/{column}/rename"
                om.admin("POST", path, {"newName": f"{column}_v{n}"})
                wait_until(lambda before=before: cards(slack) - before, 30, f"round {n}: the card", every=0.005)
                latencies.append(time.perf_counter() - started)
                print(f"round {n + 1}: {table}.{column} renamed → card posted in {latencies[-1] * 1000:.0f} ms")
                time.sleep(0.3)  # let the round's detail replies go out before the next change
        finally:
            with contextlib.suppress(Exception):
                om.catalog.subscriptions.close()
            cluster.stop()
            om.close()
            slack_handle.stop()
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"\nwebhook detection → card posted ({store}, {len(latencies)} rounds): "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, p90 {percentile(latencies, 0.9) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms (target ≤ 2000 ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
