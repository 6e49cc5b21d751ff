"""The OpenMetadata client against a scripted fake server: auth, paging, retries, lineage, DQ, events."""

from __future__ import annotations

import asyncio
import email.utils
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from storage.errors import OMAuthError, OMNotFound, OMUnavailable, OMUnsupportedVersion, OpenMetadataError
from storage.openmetadata.client import LineageEdge, OpenMetadataClient, event_entity
from storage.openmetadata.http import retry_after_seconds
from storage.openmetadata.models import ChangeEvent, Table

pytestmark = pytest.mark.anyio

TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-bot-token.sig"
SHOP = "sample_data.ecommerce_db.shopify"
Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeOM:
    """A scripted OpenMetadata: replies per raw path (in order, the last repeating); records requests."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        # a server answers its version first (the client picks request shapes from it)
        self.routes: dict[str, list[Reply]] = {}
        self.version_scripted = False
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0

    def on(self, raw_path: str, *replies: Reply) -> FakeOM:
        self.routes[raw_path] = list(replies)
        self.version_scripted = self.version_scripted or raw_path == VERSION
        return self

    def paths(self) -> list[str]:
        return [r.url.raw_path.decode().split("?")[0] for r in self.requests]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == VERSION and not self.version_scripted:
            return ok({"version": "1.13.6"})  # the version read every client starts with: not what tests count
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        path = request.url.raw_path.decode().split("?")[0]
        replies = self.routes.get(path)
        if not replies:
            return httpx.Response(404, json={"code": 404, "message": f"no route {path}"})
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply(request) if callable(reply) else reply


class Sleeps:
    """An injectable sleep that records the delays tenacity asked for instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def om_client(fake: FakeOM, sleeps: Sleeps | None = None, **kwargs: Any) -> OpenMetadataClient:
    base = kwargs.pop("base_url", "http://om.test:8585")
    token = kwargs.pop("token", TOKEN)
    transport = httpx.MockTransport(fake)
    return OpenMetadataClient(base, token, transport=transport, sleep=sleeps or Sleeps(), **kwargs)


def ok(body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=body, headers=headers)


def error(status: int, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"code": status, "message": message}, headers=headers)


def table(name: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"id-{name}", "name": name, "fullyQualifiedName": f"{SHOP}.{name}", "columns": [], **extra}


VERSION = "/api/v1/system/version"


# ---- auth, base URL, version ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "base_url",
    ["http://om.test:8585", "http://om.test:8585/", "http://om.test:8585/api", "http://om.test:8585/api/"],
)
async def test_base_url_is_normalised_and_the_bearer_token_sent(base_url: str) -> None:
    fake = FakeOM().on(VERSION, ok({"version": "1.13.6", "revision": "abc"}))
    async with om_client(fake, base_url=base_url) as om:
        version = await om.server_version()
    assert version.version == "1.13.6"
    assert str(fake.requests[0].url) == "http://om.test:8585/api/v1/system/version"
    assert fake.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


async def test_no_token_means_no_authorization_header_and_the_token_never_shows_in_repr() -> None:
    fake = FakeOM().on(VERSION, ok({"version": "1.13.6"}))
    async with om_client(fake, token=None) as om:
        await om.server_version()
    assert "Authorization" not in fake.requests[0].headers
    assert TOKEN not in repr(om_client(fake))


@pytest.mark.parametrize("version", ["0.13.2", "1.4.8", "3.0.0", "nightly"])
async def test_versions_outside_1_5_to_2_x_are_refused_in_one_sentence(version: str) -> None:
    fake = FakeOM().on(VERSION, ok({"version": version}))
    async with om_client(fake) as om:
        with pytest.raises(OMUnsupportedVersion) as caught:
            await om.check_version()
    text = str(caught.value)
    assert version in text and "1.5 to 2.x" in text
    assert text.count(". ") == 0 and text.endswith(".") and "\n" not in text
    assert caught.value.version == version


@pytest.mark.parametrize("version", ["1.5.15", "1.8.12", "1.13.6", "2.0.7", "2.3.1"])
async def test_every_release_from_1_5_through_2_x_is_accepted(version: str) -> None:
    fake = FakeOM().on(VERSION, ok({"version": version}))
    async with om_client(fake) as om:
        assert (await om.check_version()).version == version


@pytest.mark.parametrize(
    ("version", "domain"), [("1.5.15", "domain"), ("1.8.12", "domain"), ("1.9.0", "domains"), ("2.0.7", "domains")]
)
async def test_entity_fields_follow_the_server_version(version: str, domain: str) -> None:
    one_domain = {"id": "d1", "type": "domain", "name": "Sales"}
    body = table("orders", domain=one_domain) if domain == "domain" else table("orders", domains=[one_domain])
    fake = FakeOM().on(VERSION, ok({"version": version})).on("/api/v1/tables", ok({"data": [body], "paging": {}}))
    async with om_client(fake) as om:
        tables = [t async for t in om.iter_entities("table")]
    fields = fake.requests[-1].url.params["fields"].split(",")
    assert domain in fields and ({"domain", "domains"} - {domain}).isdisjoint(fields)
    assert "owners" in fields and "owner" not in fields
    assert [d.name for d in tables[0].domains] == ["Sales"]  # one domain (1.5–1.8) reads as a list of one


async def test_unknown_fields_and_event_types_are_counted_never_fatal() -> None:
    events = [event("e1", 10) | {"eventType": "entityTeleported"}, event("e2", 11)]
    body = table("orders", brandNewField={"x": 1})
    fake = (
        FakeOM()
        .on(VERSION, ok({"version": "2.0.7"}))
        .on("/api/v1/tables", ok({"data": [body], "paging": {}}))
        .on("/api/v1/events", ok({"data": events, "paging": {"total": 2}}))
    )
    async with om_client(fake) as om:
        tables = [t async for t in om.iter_entities("table")]
        seen = await om.events_since(0)
    assert [t.name for t in tables] == ["orders"] and [e.id for e in seen] == ["e1", "e2"]
    assert om.unknown_fields == {"table.brandNewField": 1}
    assert om.unknown_event_types == {"entityTeleported": 1}


async def test_version_1_13_6_is_accepted() -> None:
    fake = FakeOM().on(VERSION, ok({"version": "1.13.6", "revision": "3a1b2c", "timestamp": 1760000000000}))
    async with om_client(fake) as om:
        assert (await om.check_version()).version == "1.13.6"
        assert om.server is not None and om.server.revision == "3a1b2c"


# ---- paging and lenient parsing ------------------------------------------------------------------------
async def test_tables_are_listed_over_three_pages_with_an_encoded_cursor() -> None:
    tricky_cursor = "eyJuYW1lIjoiZGltLnNob3AiLCJpZCI6IjEifQ+/=="
    pages = {
        None: ok({"data": [table("a"), table("b")], "paging": {"after": "cursor-1", "total": 5}}),
        "cursor-1": ok({"data": [table("c"), table("d")], "paging": {"after": tricky_cursor, "total": 5}}),
        tricky_cursor: ok({"data": [table("e")], "paging": {"before": "x", "total": 5}}),
    }
    fake = FakeOM().on("/api/v1/tables", lambda r: pages[r.url.params.get("after")])
    async with om_client(fake) as om:
        names = [t.name async for t in om.iter_entities("table")]
    assert names == ["a", "b", "c", "d", "e"]
    assert len(fake.requests) == 3
    first = fake.requests[0].url.params
    assert first["limit"] == "500"
    assert first["include"] == "non-deleted"
    assert first["fields"].split(",")[0] == "columns" and "owners" in first["fields"]
    last_query = fake.requests[2].url.query.decode()
    assert "after=eyJuYW1lIjoiZGltLnNob3AiLCJpZCI6IjEifQ%2B%2F%3D%3D" in last_query
    assert isinstance(await _first_table(fake), Table)


async def _first_table(fake: FakeOM) -> Any:
    async with om_client(fake) as om:
        return await anext(aiter(om.iter_entities("table")))


async def test_a_malformed_item_is_skipped_and_counted_while_the_rest_parse() -> None:
    bad_columns = table("bad_columns", columns="not-a-list")
    no_name = {"id": "id-no-name", "columns": []}
    body = {"data": [table("good"), bad_columns, no_name, "junk", table("also_good")], "paging": {}}
    fake = FakeOM().on("/api/v1/dashboards", ok(body))
    async with om_client(fake) as om:
        names = [d.name async for d in om.iter_entities("dashboard")]
    assert names == ["good", "bad_columns", "also_good"]  # dashboards have no `columns`: ignored
    fake.on("/api/v1/tables", ok(body))
    async with om_client(fake) as om:
        names = [t.name async for t in om.iter_entities("table")]
        assert names == ["good", "also_good"]
        refs = [(m.entity_type, m.fqn_or_id) for m in om.malformed]
    assert refs == [("table", f"{SHOP}.bad_columns"), ("table", "id-no-name"), ("table", None)]


async def test_a_repeated_cursor_stops_the_listing_instead_of_looping() -> None:
    fake = FakeOM().on("/api/v1/topics", ok({"data": [], "paging": {"after": "same"}}))
    async with om_client(fake) as om:
        with pytest.raises(OpenMetadataError, match="repeated a paging cursor"):
            _ = [t async for t in om.iter_entities("topic")]


async def test_an_unknown_entity_type_is_a_programming_error() -> None:
    async with om_client(FakeOM()) as om:
        with pytest.raises(ValueError, match="unknown entity type"):
            _ = [t async for t in om.iter_entities("mlmodel")]


# ---- retries -------------------------------------------------------------------------------------------
async def test_429_with_retry_after_waits_that_long_then_succeeds() -> None:
    fake = FakeOM().on(VERSION, error(429, "Too many requests", **{"Retry-After": "1"}), ok({"version": "1.13.6"}))
    sleeps = Sleeps()
    async with om_client(fake, sleeps) as om:
        await om.check_version()
        assert (om.stats.requests, om.stats.retries) == (2, 1)
        assert om.stats.bytes > 0
    assert sleeps.delays == [1.0]


async def test_retry_after_as_an_http_date_is_honoured_and_capped() -> None:
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= (retry_after_seconds(soon) or 0) <= 31
    assert retry_after_seconds("garbage") is None
    fake = FakeOM().on(VERSION, error(503, "busy", **{"Retry-After": "3600"}), ok({"version": "1.13.6"}))
    sleeps = Sleeps()
    async with om_client(fake, sleeps) as om:
        await om.server_version()
    assert sleeps.delays == [60.0]


async def test_503_twice_then_success_backs_off_exponentially() -> None:
    fake = FakeOM().on(VERSION, error(503, "down"), error(503, "down"), ok({"version": "1.13.6"}))
    sleeps = Sleeps()
    async with om_client(fake, sleeps, backoff=0.5) as om:
        await om.server_version()
        assert om.stats.retries == 2
    assert len(sleeps.delays) == 2
    assert 0.5 <= sleeps.delays[0] <= 1.0 and 1.0 <= sleeps.delays[1] <= 1.5


async def test_timeouts_and_dropped_connections_are_retried() -> None:
    fake = FakeOM().on(
        VERSION,
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("server disconnected"),
        ok({"version": "1.13.6"}),
    )
    async with om_client(fake) as om:
        assert (await om.server_version()).version == "1.13.6"
        assert om.stats.requests == 4


async def test_exhausted_retries_raise_unavailable_with_a_clear_message() -> None:
    fake = FakeOM().on(VERSION, error(502, "Bad gateway"))
    async with om_client(fake, max_retries=2) as om:
        with pytest.raises(OMUnavailable) as caught:
            await om.server_version()
    text = str(caught.value)
    assert "unavailable" in text and "3 time(s)" in text and "502" in text and "Bad gateway" in text
    assert caught.value.status == 502
    assert len(fake.requests) == 3


async def test_a_401_is_an_auth_error_that_never_repeats_the_token() -> None:
    fake = FakeOM().on("/api/v1/tables", error(401, f"Token {TOKEN} has expired"))
    async with om_client(fake) as om:
        with pytest.raises(OMAuthError) as caught:
            _ = [t async for t in om.iter_entities("table")]
    text = str(caught.value)
    assert text.startswith("OpenMetadata rejected the token (401): check OPENMETADATA_TOKEN")
    assert TOKEN not in text and TOKEN not in repr(caught.value) and TOKEN not in (caught.value.message or "")
    assert caught.value.status == 401
    assert len(fake.requests) == 1  # no retry


async def test_400_and_403_are_not_retried() -> None:
    fake = FakeOM().on("/api/v1/charts", error(400, "Invalid field name owner"))
    fake.on(
        "/api/v1/topics",
        error(403, "Principal: CatalogPrincipal{name='bot'} operations [ViewAll] not allowed"),
    )
    async with om_client(fake) as om:
        with pytest.raises(OpenMetadataError, match=r"HTTP 400.*Invalid field name owner"):
            _ = [c async for c in om.iter_entities("chart")]
        with pytest.raises(OMAuthError, match=r"\(403\).*not allowed"):
            _ = [t async for t in om.iter_entities("topic")]
        assert om.stats.requests == 3 and om.stats.retries == 0  # the version read, then one request each


# ---- get by FQN: encoding ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fqn", "raw_path"),
    [
        (f'{SHOP}."dim.api/client"', f"/api/v1/tables/name/{SHOP}.%22dim.api%2Fclient%22"),
        (f"{SHOP}.магазин", f"/api/v1/tables/name/{SHOP}.%D0%BC%D0%B0%D0%B3%D0%B0%D0%B7%D0%B8%D0%BD"),
        (f"{SHOP}.dim(shop)", f"/api/v1/tables/name/{SHOP}.dim%28shop%29"),
    ],
)
async def test_fqns_are_percent_encoded_as_one_path_segment(fqn: str, raw_path: str) -> None:
    fake = FakeOM().on(raw_path, ok(table("x", fullyQualifiedName=fqn)))
    async with om_client(fake) as om:
        entity = await om.get_entity("table", fqn)
    assert entity.fullyQualifiedName == fqn
    assert fake.paths() == [raw_path]


async def test_a_missing_entity_is_not_found_and_get_entities_leaves_it_out() -> None:
    fake = FakeOM().on(f"/api/v1/pipelines/name/{'sample_airflow.present'}", ok({"id": "p1", "name": "present"}))
    async with om_client(fake) as om:
        with pytest.raises(OMNotFound) as caught:
            await om.get_entity("pipeline", "sample_airflow.gone")
        assert caught.value.status == 404
        found = await om.get_entities("pipeline", ["sample_airflow.present", "sample_airflow.gone"])
    assert list(found) == ["sample_airflow.present"]


# ---- lineage -------------------------------------------------------------------------------------------
RAW_ORDER, DIM_PRODUCT = f"{SHOP}.raw_order", f'{SHOP}."dim.product"'
PIPELINE = "sample_airflow.dim_etl"
LINEAGE = {
    "entity": {"id": "u-dim", "type": "table", "name": "dim.product", "fullyQualifiedName": DIM_PRODUCT},
    "nodes": [
        {"id": "u-raw", "type": "table", "name": "raw_order", "fullyQualifiedName": RAW_ORDER},
        {"id": "u-dash", "type": "dashboard", "name": "8", "fullyQualifiedName": "sample_superset.8"},
    ],
    "upstreamEdges": [
        {
            "fromEntity": "u-raw",
            "toEntity": "u-dim",
            "lineageDetails": {
                "sqlQuery": f"select * from {RAW_ORDER}",
                "source": "Manual",
                "pipeline": {"id": "u-pipe", "type": "pipeline", "fullyQualifiedName": PIPELINE},
                "columnsLineage": [
                    {
                        "fromColumns": [f"{RAW_ORDER}.b", f"{RAW_ORDER}.a", f"{RAW_ORDER}.a"],
                        "toColumn": f"{DIM_PRODUCT}.z",
                    },
                    {"fromColumns": [f"{RAW_ORDER}.order_id"], "toColumn": f"{DIM_PRODUCT}.product_id"},
                    {"fromColumns": [f"{RAW_ORDER}.c"], "toColumn": f"{DIM_PRODUCT}.z"},
                    {"fromColumns": [f"{RAW_ORDER}.ignored"]},
                ],
            },
        },
        {"fromEntity": "u-unknown", "toEntity": "u-dim"},
    ],
    "downstreamEdges": [{"fromEntity": "u-dim", "toEntity": "u-dash"}, {"fromEntity": "u-dim"}],
}


async def test_lineage_resolves_uuids_and_column_mappings_and_skips_unresolvable_edges() -> None:
    path = f"/api/v1/lineage/table/name/{SHOP}.%22dim.product%22"
    fake = FakeOM().on(path, ok(LINEAGE))
    async with om_client(fake) as om:
        edges = await om.lineage("table", DIM_PRODUCT, upstream=5, downstream=0)
        malformed = list(om.malformed)
    assert fake.requests[0].url.params["upstreamDepth"] == "3"  # clamped to the server's max
    assert fake.requests[0].url.params["downstreamDepth"] == "0"
    assert edges == [
        LineageEdge(DIM_PRODUCT, "table", "sample_superset.8", "dashboard"),
        LineageEdge(
            RAW_ORDER,
            "table",
            DIM_PRODUCT,
            "table",
            pipeline_fqn=PIPELINE,
            columns=(
                ((f"{RAW_ORDER}.order_id",), f"{DIM_PRODUCT}.product_id"),
                ((f"{RAW_ORDER}.a", f"{RAW_ORDER}.b", f"{RAW_ORDER}.c"), f"{DIM_PRODUCT}.z"),
            ),
            sql=f"select * from {RAW_ORDER}",
            source="Manual",
        ),
    ]
    assert edges[1].from_fqn is sys.intern(RAW_ORDER)
    assert [(m.entity_type, m.fqn_or_id) for m in malformed] == [("lineage", DIM_PRODUCT)] * 2
    assert "u-unknown" in malformed[0].error


async def test_lineage_many_bounds_concurrency_and_treats_a_gone_entity_as_empty() -> None:
    fake = FakeOM()
    fake.delay = 0.01
    items = [("table", f"{SHOP}.t{i}") for i in range(12)]
    for _, fqn in items:
        fake.on(
            f"/api/v1/lineage/table/name/{fqn}",
            ok({**LINEAGE, "upstreamEdges": LINEAGE["upstreamEdges"][:1]}),
        )
    fake.on(f"/api/v1/lineage/table/name/{SHOP}.t3", error(404, "table instance for t3 not found"))
    fake.on(f"/api/v1/lineage/table/name/{SHOP}.t5", error(400, "Invalid entity type"))
    fake.on(f"/api/v1/lineage/table/name/{SHOP}.t7", ok({"nodes": []}))  # unusable, not "no edges"
    done: list[int] = []
    async with om_client(fake, concurrency=3) as om:
        by_fqn, failed = await om.lineage_many(items, progress=done.append)
    assert fake.max_in_flight <= 3
    assert by_fqn[f"{SHOP}.t3"] == []
    assert sorted(f.fqn for f in failed) == [f"{SHOP}.t5", f"{SHOP}.t7"]
    assert f"{SHOP}.t5" not in by_fqn and f"{SHOP}.t7" not in by_fqn
    assert len(by_fqn) == 10 and sorted(done) == list(range(1, 13))
    edge_objects = {id(edges[0]) for fqn, edges in by_fqn.items() if edges}
    assert len(edge_objects) == 1  # the same edge seen from many entities is one object in memory


async def test_lineage_many_stops_on_an_auth_error() -> None:
    fake = FakeOM().on(f"/api/v1/lineage/table/name/{SHOP}.t0", error(401, "expired"))
    async with om_client(fake) as om:
        with pytest.raises(OMAuthError):
            await om.lineage_many([("table", f"{SHOP}.t0"), ("table", f"{SHOP}.t1")])


# ---- data quality --------------------------------------------------------------------------------------
async def test_test_cases_are_listed_with_their_fields_and_malformed_ones_skipped() -> None:
    case = {"id": "c1", "name": "t", "entityLink": f"<#E::table::{SHOP}.dim_address>", "incidentId": "s1"}
    fake = FakeOM().on("/api/v1/dataQuality/testCases", ok({"data": [case, {"id": "c2", "name": "bad"}]}))
    async with om_client(fake) as om:
        cases = [c async for c in om.iter_test_cases()]
        assert [m.fqn_or_id for m in om.malformed] == ["c2"]
    assert [c.incidentId for c in cases] == ["s1"]
    # the latest result is inline only when asked for
    assert fake.requests[-1].url.params["fields"] == "testDefinition,testSuite,testCaseResult,incidentId,owners"


async def test_incident_statuses_page_with_the_servers_opaque_cursor() -> None:
    rows = [{"stateId": f"s{i}", "testCaseResolutionStatusType": "New", "timestamp": i} for i in range(5)]

    def page(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("offset")
        if cursor is not None and not cursor.startswith("c"):
            return error(400, f"Invalid cursor {cursor}")  # a real server refuses a plain number
        offset, limit = int((cursor or "c0")[1:]), int(request.url.params["limit"])
        paging: dict[str, Any] = {"total": 5}
        if offset + limit < 5:
            paging["after"] = f"c{offset + limit}"
        return ok({"data": rows[offset : offset + limit], "paging": paging})

    fake = FakeOM().on("/api/v1/dataQuality/testCases/testCaseIncidentStatus", page)
    async with om_client(fake, page_size=2) as om:
        statuses = await om.incident_statuses(100, 200)
    assert [s.stateId for s in statuses] == ["s0", "s1", "s2", "s3", "s4"]
    listed = [r for r in fake.requests if r.url.path.endswith("testCaseIncidentStatus")]
    assert [r.url.params.get("offset") for r in listed] == [None, "c2", "c4"]
    assert listed[0].url.params["latest"] == "true"
    assert (listed[0].url.params["startTs"], listed[0].url.params["endTs"]) == ("100", "200")


async def test_test_case_results_are_read_by_encoded_fqn() -> None:
    fqn = f"{SHOP}.dim_address.table_column_count_equals"
    result = {"timestamp": 1700000000000, "testCaseStatus": "Failed", "result": "Found 8 columns"}
    fake = FakeOM().on(f"/api/v1/dataQuality/testCases/testCaseResults/{fqn}", ok({"data": [result], "paging": {}}))
    async with om_client(fake) as om:
        results = await om.test_case_results(fqn, 1, 2)
    assert [r.testCaseStatus for r in results] == ["Failed"]


# ---- change events -------------------------------------------------------------------------------------
def event(event_id: str, ts: int, entity: Any = None) -> dict[str, Any]:
    head = {"id": event_id, "eventType": "entityUpdated", "entityType": "table", "entityId": "u"}
    return {**head, "timestamp": ts, "entity": entity}


async def test_events_name_every_kind_and_come_back_unique_and_ordered() -> None:
    data = [event("e2", 20), event("e1", 10), event("e2", 20), event("e0", 10), {"id": "broken"}]
    fake = FakeOM().on("/api/v1/events", ok({"data": data, "paging": {"total": 5}}))
    async with om_client(fake) as om:
        events = await om.events_since(10, ("table", "testCase"), exclude_ids={"e0"})
        assert [m.entity_type for m in om.malformed] == ["changeEvent"]
    assert [e.id for e in events] == ["e1", "e2"]
    params = fake.requests[0].url.params
    for kind in ("entityCreated", "entityUpdated", "entityRestored"):
        assert params[kind] == "table,testCase"
    # a cascade delete sends one event, for the container only: those are asked for too
    assert params["entityDeleted"].split(",")[:3] == ["table", "testCase", "databaseService"]
    assert "databaseSchema" in params["entityDeleted"].split(",")
    assert params["timestamp"] == "10"


def test_event_entity_parses_the_json_string_once_or_twice() -> None:
    entity = {"id": "u", "name": "dim.product"}
    once = json.dumps(entity)
    assert event_entity(ChangeEvent.model_validate(event("e", 1, once))) == entity
    assert event_entity(event("e", 1, json.dumps(once))) == entity
    assert event_entity(event("e", 1, entity)) == entity
    assert event_entity(event("e", 1, "{not json")) is None
    assert event_entity(event("e", 1, None)) is None
    assert event_entity(event("e", 1, "[1, 2]")) is None
