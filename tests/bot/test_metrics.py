"""What a Prometheus scrape shows: syncs, incidents, the outbox, the leader, Slack API failures, a dead database."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_bolt import App, BoltRequest
from slack_sdk.errors import SlackApiError

from bot.core import metrics, services
from bot.core.settings import Settings
from storage.openmetadata.fqn import url_segment
from storage.persistence import db, outbox
from storage.persistence.coordination import SCHEDULER_LEASE, try_lease
from storage.sync.run import SyncOptions, SyncResult, run_sync
from tests.fakes.slack_signing import signed_headers, slash_command

SIGNING_SECRET = "metrics-signing-secret"
STG_ORDERS = "warehouse.shop.staging.stg_orders"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(settings: Settings) -> Samples:
    """Every sample of one scrape, parsed the way Prometheus parses it."""
    body, content_type = metrics.render(settings)
    assert content_type.startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return (value(after, name, **labels) or 0.0) - (value(before, name, **labels) or 0.0)


def sync_once(settings: Settings, *, incidents: bool = True) -> SyncResult:
    """One real sync against the simulator (and the incident pipeline), counted the way the bot counts it."""

    async def run() -> SyncResult:
        engine = services.engine_for(settings)
        db.migrate(engine)
        try:
            async with services.client_for(settings) as client:
                result = await run_sync(engine, client, SyncOptions())
            if result.ok and incidents:
                await services.process_incidents(settings, engine, result.run_id)
            return result
        finally:
            engine.dispose()

    result = asyncio.run(run())
    metrics.observe_sync(result)
    return result


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_sync_and_the_incident_it_opens_show_in_the_scrape(bot_env, om_demo, db_url) -> None:
    settings = bot_env(DATABASE_URL=db_url, DNABOT_REPLICA_ID="replica-a")
    before = scrape(settings)
    assert value(before, "dnabot_store_up") == 1
    assert value(before, "dnabot_last_sync_success") is None  # no sync yet: no made-up zero
    assert all(value(before, "dnabot_open_incidents", severity=s) == 0 for s in ("SEV1", "SEV2", "SEV3", "SEV4"))

    first = sync_once(settings)
    om_demo.admin("POST", f"/admin/tables/{url_segment(STG_ORDERS)}/columns/status/rename", {"newName": "order_state"})
    second = sync_once(settings)
    after = scrape(settings)

    assert first.ok and second.ok
    assert moved(before, after, "dnabot_sync_runs_total", mode="full", result="succeeded") == 1
    assert moved(before, after, "dnabot_sync_runs_total", mode=second.mode, result="succeeded") >= 1
    assert moved(before, after, "dnabot_sync_duration_seconds_count") == 2
    assert moved(before, after, "dnabot_sync_duration_seconds_sum") == pytest.approx(
        first.duration_seconds + second.duration_seconds, abs=1e-6
    )
    opened = Counter(i.severity for i in services.incidents_list(settings, "open"))
    assert second.incidents is None and opened  # the rename opened one (the first sync took over the demo's)
    for severity in ("SEV1", "SEV2", "SEV3", "SEV4"):
        assert value(after, "dnabot_open_incidents", severity=severity) == opened.get(severity, 0)
    assert value(after, "dnabot_last_sync_success") == 1
    finished = datetime.fromisoformat(second.finished_at)
    assert value(after, "dnabot_last_sync_timestamp_seconds") == pytest.approx(finished.timestamp(), abs=0.01)
    assert value(after, "dnabot_last_sync_duration_seconds") == pytest.approx(second.duration_seconds, abs=0.05)
    assert 0 <= (value(after, "dnabot_last_good_sync_age_seconds") or -1) < 60
    assert value(after, "dnabot_leader", replica="replica-a") == 0


def test_a_failed_sync_is_counted_and_the_last_good_sync_keeps_ageing(bot_env, om_demo, tmp_path) -> None:
    settings = bot_env()
    good = sync_once(settings, incidents=False)
    down = bot_env(OPENMETADATA_URL=f"http://127.0.0.1:{closed_port()}", DNABOT_OM_MAX_RETRIES="0")
    before = scrape(down)

    failed = sync_once(down, incidents=False)
    after = scrape(down)

    assert good.ok and not failed.ok
    assert moved(before, after, "dnabot_sync_runs_total", mode=failed.mode, result="failed") == 1
    assert value(after, "dnabot_last_sync_success") == 0
    good_age = (datetime.now(UTC) - datetime.fromisoformat(good.finished_at)).total_seconds()
    assert value(after, "dnabot_last_good_sync_age_seconds") == pytest.approx(good_age, abs=5)


def test_outbox_depth_age_dead_letters_and_the_leader_are_read_at_each_scrape(bot_env, db_url) -> None:
    settings = bot_env(DATABASE_URL=db_url, DNABOT_REPLICA_ID="replica-a")
    engine = db.make_engine(db_url)
    now = datetime.now(UTC)
    try:
        with db.session_factory(engine).begin() as session:
            outbox.enqueue(session, "card:1", "card", lane="slack:incident:1", now=now - timedelta(minutes=2))
            outbox.enqueue(session, "reply:1", "reply", lane="slack:incident:1", now=now)
            outbox.enqueue(session, "card:2", "card", lane="slack:incident:2", now=now)
            try_lease(session, SCHEDULER_LEASE, "replica-a", ttl_seconds=60, now=now)
        samples = scrape(settings)
        other = scrape(bot_env(DATABASE_URL=db_url, DNABOT_REPLICA_ID="replica-b"))
    finally:
        engine.dispose()

    assert value(samples, "dnabot_outbox_pending", kind="card") == 2
    assert value(samples, "dnabot_outbox_pending", kind="reply") == 1
    assert value(samples, "dnabot_outbox_dead") == 0
    assert 119 <= (value(samples, "dnabot_outbox_oldest_pending_age_seconds") or 0) < 180
    assert value(samples, "dnabot_leader", replica="replica-a") == 1
    assert value(other, "dnabot_leader", replica="replica-b") == 0


def test_the_counting_client_counts_slack_calls_and_failures_and_passes_errors_through(slack_api) -> None:
    client = metrics.CountingWebClient(token=slack_api.token, base_url=slack_api.url)
    slack_api.fail("chat.postMessage", status=500, times=1)
    slack_api.fail("chat.update", error="message_not_found", times=1)
    settings = Settings(DATABASE_URL=f"postgresql://nobody@127.0.0.1:{closed_port()}/none")
    before = scrape(settings)

    with pytest.raises(SlackApiError) as server_error:
        client.chat_postMessage(channel="C1", text="first try")
    posted = client.chat_postMessage(channel="C1", text="second try")
    with pytest.raises(SlackApiError) as not_found:
        client.chat_update(channel="C1", ts="1.000001", text="nope")
    offline = metrics.CountingWebClient(token="xoxb-x", base_url=f"http://127.0.0.1:{closed_port()}/api/", timeout=2)
    with pytest.raises(OSError):
        offline.auth_test()
    after = scrape(settings)

    assert server_error.value.response.status_code == 500 and posted["ok"]
    assert not_found.value.response["error"] == "message_not_found"
    assert moved(before, after, "dnabot_slack_api_calls_total", method="chat.postMessage") == 2
    assert moved(before, after, "dnabot_slack_api_errors_total", method="chat.postMessage", error="fatal_error") == 1
    assert moved(before, after, "dnabot_slack_api_errors_total", method="chat.update", error="message_not_found") == 1
    assert moved(before, after, "dnabot_slack_api_errors_total", method="auth.test", error="connection") == 1
    assert [m["text"] for m in slack_api.state.messages["C1"]] == ["second try"]


def test_listener_calls_through_bolts_per_request_client_are_counted_too(slack_api) -> None:
    app = App(
        client=metrics.CountingWebClient(token=slack_api.token, base_url=slack_api.url),
        signing_secret=SIGNING_SECRET,
        process_before_response=True,  # the listener has finished when dispatch returns
    )
    app.use(metrics.count_slack_calls)

    @app.command("/dna")
    def dna(ack, say, client) -> None:
        ack()
        say("status: all good")
        with contextlib.suppress(SlackApiError):  # no such message: an error the listener shrugs off
            client.reactions_add(channel="C1", timestamp="1.000001", name="eyes")

    before = scrape(Settings(DATABASE_URL=f"postgresql://nobody@127.0.0.1:{closed_port()}/none"))
    body, content_type = slash_command("status", channel="C1")
    status = app.dispatch(BoltRequest(body=body, headers=signed_headers(body, content_type, SIGNING_SECRET))).status
    after = scrape(Settings(DATABASE_URL=f"postgresql://nobody@127.0.0.1:{closed_port()}/none"))

    assert status == 200
    assert [m["text"] for m in slack_api.state.messages["C1"]] == ["status: all good"]
    assert moved(before, after, "dnabot_slack_api_calls_total", method="chat.postMessage") == 1
    assert moved(before, after, "dnabot_slack_api_errors_total", method="reactions.add", error="message_not_found") == 1


def test_a_dead_database_still_answers_the_scrape_with_store_up_zero(bot_env) -> None:
    settings = bot_env(DATABASE_URL=f"postgresql://nobody@127.0.0.1:{closed_port()}/dnabot")
    metrics.observe_delivery("card", "retry")
    metrics.observe_duplicate("slack_event")
    metrics.observe_webhook("bad_signature")

    samples = scrape(settings)

    assert value(samples, "dnabot_store_up") == 0
    assert value(samples, "dnabot_open_incidents", severity="SEV1") is None
    assert (value(samples, "dnabot_outbox_deliveries_total", kind="card", result="retry") or 0) >= 1
    assert (value(samples, "dnabot_inbound_duplicates_total", source="slack_event") or 0) >= 1
    assert (value(samples, "dnabot_webhook_requests_total", result="bad_signature") or 0) >= 1
    assert value(samples, "dnabot_llm_request_seconds_count") is not None  # the agents' metrics are exposed too


def test_a_delivery_result_outside_the_known_four_is_refused() -> None:
    with pytest.raises(ValueError):
        metrics.observe_delivery("card", "posted")
