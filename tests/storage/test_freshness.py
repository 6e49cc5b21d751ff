"""How fresh the store is: the last run, the last good one, how old its data is and the failures since it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage.persistence import store
from storage.persistence.models import SyncRun

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def add_run(session, minutes_ago: float, status: str, error: str | None = None, mode: str = "incremental") -> int:
    started = NOW - timedelta(minutes=minutes_ago)
    finished = None if status == "running" else started + timedelta(seconds=30)
    run = SyncRun(started_at=started, finished_at=finished, status=status, mode=mode, error=error, stats={})
    session.add(run)
    session.flush()
    return run.id


def test_an_empty_store_has_no_good_data_and_no_failures(session):
    view = store.freshness(session, NOW)
    assert view.last_run is None and view.last_good is None and view.age_seconds is None
    assert view.failures == 0 and view.recent_failures == () and view.last_error is None


def test_failures_since_the_last_good_run_are_counted_newest_first(session):
    add_run(session, 300, "failed", "too old to count")
    good = add_run(session, 120, "succeeded", mode="full")
    add_run(session, 90, "failed", "OMUnavailable: HTTP 503")
    add_run(session, 60, "failed", "OMUnavailable: HTTP 502")
    last = add_run(session, 1, "running")
    view = store.freshness(session, NOW)
    assert view.last_good is not None and view.last_good.id == good and view.last_good.mode == "full"
    assert view.good_at == NOW - timedelta(minutes=120) + timedelta(seconds=30)
    assert view.age_seconds == pytest.approx(119.5 * 60)
    assert view.failures == 2 and [r.error for r in view.recent_failures] == [
        "OMUnavailable: HTTP 502",
        "OMUnavailable: HTTP 503",
    ]
    assert view.last_error == "OMUnavailable: HTTP 502"
    assert view.last_run is not None and view.last_run.id == last and view.last_run.status == "running"


def test_a_good_run_resets_the_failures_and_none_good_counts_them_all(session):
    for minutes in (50, 40, 30, 20, 10, 5, 3):
        add_run(session, minutes, "failed", f"failure {minutes}")
    view = store.freshness(session, NOW, recent=5)
    assert view.last_good is None and view.failures == 7 and len(view.recent_failures) == 5
    assert view.last_error == "failure 3"

    add_run(session, 1, "succeeded")
    after = store.freshness(session, NOW)
    assert after.failures == 0 and after.last_error is None and after.age_seconds == pytest.approx(30)


def test_now_must_be_aware(session):
    with pytest.raises(ValueError, match="timezone-aware"):
        store.freshness(session, datetime(2026, 3, 2, 12, 0))


def test_a_targeted_re_sync_does_not_make_the_whole_store_fresh(session):
    good = add_run(session, 120, "succeeded", mode="full")
    add_run(session, 60, "failed", "OMUnavailable: HTTP 503")
    add_run(session, 5, "succeeded", mode="targeted")  # a webhook refreshed one table
    view = store.freshness(session, NOW)
    assert view.last_good is not None and view.last_good.id == good and view.failures == 1
    assert view.last_run is not None and view.last_run.mode == "targeted"
