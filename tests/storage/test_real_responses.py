"""Contract tests on real captured OpenMetadata answers: the client reads them, and the simulator answers alike.

The captures (`shared/fixtures/openmetadata/real-responses/`, see its SOURCE.md) are read where they lie, never
copied. Part one serves each capture to the real client for the request it answers; part two sends the client's
own requests to the simulator and compares the two answers' shapes key by key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import reduce
from typing import Any

import httpx
import pytest

from storage.domain import dna
from storage.openmetadata.client import OpenMetadataClient, event_entity
from storage.openmetadata.models import ChangeEvent, OMModel
from storage.sync.events import event_targets
from tests.conftest import SCHEMA_DIR, SHARED
from tests.fakes.omserver import OMServer

pytestmark = pytest.mark.anyio

REAL = SHARED / "fixtures" / "openmetadata" / "real-responses"
VERSION = "1.13.6"  # what the fake answers on /v1/system/version (no capture is of a 1.5–2.x list or lineage call)
SHOP = "sample_data.ecommerce_db.shopify"
FACT_SESSION = f"{SHOP}.fact_session"
DIM_ADDRESS = f"{SHOP}.dim_address"
ZIP_TEST = f"{DIM_ADDRESS}.zip.column_values_to_be_between"
DEMO_ORDERS = "warehouse.shop.analytics.orders"
Route = Callable[[httpx.Request], Any]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def real(name: str) -> Any:
    """One captured answer, read from the shared fixtures."""
    return json.loads((REAL / name).read_text("utf-8"))


# ---- part one: the client on the captures ----------------------------------------------------------------
class CapturedOM:
    """A fake OpenMetadata serving captured bodies per path (raw, percent-encoded); records every request."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().split("?")[0]
        if path == "/api/v1/system/version":
            return httpx.Response(200, json={"version": VERSION, "revision": "captured"})
        self.requests.append(request)
        route = self.routes.get(path)
        if route is None:
            return httpx.Response(404, json={"code": 404, "message": f"no capture for {path}"})
        body = route(request)
        if isinstance(body, httpx.Response):
            return body
        return httpx.Response(200, json=body)

    def client(self) -> OpenMetadataClient:
        return OpenMetadataClient("http://om.test:8585", "token", transport=httpx.MockTransport(self))


def asked(request: httpx.Request, field: str) -> bool:
    return field in request.url.params.get("fields", "").split(",")


def cases_page(case: dict[str, Any]) -> Route:
    """The list answer around one captured test case; its result is inline only when asked for (doc §0)."""

    def answer(request: httpx.Request) -> dict[str, Any]:
        shown = asked(request, "testCaseResult")
        item = {key: value for key, value in case.items() if shown or key != "testCaseResult"}
        return {"data": [item], "paging": {"total": 1}}

    return answer


async def test_lineage_by_name_resolves_every_edge_with_its_column_mappings() -> None:
    fake = CapturedOM({f"/api/v1/lineage/table/name/{FACT_SESSION}": lambda _: real("lineage_by_name.json")})
    async with fake.client() as om:
        edges = await om.lineage("table", FACT_SESSION)
        assert om.malformed == []
    assert fake.requests[0].url.params["upstreamDepth"] == "1"
    assert fake.requests[0].url.params["downstreamDepth"] == "1"
    ends = [(e.from_type, e.from_fqn, e.to_type, e.to_fqn) for e in edges]
    assert ends == [
        ("table", "mysql.default.openmetadata_db.dashboard_service_entity", "table", DIM_ADDRESS),
        ("table", "mysql.default.openmetadata_db.storage_service_entity", "table", FACT_SESSION),
        ("pipeline", "sample_airflow.dim_address_etl", "table", DIM_ADDRESS),
        ("pipeline", "sample_airflow.presto_etl", "table", "mysql.default.openmetadata_db.storage_service_entity"),
        ("table", f'{SHOP}."dim.product"', "table", DIM_ADDRESS),
        ("table", DIM_ADDRESS, "table", f"{SHOP}.dim_customer"),
        ("table", f"{SHOP}.dim_customer", "table", FACT_SESSION),
        ("table", FACT_SESSION, "table", "mysql.default.openmetadata_db.storage_service_entity"),
    ]
    columns = {(e.from_fqn, e.to_fqn): e.columns for e in edges if e.columns}
    assert columns == {
        ("mysql.default.openmetadata_db.dashboard_service_entity", DIM_ADDRESS): (
            (("mysql.default.openmetadata_db.dashboard_service_entity.id",), f"{DIM_ADDRESS}.shop_id"),
        ),
        (f'{SHOP}."dim.product"', DIM_ADDRESS): (((f'{SHOP}."dim.product".shop_id',), f"{DIM_ADDRESS}.first_name"),),
        (DIM_ADDRESS, f"{SHOP}.dim_customer"): (
            ((f"{DIM_ADDRESS}.address_id",), f"{SHOP}.dim_customer.total_order_value"),
        ),
        (f"{SHOP}.dim_customer", FACT_SESSION): (
            ((f"{SHOP}.dim_customer.customer_id",), f"{FACT_SESSION}.derived_session_token"),
        ),
    }


async def test_a_test_case_keeps_its_latest_result_status_and_text() -> None:
    fake = CapturedOM({"/api/v1/dataQuality/testCases": cases_page(real("testCase_with_testCaseResult.json"))})
    async with fake.client() as om:
        cases = [case async for case in om.iter_test_cases()]
        assert om.malformed == []
    assert asked(fake.requests[0], "testCaseResult")  # without it a real server leaves the result out
    (case,) = cases
    assert case.fullyQualifiedName == ZIP_TEST
    assert case.testSuite is not None and case.testSuite.fullyQualifiedName == f"{DIM_ADDRESS}.testSuite"
    assert case.testCaseResult is not None and case.testCaseResult.timestamp == 1709608151823
    (test,) = dna.quality_gene(cases)["tests"]
    assert test["column"] == "zip" and test["definition"] == "columnValuesToBeBetween"
    assert test["status"] == "Aborted"
    assert test["result"] == (
        "We expect `min` & `max` to be informed on the profiler for ColumnValuesToBeBetween but got min=None, max=None."
    )


async def test_an_old_test_case_list_with_results_in_seconds_and_no_suite_parses_whole() -> None:
    page = real("testCaseList_TableData_mock.json")
    fake = CapturedOM({"/api/v1/dataQuality/testCases": cases_page(page["data"][0])})
    async with fake.client() as om:
        cases = [case async for case in om.iter_test_cases()]
        assert om.malformed == []
    (case,) = cases
    assert case.testSuite is None
    assert case.testCaseResult is not None
    assert case.testCaseResult.timestamp == 1661416859 * 1000  # OM 0.12 stamped results in seconds
    (test,) = dna.quality_gene(cases)["tests"]
    assert (test["column"], test["status"]) == ("shop_id", "Success")
    assert test["result"] == "Found max=65 vs. the expected min=50, max=100."


async def test_incident_statuses_are_read_with_a_cursor_whose_first_request_has_no_offset() -> None:
    def answer(request: httpx.Request) -> Any:
        if "offset" in request.url.params:  # a real server decodes it as a base64 cursor; the capture is page one
            return httpx.Response(400, json={"code": 400, "message": "offset is not a cursor of this list"})
        return real("testCaseIncidentStatus_list.json")

    fake = CapturedOM({"/api/v1/dataQuality/testCases/testCaseIncidentStatus": answer})
    async with fake.client() as om:
        statuses = await om.incident_statuses(1709600000000, 1709700000000)
        assert om.malformed == []
    (request,) = fake.requests
    assert "offset" not in request.url.params
    assert request.url.params["startTs"] == "1709600000000" and request.url.params["endTs"] == "1709700000000"
    assert [s.testCaseResolutionStatusType for s in statuses] == ["Ack", "New"]
    assert {s.stateId for s in statuses} == {"65f7a1d2-ee28-4b43-b504-4be90c689f4d"}
    assert {s.testCaseReference.fullyQualifiedName for s in statuses if s.testCaseReference} == {ZIP_TEST}
    assert [s.updatedBy.name for s in statuses if s.updatedBy] == ["admin", "admin"]


async def test_old_change_events_without_an_id_get_a_stable_one_and_name_their_table() -> None:
    captured = [real("changeEvent_followers_deleted.json"), real("changeEvent_followers_added.json")]
    fake = CapturedOM({"/api/v1/events": lambda _: {"data": captured, "paging": {"total": 2}}})
    async with fake.client() as om:
        events = await om.events_since(1649137233459, ("table",))
        again = await om.events_since(1649137233459, ("table",))
        rest = await om.events_since(1649137233459, ("table",), exclude_ids={events[0].id})
        assert om.malformed == []
    assert [e.timestamp for e in events] == [1649137233459, 1649144698696]  # oldest first
    assert len({e.id for e in events}) == 2 and all(e.id for e in events)
    assert [e.id for e in again] == [e.id for e in events]  # a re-read de-duplicates
    assert [e.id for e in rest] == [events[1].id]
    for ev in events:
        assert event_targets(ev) == [("table", "bigquery_gcp:shopify:dim_address")]
    added, deleted = events[0].changeDescription, events[1].changeDescription
    assert added is not None and added.fieldsAdded[0].name == "followers"
    assert deleted is not None and deleted.fieldsDeleted[0].oldValue[0]["name"] == "aaron_johnson0"


def test_a_failed_event_record_holds_a_change_event_whose_string_entity_decodes() -> None:
    record = real("eventSubscription_failedEvent_typedEvent.json")
    (failed,) = record["data"]
    event = ChangeEvent.model_validate(failed["changeEvent"])
    assert (event.id, event.eventType, event.entityType) == (
        "6e56e9c8-bf9f-425b-8bcb-faa32c875bd8",
        "entityUpdated",
        "table",
    )
    assert event_entity(event) == {
        "id": "ec9c9ae5-ed82-4c4e-b2b1-a603940cbe0a",
        "name": "Glue",
        "fullyQualifiedName": "Glue",
        "serviceType": "Glue",
        "deleted": False,
    }
    assert event.changeDescription is not None
    (owners,) = event.changeDescription.fieldsAdded
    assert owners.name == "owners" and json.loads(owners.newValue)[0]["name"] == "aaron_johnson0"


class Tag(OMModel):
    """As much of a tag as a cursor test needs (the client has no tags call)."""

    name: str
    fullyQualifiedName: str


async def test_cursor_paging_sends_paging_after_back_unchanged() -> None:
    cursor = real("tags_list_page_paging_after.json")["paging"]["after"]

    def answer(request: httpx.Request) -> dict[str, Any]:
        if "after" not in request.url.params:
            return real("tags_list_page_paging_after.json")
        return {"data": [], "paging": {"before": cursor, "total": 4}}

    fake = CapturedOM({"/api/v1/tags": answer})
    async with fake.client() as om:
        tags = [tag.fullyQualifiedName async for tag in om._iter_cursor("v1/tags", {"limit": 2}, Tag, "tag")]
        assert om.malformed == []
    assert tags == ["PersonalData.Personal", "PersonalData.SpecialCategory"]
    first, second = fake.requests
    assert "after" not in first.url.params
    assert second.url.params["after"] == cursor == "UGVyc29uYWxEYXRhLnRlc3R0YWc4OQ=="
    assert b"after=UGVyc29uYWxEYXRhLnRlc3R0YWc4OQ%3D%3D" in second.url.query  # encoded, not altered


def test_an_alert_has_what_a_webhook_subscription_reader_would_need() -> None:
    # The bot reads no EventSubscription (its webhook only receives events; tests create one through the
    # simulator), so this pins the keys such a reader would use rather than running bot code.
    alert = real("eventSubscription_alert.json")
    assert isinstance(alert["id"], str) and alert["name"] == "Test Alert"
    assert alert["alertType"] == "Notification"
    assert alert["filteringRules"]["resources"] == ["table"]
    kinds = [(d["category"], d["type"], d["enabled"]) for d in alert["destinations"]]
    assert kinds == [("Admins", "Email", True), ("Teams", "Slack", True), ("External", "GChat", True)]
    assert all(isinstance(d["config"], dict) and isinstance(d["id"], str) for d in alert["destinations"])
    assert alert["destinations"][2]["config"]["endpoint"] == "https://test.slack.webhook.com"


# ---- part two: the simulator answers the client's own requests with the captured shapes --------------------
Shape = dict[str, Any] | list[Any] | str


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


def shape(value: Any) -> Shape:
    """Key → JSON type, recursively; a list by the merged shape of its items (`[]` when empty)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [shape(item) for item in value]
        return [reduce(merge, items)] if items else []
    return json_type(value)


def kind(s: Shape) -> str:
    return "object" if isinstance(s, dict) else "array" if isinstance(s, list) else s


def merge(a: Shape, b: Shape) -> Shape:
    """The shape of answers that may look like `a` or `b` (keys united; differing types as `t1|t2`)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {key: merge(a[key], b[key]) if key in a and key in b else a.get(key, b.get(key)) for key in a | b}
    if isinstance(a, list) and isinstance(b, list):
        return [merge(a[0], b[0])] if a and b else a or b
    if a == b:
        return a
    return "|".join(sorted(set(kind(a).split("|")) | set(kind(b).split("|"))))


def shape_of(answers: Iterable[Any]) -> Shape:
    return reduce(merge, (shape(a) for a in answers))


def extra_in(sim: Shape, captured: Shape, path: str = "") -> dict[str, str]:
    """Where the simulator sends a key the capture lacks, or a JSON type the capture never has there."""
    out: dict[str, str] = {}
    if isinstance(sim, dict) and isinstance(captured, dict):
        for key, value in sim.items():
            where = f"{path}.{key}" if path else key
            if key not in captured:
                out[where] = "only the simulator sends it"
            else:
                out |= extra_in(value, captured[key], where)
    elif isinstance(sim, list) and isinstance(captured, list):
        if sim and not captured:
            out[path + "[]"] = "the capture's list is empty"
        elif sim:
            out |= extra_in(sim[0], captured[0], path + "[]")
    elif not set(kind(sim).split("|")) <= set(kind(captured).split("|")):
        out[path] = f"simulator {kind(sim)}, capture {kind(captured)}"
    return out


def has(s: Shape, path: str) -> bool:
    """Whether `a.b[].c` exists in a shape."""
    for part in path.split("."):
        key, into_list = (part[:-2], True) if part.endswith("[]") else (part, False)
        if not isinstance(s, dict) or key not in s:
            return False
        s = s[key]
        if into_list:
            if not isinstance(s, list) or not s:
                return False
            s = s[0]
    return True


def assert_same_shape(sim: Shape, captured: Shape, needed: Iterable[str], allowed: dict[str, str]) -> None:
    """The simulator sends nothing the capture lacks (but the `allowed` differences, each with its reason), and
    everything the client needs from the capture."""
    needed = list(needed)
    assert [p for p in needed if not has(captured, p)] == [], "the capture lacks a key the client needs"
    assert [p for p in needed if not has(sim, p)] == [], "the simulator leaves out a key the client needs"
    unexpected = {p: why for p, why in extra_in(sim, captured).items() if p not in allowed}
    assert unexpected == {}, "the simulator's answer differs from the real one"


class Recording(httpx.AsyncBaseTransport):
    """A real HTTP transport that keeps every (request, decoded JSON answer) the client received."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.answers: list[tuple[httpx.Request, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()  # cached: the client reads the same bytes afterwards
        self.answers.append((request, json.loads(body) if body else None))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def bodies(self, path: str) -> list[Any]:
        return [body for request, body in self.answers if request.url.path == path]


def sim_client(om: OMServer) -> tuple[OpenMetadataClient, Recording]:
    recording = Recording()
    return OpenMetadataClient(om.url, om.token, transport=recording), recording


# Keys of the captured lineage the client reads; a capture from 0.13–1.2 against a 1.x simulator.
LINEAGE_NEEDS = [
    "entity.id",
    "entity.type",
    "entity.fullyQualifiedName",
    "nodes[].id",
    "nodes[].type",
    "nodes[].fullyQualifiedName",
    "upstreamEdges[].fromEntity",
    "upstreamEdges[].toEntity",
    "upstreamEdges[].lineageDetails.columnsLineage[].fromColumns",
    "upstreamEdges[].lineageDetails.columnsLineage[].toColumn",
    "downstreamEdges[].fromEntity",
    "downstreamEdges[].toEntity",
]
LINEAGE_NEWER = {
    "upstreamEdges[].lineageDetails.pipeline": "the 0.13–1.2 capture links pipelines as nodes with edges of their "
    "own; 1.x servers name an edge's pipeline in lineageDetails.pipeline (an EntityReference)",
    "upstreamEdges[].lineageDetails.source": "lineageDetails.source (Manual, QueryLineage, …) is in every model from "
    "1.4.8 on and absent from the 0.13–1.2 capture",
    "downstreamEdges[].lineageDetails": "the capture's only downstream edge carries no details; the upstream "
    "edges show their shape, and the simulator's downstream details are checked against those below",
}


async def test_the_simulators_lineage_has_the_captured_shape(om_demo: OMServer) -> None:
    client, recording = sim_client(om_demo)
    async with client as om:
        edges = await om.lineage("table", DEMO_ORDERS)
        assert om.malformed == [] and edges
    (answer,) = recording.bodies(f"/api/v1/lineage/table/name/{DEMO_ORDERS}")
    captured = shape(real("lineage_by_name.json"))
    sim = shape(answer)
    assert_same_shape(sim, captured, LINEAGE_NEEDS, LINEAGE_NEWER)
    assert isinstance(sim, dict) and isinstance(captured, dict)
    # downstream edges have the same shape as upstream ones (both are `Edge`)
    sim_down = {"upstreamEdges": sim["downstreamEdges"]}
    assert_same_shape(sim_down, {"upstreamEdges": captured["upstreamEdges"]}, [], LINEAGE_NEWER)


TEST_CASE_NEEDS = [
    "id",
    "name",
    "fullyQualifiedName",
    "entityLink",
    "testDefinition.name",
    "testSuite.fullyQualifiedName",
    "testCaseResult.timestamp",
    "testCaseResult.testCaseStatus",
    "testCaseResult.result",
]
# What a 1.13 answer to the client's request adds to the 1.3 capture (versions: the generated models of the
# openmetadata-ingestion wheels, 1.5.15.2 against 1.6.13.2).
TEST_CASE_NEWER = {
    "testCaseStatus": "a top-level test case property from 1.6 (doc §0)",
    "testCaseResult.id": "results are time-series rows with their own id from 1.6",
    "testCaseResult.testCaseFQN": "results name their test case from 1.6",
    "testCaseResult.incidentId": "a failed result carries its incident's id; the capture's result was Aborted",
    "owners": "asked for by the client (fields=owners); the capture's request did not ask",
    "incidentId": "asked for by the client (fields=incidentId); the capture's Aborted case had no incident",
}


async def test_the_simulators_test_cases_have_the_captured_shape(om_sample: OMServer) -> None:
    failing = f"{DIM_ADDRESS}.last_name.column_values_to_match_regex"  # so that the page shows an open incident
    om_sample.admin("POST", f"/admin/tests/{om_sample.seg(failing)}/result", {"status": "Failed", "result": "3 rows"})
    client, recording = sim_client(om_sample)
    async with client as om:
        cases = [case async for case in om.iter_test_cases(DIM_ADDRESS)]
        assert om.malformed == []
    assert ZIP_TEST in {c.fullyQualifiedName for c in cases}
    (page,) = recording.bodies("/api/v1/dataQuality/testCases")
    zip_case = next(c for c in page["data"] if c["fullyQualifiedName"] == ZIP_TEST)
    assert_same_shape(
        shape(zip_case), shape(real("testCase_with_testCaseResult.json")), TEST_CASE_NEEDS, TEST_CASE_NEWER
    )
    # the whole page against the 0.12 list capture: the same item keys, plus what 0.12 did not have yet
    old = {
        **{f"data[].{path}": why for path, why in TEST_CASE_NEWER.items()},
        "data[].testSuite": "asked for by the client (fields=testSuite); the 0.12 list request did not ask",
    }
    needs = ["data[].id", "data[].entityLink", "data[].testCaseResult.testCaseStatus", "paging.total"]
    assert_same_shape(shape(page), shape(real("testCaseList_TableData_mock.json")), needs, old)


INCIDENT_NEEDS = [
    "data[].id",
    "data[].stateId",
    "data[].timestamp",
    "data[].testCaseResolutionStatusType",
    "data[].testCaseReference.fullyQualifiedName",
    "data[].updatedBy.name",
    "paging.total",
]


async def test_the_simulators_incident_statuses_have_the_captured_shape(om_sample: OMServer) -> None:
    client, recording = sim_client(om_sample)
    async with client as om:
        statuses = await om.incident_statuses(0, 4_102_444_800_000)  # up to 2100: every status the sample has
        assert om.malformed == [] and statuses
    pages = recording.bodies("/api/v1/dataQuality/testCases/testCaseIncidentStatus")
    first = next(r for r, _ in recording.answers if r.url.path.endswith("/testCaseIncidentStatus"))
    assert "offset" not in first.url.params
    # compare rows in the capture's states (New, Ack): details exist only for Assigned and Resolved rows
    rows = [row for page in pages for row in page["data"] if row["testCaseResolutionStatusType"] in ("New", "Ack")]
    assert rows, "the sample has no New or Ack incident status to compare"
    sim = merge(shape({"data": rows}), shape_of({"paging": page["paging"]} for page in pages))
    assert_same_shape(sim, shape(real("testCaseIncidentStatus_list.json")), INCIDENT_NEEDS, {})


EVENT_NEEDS = [
    "id",
    "eventType",
    "entityType",
    "entityId",
    "entityFullyQualifiedName",
    "timestamp",
    "previousVersion",
    "currentVersion",
    "userName",
    "entity",
    "changeDescription.fieldsAdded[].name",
    "changeDescription.fieldsAdded[].newValue",
    "changeDescription.fieldsDeleted[].name",
    "changeDescription.fieldsDeleted[].oldValue",
]
EVENT_VERSIONS = {
    "changeDescription.fieldsDeleted[].oldValue": "0.9 wrote change values as JSON (the deleted-followers capture "
    "has a list); 1.x writes them as JSON-encoded strings, as the 1.5 failed-event capture's newValue shows",
}


async def test_the_simulators_change_events_have_the_captured_shape(om_sample: OMServer) -> None:
    owners = f"/admin/entities/table/{om_sample.seg(DIM_ADDRESS)}/owners"
    since = om_sample.admin("PUT", owners, {"owners": ["aaron_johnson0"]})["updatedAt"]
    om_sample.admin("PUT", owners, {"owners": []})
    client, recording = sim_client(om_sample)
    async with client as om:
        events = await om.events_since(since, ("table",))
        assert om.malformed == []
    assert [event_targets(e) for e in events] == [[("table", DIM_ADDRESS)]] * 2
    (answer,) = recording.bodies("/api/v1/events")
    sim = shape_of(answer["data"])
    # the 0.9 events (no id, values as JSON) and a 1.5 event (id, string entity) together make one real shape
    failed = real("eventSubscription_failedEvent_typedEvent.json")["data"][0]["changeEvent"]
    captured = shape_of([real("changeEvent_followers_added.json"), real("changeEvent_followers_deleted.json"), failed])
    assert_same_shape(sim, captured, EVENT_NEEDS, EVENT_VERSIONS)
    assert_same_shape(shape(answer["paging"]), {"total": "integer"}, ["total"], {})


async def test_the_simulators_list_paging_has_the_captured_cursor_shape(om_sample: OMServer) -> None:
    # the simulator serves no /v1/tags: the cursor shape is compared on the tables list the client pages
    client, recording = sim_client(om_sample)
    client.page_size = 2
    async with client as om:
        names = [t.name async for t in om.iter_entities("table")]
        assert om.malformed == [] and len(names) > 2
    first, second = recording.bodies("/api/v1/tables")[:2]
    captured = shape(real("tags_list_page_paging_after.json")["paging"])
    assert_same_shape(shape(first["paging"]), captured, ["after", "total"], {})
    before = {"before": "a later page names the cursor back; the capture is a first page"}
    assert_same_shape(shape(second["paging"]), captured, ["total"], before)
    requests = [r for r, _ in recording.answers if r.url.path == "/api/v1/tables"]
    assert requests[1].url.params["after"] == first["paging"]["after"]


def eventsubscription_properties() -> set[str]:
    schema = json.loads((SCHEMA_DIR / "events" / "eventSubscription.json").read_text("utf-8"))
    return set(schema["properties"])


def test_the_simulators_subscription_has_the_captured_alert_shape(om_sample: OMServer) -> None:
    om_sample.subscribe_webhook("http://127.0.0.1:9", "s3cret", name="dnabot")
    sub = om_sample.get("/api/v1/events/subscriptions/name/dnabot")
    # the alert capture is a UI mock trimmed to what the screen shows; these entity properties it leaves out
    trimmed = {
        key: "an EventSubscription property (events/eventSubscription.json) the UI mock left out"
        for key in (
            "trigger",
            "enabled",
            "batchSize",
            "retries",
            "pollInterval",
            "updatedAt",
            "updatedBy",
            "version",
            "href",
        )
    }
    assert set(trimmed) <= eventsubscription_properties()
    allowed = {
        **trimmed,
        "destinations[].config.authType": "1.13+ keep a webhook's secret in config.authType (1.5–1.12: secretKey)",
    }
    needs = [
        "id",
        "name",
        "alertType",
        "filteringRules.resources",
        "destinations[].category",
        "destinations[].type",
        "destinations[].enabled",
        "destinations[].config.endpoint",
    ]
    assert_same_shape(shape(sub), shape(real("eventSubscription_alert.json")), needs, allowed)
