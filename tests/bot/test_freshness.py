"""Stale or fresh: the one line answers carry, the summary App Home and `/dna status` show, and no secret in them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core import freshness
from bot.core.redact import scrub, secrets_of
from storage.persistence import db
from storage.persistence.models import SyncRun
from storage.persistence.store import FreshnessView, RunView

NOW = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
OM_503 = (
    "OMUnavailable: OpenMetadata is unavailable at http://om.internal:8585/api/: GET /v1/tables failed 6 time(s), "
    "last: HTTP 503 Service Unavailable: upstream connect error"
)
OM_REFUSED = (
    "OMUnavailable: OpenMetadata is unavailable at http://127.0.0.1:9/api/: GET /v1/system/version failed 1 "
    "time(s), last: ConnectError: All connection attempts failed"
)


def run(rid: int, status: str, minutes_ago: float, error: str | None = None) -> RunView:
    at = NOW - timedelta(minutes=minutes_ago)
    done = None if status == "running" else at + timedelta(seconds=30)
    return RunView(rid, at, done, status, "incremental", error, {}, None, "1.6.0", True)


def view(*runs: RunView) -> FreshnessView:
    ordered = sorted(runs, key=lambda r: r.started_at, reverse=True)
    good = next((r for r in ordered if r.status == "succeeded"), None)
    failed = tuple(r for r in ordered if r.status == "failed" and (good is None or r.started_at > good.started_at))
    good_at = (good.finished_at or good.started_at) if good else None
    age = (NOW - good_at).total_seconds() if good_at else None
    last_error = failed[0].error if failed else None
    return FreshnessView(NOW, ordered[0] if ordered else None, good, good_at, age, len(failed), failed, last_error)


@pytest.mark.parametrize(
    ("raw", "short"),
    [
        (OM_503, "OpenMetadata is unavailable (HTTP 503)"),
        (OM_REFUSED, "OpenMetadata is unavailable (ConnectError)"),
        (
            "ValueError: malformed page at offset 500\nTraceback (most recent call last): …",
            "malformed page at offset 500",
        ),
        ("boom", "boom"),
        (None, ""),
        ("RuntimeError: " + "x" * 400, "x" * 119 + "…"),
    ],
)
def test_a_sync_error_is_cut_to_what_a_reader_needs(raw, short):
    assert freshness.short_error(raw) == short


def test_fresh_data_carries_no_note_even_while_a_sync_fails():
    fresh = view(run(1, "succeeded", 10), run(2, "failed", 5, OM_503))
    assert not freshness.stale(fresh, 2700) and freshness.note(fresh, 2700) is None
    line = freshness.summary(fresh, 2700)
    assert line == ":warning: Last good sync 9m ago (incremental, run #1); 1 failed since (" + (
        "OpenMetadata is unavailable (HTTP 503))."
    )
    assert freshness.summary(view(run(1, "succeeded", 10)), 2700) == (
        ":white_check_mark: Last good sync 9m ago (incremental, run #1)."
    )


def test_old_data_says_how_old_and_why():
    old = view(run(1, "succeeded", 48), run(2, "failed", 30, OM_503), run(3, "failed", 15, OM_REFUSED))
    assert freshness.note(old, 2700) == (
        ":warning: Data is 47m old — the last 2 syncs failed (OpenMetadata is unavailable (ConnectError)). "
        "Showing the last good data."
    )
    assert freshness.summary(old, 2700) == freshness.note(old, 2700)
    quiet = view(run(1, "succeeded", 120))
    assert "Data is 1h 59m old — no sync has run since" in (freshness.note(quiet, 2700) or "")
    running = view(run(1, "succeeded", 120), run(2, "running", 1))
    assert "— a sync is running." in (freshness.note(running, 2700) or "")


def test_no_good_sync_yet():
    assert freshness.note(None, 1) is None and freshness.summary(None, 1) == "No sync has run yet."
    failing = view(run(1, "failed", 3, OM_503))
    assert freshness.note(failing, 2700) == (
        ":warning: No sync has succeeded yet: the last sync failed (OpenMetadata is unavailable (HTTP 503))."
    )
    first = view(run(1, "running", 1))
    assert not freshness.stale(first, 1) and freshness.summary(first, 1) == ":hourglass: The first sync is running."


def test_an_error_that_looks_like_markup_is_escaped():
    old = view(run(1, "succeeded", 300), run(2, "failed", 1, "RuntimeError: <!channel> & *bold*"))
    assert "(&lt;!channel&gt; &amp; *bold*)" in (freshness.note(old, 60) or "")


def test_secrets_are_masked_by_value_and_by_shape(bot_env):
    settings = bot_env(
        OPENAI_API_KEY="sk-live-abcdef123456",
        DATABASE_URL="postgresql+psycopg://dna:db-pass-987@db.internal/dna",
        SLACK_SIGNING_SECRET="signing-secret-42",
    )
    secrets = secrets_of(settings)
    assert {
        "sk-live-abcdef123456",
        "db-pass-987",
        "signing-secret-42",
        settings.slack_bot_token.get_secret_value(),
    } <= (set(secrets))
    text = (
        "calling with sk-live-abcdef123456 as Bearer abcdefghijklmnop to https://u:pw@h/x?token=t0k3n "
        "with xoxb-123-456-abc and password=hunter22 and eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.c2lnbmF0dXJl"
    )
    masked = scrub(text, secrets)
    for secret in ("sk-live", "abcdefghijklmnop", ":pw@", "t0k3n", "xoxb-123", "hunter22", "eyJhbGci"):
        assert secret not in masked, secret
    assert scrub("OpenMetadata refused the bearer token (401)") == "OpenMetadata refused the bearer token (401)"


def test_freshness_read_from_the_store_comes_scrubbed(bot_env):
    settings = bot_env()
    token = settings.openmetadata_token.get_secret_value()
    assert freshness.freshness(settings) is None  # an empty store: nothing to judge yet
    engine = db.make_engine(settings.database_url)
    db.migrate(engine)
    now = datetime.now(UTC)
    with db.session_factory(engine).begin() as session:
        session.add(SyncRun(started_at=now - timedelta(hours=1), finished_at=now, status="succeeded", stats={}))
        error = f"OpenMetadataError: 401 for Authorization: {token} at http://om:8585/api/"
        session.add(SyncRun(started_at=now, finished_at=now, status="failed", error=error, stats={}))
    engine.dispose()
    read = freshness.freshness(settings)
    assert read is not None and read.failures == 1 and read.last_error is not None
    assert token not in read.last_error and token not in str(read.recent_failures) and token not in str(read.last_run)
    assert not freshness.is_stale(read, settings) and freshness.stale_note(read, settings) is None
