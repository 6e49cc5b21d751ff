"""Warm answers: the Slack app keeps one lineage graph between questions, syncs refresh it, the CLI reads less."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from bot.core import heap, services
from bot.runtime import serve as runtime
from storage.openmetadata.fqn import url_segment
from storage.persistence import graph
from storage.persistence.db import session_factory

ROOT = Path(__file__).resolve().parents[2]
STG_ORDERS = "warehouse.shop.staging.stg_orders"
CUSTOMERS = "warehouse.shop.analytics.customers"


@pytest.fixture
def synced(bot_env):
    """Settings on the demo store, synced once; the process's graph cache for it is forgotten afterwards."""
    settings = bot_env()
    assert asyncio.run(services.sync(settings, incidents=False)).ok
    cache = graph.cache_for(services.engine_for(settings))
    yield settings, cache
    cache.clear()
    cache.keep_warm = False


def reached(radius) -> set[str]:
    return {i.fqn for i in radius.entities}


def test_slack_questions_share_one_graph_until_a_sync_changes_it(synced, om_demo):
    settings, cache = synced
    services.keep_graphs_warm(settings)  # what building the Slack app does
    for _ in range(5):
        assert CUSTOMERS in reached(services.blast(settings, "stg_orders", None, None))
    asyncio.run(services.why(settings, "stg_orders", None))
    assert cache.builds == 1

    om_demo.request(
        "DELETE", f"/api/v1/lineage/table/name/{url_segment(STG_ORDERS)}/table/name/{url_segment(CUSTOMERS)}"
    )
    assert asyncio.run(services.sync(settings, incidents=False)).ok
    assert CUSTOMERS not in reached(services.blast(settings, "stg_orders", None, None))  # no restart needed
    services.blast(settings, "stg_orders", None, None)
    assert cache.builds == 2


def test_a_sync_run_by_the_server_warms_the_graph_before_the_next_question(synced, om_demo):
    settings, cache = synced
    services.keep_graphs_warm(settings)
    assert CUSTOMERS in reached(services.blast(settings, "stg_orders", None, None))
    om_demo.request(
        "DELETE", f"/api/v1/lineage/table/name/{url_segment(STG_ORDERS)}/table/name/{url_segment(CUSTOMERS)}"
    )
    run = runtime.targeted_runner(settings, None)  # the webhook's targeted re-sync, as `serve` runs it
    assert run([("table", STG_ORDERS)])
    assert cache.builds == 2  # rebuilt right after the commit, by the sync's own thread
    radius = services.blast(settings, "stg_orders", None, None)
    assert cache.builds == 2 and CUSTOMERS not in reached(radius)
    with session_factory(services.engine_for(settings))() as session:
        assert radius == graph.graph_at(session).blast_radius(STG_ORDERS)  # a fresh build's answer


def test_a_serving_process_freezes_its_heap_and_each_new_graph_and_still_frees_the_old_graph(synced, om_demo):
    settings, cache = synced
    services.keep_graphs_warm(settings)
    engine = services.engine_for(settings)
    try:
        heap.keep_long_lived_out_of_full_collections()  # what `serve` does once it has started
        assert gc.get_freeze_count() > 0
        services.warm_graphs(settings)
        with session_factory(engine)() as session:
            old = cache.graph(session)
        tracked = {id(o) for o in gc.get_objects()}
        assert id(old) not in tracked and id(old._ids) not in tracked  # frozen: full passes no longer walk it

        om_demo.request(
            "DELETE", f"/api/v1/lineage/table/name/{url_segment(STG_ORDERS)}/table/name/{url_segment(CUSTOMERS)}"
        )
        assert asyncio.run(services.sync(settings, incidents=False)).ok
        services.warm_graphs(settings)
        gone = weakref.ref(old)
        del old
        assert cache.builds == 2 and gone() is None  # the replaced graph is freed, frozen or not
        with session_factory(engine)() as session:
            new = cache.graph(session)
        assert id(new) not in {id(o) for o in gc.get_objects()}  # the new graph is frozen in its turn
    finally:
        heap.reset()
    assert gc.get_freeze_count() == 0


def test_a_changed_sync_in_the_server_builds_the_graph_once_for_its_pipeline_and_the_questions(
    synced, om_demo, monkeypatch
):
    settings, cache = synced
    services.keep_graphs_warm(settings)
    services.blast(settings, "stg_orders", None, None)
    direct = []  # whole-graph builds outside the process's cache (each costs ~1 s at 10k tables)
    real = graph.graph_at
    monkeypatch.setattr(graph, "graph_at", lambda session: direct.append(1) or real(session))
    om_demo.admin("POST", f"/admin/tables/{url_segment(STG_ORDERS)}/columns/status/rename", {"newName": "state"})

    synced_run = asyncio.run(services.sync(settings))  # the sync, then the incident pipeline on what changed
    services.warm_graphs(settings)  # what the tick does next
    assert synced_run.ok and synced_run.incidents["opened"]
    assert cache.builds == 2 and not direct  # one build, shared by the pipeline and the questions after it
    assert CUSTOMERS in reached(services.blast(settings, "stg_orders", None, None)) and cache.builds == 2


def test_the_command_line_reads_only_what_is_downstream(synced):
    settings, cache = synced
    cold = services.blast(settings, "stg_orders", "status", None)
    assert not cache.holds and cache.builds == 0  # a one-shot question builds no whole graph
    services.keep_graphs_warm(settings)
    assert services.blast(settings, "stg_orders", "status", None) == cold
    assert cache.builds == 1


def test_a_cold_dnabot_blast_process_answers_as_the_warm_app(synced):
    settings, _ = synced
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": settings.database_url}
    args = [sys.executable, "-m", "bot.cli", "blast", "stg_orders", "--column", "status", "--json"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    services.keep_graphs_warm(settings)
    warm = services.blast_json(services.blast(settings, "stg_orders", "status", None))
    assert json.loads(done.stdout) == warm
    assert {"looker.customer_health", "looker.sales_overview"} <= set(warm["dashboards"])


def test_building_the_slack_app_keeps_the_graph_warm(synced):
    settings, cache = synced
    from bot.slack.app import build_app

    build_app(settings)
    services.blast(settings, "stg_orders", None, None)
    assert cache.keep_warm and cache.builds == 1  # the app's first question builds the graph the next ones reuse


def test_warming_an_unreachable_store_is_a_warning_not_an_error(bot_env, tmp_path, caplog):
    settings = bot_env(DATABASE_URL=f"sqlite:///{tmp_path}")  # a folder, not a database file: connecting fails
    services.warm_graphs(settings)  # the scheduler job must not raise
    assert "lineage graph not warmed" in caplog.text
    caplog.clear()
    missing = bot_env(DATABASE_URL=f"sqlite:///{tmp_path / 'nowhere.db'}")
    services.warm_graphs(missing)  # no store yet: nothing to warm, and no file is created for it
    assert caplog.text == "" and not (tmp_path / "nowhere.db").exists()
