"""OpenMetadata misbehaving during a sync: down, hanging, slow for a while, 500s for a while, garbage mid-listing.

Each story starts from a good sync of OpenMetadata's sample data, so "the last good data" is there to keep. A run
that cannot finish is recorded as failed with a clear error (no token in it) and changes nothing; a transient
fault is retried through; a broken item or page costs only what it must.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from storage.openmetadata.client import OpenMetadataClient
from storage.openmetadata.fqn import url_segment
from storage.persistence import store
from storage.persistence.db import make_engine
from storage.sync.run import SyncOptions, SyncResult, run_sync
from tests.storage.test_sync import SHOP, read

PAGE = 7  # the sample data's 18 tables come in pages of 7, 7 and 4
FAST = {"page_size": PAGE, "max_retries": 1, "backoff": 0.01, "backoff_max": 0.05}


def sync(db_url: str, url: str, token: str, mode: str = "full", **client_kw: Any) -> SyncResult:
    """One sync run against `url` (the simulator, or something worse)."""
    engine = make_engine(db_url)

    async def go() -> SyncResult:
        async with OpenMetadataClient(url, token, **(FAST | client_kw)) as client:
            return await run_sync(engine, client, SyncOptions(mode=mode))

    try:
        return asyncio.run(go())
    finally:
        engine.dispose()


def good_sync(db_url: str, om) -> SyncResult:
    result = sync(db_url, om.url, om.token)
    assert result.ok, result.error
    return result


def fingerprints(db_url: str, fqns: list[str]) -> dict[str, str]:
    return {fqn: read(db_url, store.dna_at, fqn).fingerprint for fqn in fqns}


def table_pages(om) -> list[list[str]]:
    """The table FQNs page by page, as the sync lists them."""
    pages, after = [], None
    while True:
        params = {"limit": PAGE, "include": "non-deleted"} | ({"after": after} if after else {})
        body = om.get("/api/v1/tables", **params)
        pages.append([t["fullyQualifiedName"] for t in body["data"]])
        after = body["paging"].get("after")
        if not after:
            return pages


def drop_column(om, fqn: str) -> str:
    """Drop the table's last column through the admin API; returns the column's name."""
    column = om.get(f"/api/v1/tables/name/{url_segment(fqn)}", fields="columns")["columns"][-1]["name"]
    om.admin("DELETE", f"/admin/tables/{url_segment(fqn)}/columns/{url_segment(column)}")
    return column


def columns_of(db_url: str, fqn: str) -> list[str]:
    return [c["name"] for c in read(db_url, store.dna_at, fqn).genes["schema"]["columns"]]


def assert_failed_and_nothing_changed(db_url: str, failed: SyncResult, before: dict[str, str], token: str) -> None:
    assert failed.status == "failed" and failed.error
    assert token not in failed.error
    [last, *_] = read(db_url, store.last_runs, 1)
    assert (last.id, last.status) == (failed.run_id, "failed") and last.error and token not in last.error
    assert read(db_url, store.last_successful_run).id < failed.run_id
    assert fingerprints(db_url, list(before)) == before  # nothing of the failed run landed


@pytest.fixture
def refused_url() -> Iterator[str]:
    """An address where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # the kernel completes the handshakes; nobody ever reads or answers
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# ------------------------------------------------------------------------------------------------ down


def test_openmetadata_down_fails_the_run_clearly_and_keeps_the_last_good_data(db_url, om_sample, refused_url):
    good_sync(db_url, om_sample)
    sample = [f"{SHOP}.dim_address", f'{SHOP}."dim.product"', f"{SHOP}.raw_order"]
    before = fingerprints(db_url, sample)

    started = time.monotonic()
    failed = sync(db_url, refused_url, om_sample.token)
    assert time.monotonic() - started < 10  # refused connections fail fast, retries included
    assert_failed_and_nothing_changed(db_url, failed, before, om_sample.token)
    # says what was unreachable, where, and what to check
    assert failed.error == (
        f"OMUnavailable: cannot reach OpenMetadata at {refused_url} (connection refused): "
        "is the server running and OPENMETADATA_URL right?"
    )
    assert failed.requests == 2  # one quick retry, not the backoff meant for timeouts and 5xx

    assert good_sync(db_url, om_sample).ok  # back up: the next run simply succeeds


def test_openmetadata_that_never_answers_times_out_and_fails_cleanly(db_url, om_sample, silent_url):
    good_sync(db_url, om_sample)
    before = fingerprints(db_url, [f"{SHOP}.dim_address"])
    started = time.monotonic()
    failed = sync(db_url, silent_url, om_sample.token, timeout=0.3)
    assert time.monotonic() - started < 10
    assert_failed_and_nothing_changed(db_url, failed, before, om_sample.token)
    assert "Timeout" in failed.error


# --------------------------------------------------------------------------------------- transient faults


def test_slow_answers_for_a_while_are_retried_and_the_sync_succeeds(db_url, om_sample):
    good_sync(db_url, om_sample)
    column = drop_column(om_sample, f"{SHOP}.dim_address")
    om_sample.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/tables$", "delay_seconds": 1.5, "times": 2})
    result = sync(db_url, om_sample.url, om_sample.token, timeout=0.4, max_retries=3)
    assert result.ok, result.error
    assert result.retries >= 2
    assert column not in columns_of(db_url, f"{SHOP}.dim_address")


def test_500s_for_a_while_then_ok_sync_succeeds_through_the_retries(db_url, om_sample):
    good_sync(db_url, om_sample)
    column = drop_column(om_sample, f"{SHOP}.raw_order")
    for path in ("^/api/v1/tables$", "^/api/v1/lineage/", "^/api/v1/dataQuality/testCases$"):
        om_sample.admin("POST", "/admin/faults", {"path_regex": path, "status": 500, "times": 3})
    result = sync(db_url, om_sample.url, om_sample.token, max_retries=4)
    assert result.ok, result.error
    assert result.retries >= 9 and result.skipped_malformed == 0
    assert column not in columns_of(db_url, f"{SHOP}.raw_order")
    assert read(db_url, store.last_runs, 1)[0].status == "succeeded"


def test_500s_that_outlast_the_retries_fail_the_run_and_keep_the_data(db_url, om_sample):
    good_sync(db_url, om_sample)
    before = fingerprints(db_url, [f"{SHOP}.raw_order"])
    drop_column(om_sample, f"{SHOP}.raw_order")
    om_sample.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/tables$", "status": 500, "times": 1000})
    failed = sync(db_url, om_sample.url, om_sample.token, max_retries=2)
    assert_failed_and_nothing_changed(db_url, failed, before, om_sample.token)
    assert "failed 3 time(s)" in failed.error and "500" in failed.error


# ----------------------------------------------------------------------------------- garbage mid-listing


def test_a_page_of_malformed_tables_mid_listing_is_skipped_counted_and_the_rest_synced(db_url, om_sample):
    good_sync(db_url, om_sample)
    first, middle, last = table_pages(om_sample)
    assert len(middle) == PAGE and last  # a real page in the middle
    before = fingerprints(db_url, middle)
    changed = {fqn: drop_column(om_sample, fqn) for fqn in (first[0], middle[0], last[-1])}
    for fqn in middle:
        om_sample.admin("POST", "/admin/faults", {"malformed": fqn})

    result = sync(db_url, om_sample.url, om_sample.token)
    assert result.ok, result.error
    assert result.skipped_malformed >= PAGE
    assert {m["item"] for m in result.malformed} >= set(middle)
    assert result.entities_deleted == 0
    assert fingerprints(db_url, middle) == before  # the broken page keeps its last good state, change unseen
    for fqn in (first[0], last[-1]):  # the pages around it were read and their changes found
        assert changed[fqn] not in columns_of(db_url, fqn)
    assert not any(read(db_url, store.dna_at, fqn).deleted for fqn in middle)


class GarbledPage(httpx.AsyncBaseTransport):
    """Forwards to the simulator over real HTTP, but the second page of tables is rewritten by `garble`."""

    def __init__(self, garble: Callable[[bytes], bytes]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.garble = garble
        self.pages = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/api/v1/tables" or "after" not in request.url.params:
            return response
        self.pages += 1
        body = await response.aread()
        if self.pages != 1:
            return httpx.Response(response.status_code, headers=response.headers, content=body, request=request)
        garbled = self.garble(body)
        headers = {"content-type": "application/json", "content-length": str(len(garbled))}
        return httpx.Response(200, headers=headers, content=garbled, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _junk_items(body: bytes) -> bytes:
    page = json.loads(body)
    page["data"][1] = 42
    page["data"][3] = {"id": "no-name", "columns": "not-a-list"}
    page["data"][5] = "a string where a table should be"
    return json.dumps(page).encode()


def test_junk_items_in_a_page_mid_listing_are_skipped_and_counted_without_deleting(db_url, om_sample):
    good_sync(db_url, om_sample)
    _, middle, last = table_pages(om_sample)
    junked = [middle[1], middle[3], middle[5]]
    before = fingerprints(db_url, junked)
    column = drop_column(om_sample, last[0])

    transport = GarbledPage(_junk_items)
    result = sync(db_url, om_sample.url, om_sample.token, transport=transport)
    assert transport.pages >= 2  # the garbled page was read, and the one after it too
    assert result.ok, result.error
    assert result.skipped_malformed == 3
    # items without a name could be any table: nothing is taken for deleted on this listing
    assert result.entities_deleted == 0
    assert fingerprints(db_url, junked) == before and not any(read(db_url, store.dna_at, f).deleted for f in junked)
    assert column not in columns_of(db_url, last[0])


@pytest.mark.parametrize(
    ("garble", "said"),
    [
        (lambda body: b"<html><body>502 Bad Gateway</body></html>", "invalid JSON"),
        (lambda body: body[: len(body) // 2], "invalid JSON"),
        (lambda body: json.dumps({"data": {"oops": True}, "paging": {}}).encode(), "without a `data` list"),
    ],
    ids=["html", "truncated", "no-data-list"],
)
def test_a_page_that_is_not_a_listing_mid_sync_fails_the_run_cleanly(db_url, om_sample, garble, said):
    good_sync(db_url, om_sample)
    _, middle, _ = table_pages(om_sample)
    before = fingerprints(db_url, middle)
    drop_column(om_sample, middle[0])
    failed = sync(db_url, om_sample.url, om_sample.token, transport=GarbledPage(garble))
    assert_failed_and_nothing_changed(db_url, failed, before, om_sample.token)
    assert said in failed.error and "/v1/tables" in failed.error


def test_a_wrong_token_fails_the_run_with_a_hint_and_without_the_token(db_url, om_sample):
    good_sync(db_url, om_sample)
    before = fingerprints(db_url, [f"{SHOP}.dim_address"])
    wrong = "wrong-token-3f9a1c7e5b"
    failed = sync(db_url, om_sample.url, wrong)
    assert_failed_and_nothing_changed(db_url, failed, before, wrong)
    assert "OPENMETADATA_TOKEN" in failed.error and "401" in failed.error
