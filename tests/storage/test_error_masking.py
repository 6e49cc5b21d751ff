"""A sync that fails on an OpenMetadata error body quoting secrets stores and logs that error with them masked.

A proxy or a misconfigured server may echo back what it was sent or knows (a Slack token, a password, an API
key): the run's `sync_runs.error` (what `dnabot runs`, `/dna status` and `/dna sync` show) and its log line must
not carry them. Masking does not depend on the OpenMetadata release, so one release line is enough here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import sqlalchemy as sa

from storage.openmetadata.client import OpenMetadataClient
from storage.persistence.db import make_engine
from storage.persistence.models import SyncRun
from storage.sync.run import SyncOptions, SyncResult, run_sync
from tests.fakes.omserver import PROFILE_VERSIONS
from tests.storage.test_sync_faults import FAST

SLACK_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp"
DB_PASSWORD = "s3cr3t-db-pw"
LLM_KEY = "llmkey7Hq2ZxW9mPv4"  # no recognisable shape: only the configured value can mask it


@pytest.fixture
def om_version() -> str:
    return PROFILE_VERSIONS[-1]


def sync(db_url: str, om, **options: Any) -> SyncResult:
    """One full sync run against the simulator with these `SyncOptions`."""
    engine = make_engine(db_url)

    async def go() -> SyncResult:
        async with OpenMetadataClient(om.url, om.token, **FAST) as client:
            return await run_sync(engine, client, SyncOptions(mode="full", **options))

    try:
        return asyncio.run(go())
    finally:
        engine.dispose()


def stored_errors(db_url: str) -> list[str]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return [e or "" for e in conn.scalars(sa.select(SyncRun.error))]
    finally:
        engine.dispose()


def fail_with(om, message: str) -> None:
    om.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/tables$", "status": 400, "message": message})


def test_token_shapes_in_an_error_body_are_masked_in_the_stored_run_and_the_log(db_url, om_sample, caplog):
    fail_with(
        om_sample, f"proxy refused: slack {SLACK_TOKEN} password={DB_PASSWORD} from postgresql://dna:{DB_PASSWORD}@db"
    )
    with caplog.at_level(logging.WARNING, logger="storage.sync.run"):
        failed = sync(db_url, om_sample)
    assert failed.status == "failed" and "HTTP 400" in failed.error and "proxy refused" in failed.error
    [stored] = stored_errors(db_url)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (failed.error, stored, logged):
        assert SLACK_TOKEN not in text and DB_PASSWORD not in text
    assert "proxy refused" in stored and "sync run" in logged  # the error is still there, only masked


def test_configured_secrets_in_an_error_body_are_masked_whole(db_url, om_sample):
    fail_with(om_sample, f"upstream said: key {LLM_KEY} rejected for dev1 on dev10; also {om_sample.token}")
    failed = sync(db_url, om_sample, secrets=(LLM_KEY, "dev1"))
    [stored] = stored_errors(db_url)
    assert LLM_KEY not in stored and om_sample.token not in stored
    assert "key *** rejected for *** on dev10" in stored and failed.error == stored  # "dev10" is not "dev1"


def test_an_outbox_rows_last_error_is_stored_with_token_shapes_masked(db_url):
    from datetime import UTC, datetime

    from storage.persistence import db, outbox

    engine = make_engine(db_url)
    now = datetime.now(UTC)
    try:
        with db.session_factory(engine).begin() as session:
            outbox.enqueue(session, "card:1", "card", lane="slack:incident:1", now=now)
            outbox.enqueue(session, "card:2", "card", lane="slack:incident:2", now=now)
        first, second = outbox.claim(engine, "replica-a", now=now, lease_seconds=60)
        said = f"Slack answered invalid_auth for {SLACK_TOKEN}; proxy password={DB_PASSWORD}"
        with db.session_factory(engine).begin() as session:
            outbox.retry_later(session, first.id, "replica-a", now=now, error=said, delay_seconds=1, max_attempts=5)
            outbox.give_up(session, second.id, "replica-a", now=now, error=said)
        with db.session_factory(engine)() as session:
            errors = [r.last_error or "" for r in outbox.rows(session)]
    finally:
        engine.dispose()
    assert len(errors) == 2 and all("invalid_auth" in e for e in errors)
    assert not any(SLACK_TOKEN in e or DB_PASSWORD in e for e in errors)
