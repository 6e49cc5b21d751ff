"""The simulator's events per OpenMetadata version: 2.0's lineage events, the audit log, cascade deletes.

Runs once per row of the version table (`PROFILE_VERSIONS`). A lineage change is pushed to `all` subscriptions
and written to the audit log on 2.0 only; the audit log exists from 1.12; a recursive delete is one event.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from simulator import run_in_thread
from storage.openmetadata import fqn as fqnlib
from storage.openmetadata.versions import profile_for
from tests.fakes.omserver import PROFILE_VERSIONS, OMServer
from tests.fakes.schemas import validate_event

SHOP = "sample_data.ecommerce_db.shopify"
DIM_ADDRESS = f"{SHOP}.dim_address"
RAW_ORDER, FACT_SALE = f"{SHOP}.raw_order", f"{SHOP}.fact_sale"
AUDIT = "/api/v1/audit/logs"


@pytest.fixture(params=PROFILE_VERSIONS)
def om_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Inbox:
    """A loopback webhook receiver per path (`/all`, `/tables`), recording each delivered event."""

    url: str = ""
    got: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, path: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.got.get(path, [])) < count:
            assert time.monotonic() < deadline, f"{len(self.got.get(path, []))} of {count} events reached {path}"
            time.sleep(0.01)
        return self.got[path]


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox()

    async def hook(request: Request) -> Response:
        event = json.loads(await request.body())
        with box.lock:
            box.got.setdefault(request.url.path, []).append(event)
        return Response(status_code=200)

    handle = run_in_thread(Starlette(routes=[Route("/{hook}", hook, methods=["POST"])]))
    box.url = handle.url
    yield box
    handle.stop()


def subscribe(om: OMServer, inbox: Inbox, name: str, resources: list[str]) -> None:
    destination = {"category": "External", "type": "Webhook", "config": {"endpoint": f"{inbox.url}/{name}"}}
    body = {"name": name, "alertType": "Notification", "resources": resources, "destinations": [destination]}
    om.request("POST", "/api/v1/events/subscriptions", body)


def edge(om: OMServer, sql: str) -> dict[str, Any]:
    ends = [om.get(f"/api/v1/tables/name/{fqnlib.url_segment(f)}") for f in (RAW_ORDER, FACT_SALE)]
    refs = [{"id": t["id"], "type": "table"} for t in ends]
    return {"edge": {"fromEntity": refs[0], "toEntity": refs[1], "lineageDetails": {"sqlQuery": sql}}}


def since(om: OMServer) -> int:
    return om.catalog.tick()


# --- lineage events (2.0) ----------------------------------------------------------------------------------
def test_lineage_changes_reach_all_subscriptions_and_the_audit_log_only_on_2_0(
    om_sample: OMServer, inbox: Inbox
) -> None:
    profile = profile_for(om_sample.version)
    subscribe(om_sample, inbox, "all", ["all"])
    subscribe(om_sample, inbox, "tables", ["table"])
    start = since(om_sample)
    for sql in ("select 1", "select 2", "select 2"):  # added, updated, then a re-PUT that changes nothing
        assert om_sample.http.put("/api/v1/lineage", json=edge(om_sample, sql)).status_code == 200
    path = f"/api/v1/lineage/table/name/{fqnlib.url_segment(RAW_ORDER)}/table/name/{fqnlib.url_segment(FACT_SALE)}"
    assert om_sample.http.delete(path).status_code == 200
    # a table change afterwards: each destination delivers in order, so it arrives after any lineage event
    om_sample.admin("PUT", f"/admin/entities/table/{fqnlib.url_segment(DIM_ADDRESS)}/description", {"description": "x"})
    lineage_kinds = (
        ["entityLineageAdded", "entityLineageUpdated", "entityLineageDeleted"] if profile.lineage_events else []
    )
    got = inbox.wait_for("/all", len(lineage_kinds) + 1)
    assert [e["eventType"] for e in got] == [*lineage_kinds, "entityUpdated"]
    assert [e["eventType"] for e in inbox.wait_for("/tables", 1)] == ["entityUpdated"]  # lineage: `all` only
    expected_fqn = f"{RAW_ORDER}--upstream-->{FACT_SALE}"
    for event in got[:-1]:
        validate_event(event, om_sample.version)
        assert (event["entityType"], event["entityFullyQualifiedName"]) == ("lineage", expected_fqn)
        assert event["entity"]["fromEntity"]["fullyQualifiedName"] == RAW_ORDER
        assert event["entity"]["toEntity"]["fullyQualifiedName"] == FACT_SALE
    if profile.lineage_events:
        assert got[1]["entity"]["lineageDetails"]["sqlQuery"] == "select 2"
        assert got[2]["entity"]["lineageDetails"]["createdAt"] == got[0]["entity"]["lineageDetails"]["createdAt"]
    polled = om_sample.get("/api/v1/events", entityCreated="*", entityUpdated="*", entityDeleted="*", timestamp=start)
    assert [e["entityType"] for e in polled["data"]] == ["table"]  # never in /v1/events
    audit = om_sample.http.get(AUDIT, params={"entityType": "lineage", "startTs": start, "limit": 50})
    if profile.release < (1, 12):
        assert audit.status_code == 404
        return
    rows = audit.json()["data"]
    assert [r["eventType"] for r in rows] == list(reversed(lineage_kinds))  # newest first
    added = om_sample.get(AUDIT, entityType="lineage", eventType="entityLineageAdded", startTs=start)["data"]
    assert [r["entityFQN"] for r in added] == ([expected_fqn] if profile.lineage_events else [])
    if added:
        assert added[0]["changeEvent"]["entity"]["toEntity"]["id"] == got[0]["entity"]["toEntity"]["id"]


def test_the_audit_log_pages_newest_first_with_a_keyset_cursor(om_sample: OMServer) -> None:
    profile = profile_for(om_sample.version)
    start = since(om_sample)
    path = f"/admin/entities/table/{fqnlib.url_segment(DIM_ADDRESS)}/description"
    stamps = [om_sample.admin("PUT", path, {"description": f"v{i}"})["updatedAt"] for i in range(5)]
    first = om_sample.http.get(AUDIT, params={"entityType": "table", "startTs": start, "limit": 2})
    if profile.release < (1, 12):
        assert first.status_code == 404
        return
    seen: list[int] = []
    params: dict[str, Any] = {"entityType": "table", "startTs": start, "limit": 2}
    while True:
        page = om_sample.get(AUDIT, **params)
        assert page["paging"]["total"] == 5
        seen += [r["eventTs"] for r in page["data"]]
        if "after" not in page["paging"]:
            break
        params["after"] = page["paging"]["after"]
    assert seen == sorted(stamps, reverse=True)
    entry = om_sample.get(AUDIT, entityType="table", startTs=start, limit=1)["data"][0]
    assert (entry["entityFQN"], entry["serviceName"], entry["actorType"]) == (DIM_ADDRESS, "sample_data", "USER")
    assert isinstance(entry["changeEvent"]["entity"], str)  # an entity event keeps its JSON-string entity
    assert om_sample.http.get(AUDIT, params={"limit": 201}).status_code == 400


# --- cascade deletes ---------------------------------------------------------------------------------------
def test_a_recursive_hard_delete_of_a_schema_removes_its_tables_and_tests_with_one_event(om_sample: OMServer) -> None:
    profile = profile_for(om_sample.version)
    schema = f"/api/v1/databaseSchemas/name/{fqnlib.url_segment(SHOP)}"
    refused = om_sample.http.delete(schema)
    assert refused.status_code == 400 and refused.json()["message"] == "databaseSchema is not empty"
    start = since(om_sample)
    deleted = om_sample.http.delete(schema, params={"recursive": "true", "hardDelete": "true"})
    assert deleted.status_code == 200 and deleted.json()["fullyQualifiedName"] == SHOP
    assert om_sample.get("/api/v1/tables", include="all")["paging"]["total"] == 0
    assert om_sample.get("/api/v1/dataQuality/testCases", include="all")["paging"]["total"] == 0
    events = om_sample.get("/api/v1/events", entityDeleted="*", entityUpdated="*", timestamp=start)["data"]
    assert [(e["eventType"], e["entityType"]) for e in events] == [("entityDeleted", "databaseSchema")]
    assert events[0].get("recursive") is (True if profile.release >= (2, 0) else None)
    assert om_sample.http.delete(schema, params={"recursive": "true"}).status_code == 404


def test_a_recursive_soft_delete_marks_the_children_deleted_without_events_of_their_own(om_sample: OMServer) -> None:
    start = since(om_sample)
    om_sample.admin("DELETE", f"/admin/entities/databaseSchema/{fqnlib.url_segment(SHOP)}?recursive=true")
    assert om_sample.get("/api/v1/tables")["paging"]["total"] == 0
    assert om_sample.get("/api/v1/tables", include="deleted")["paging"]["total"] == 18
    events = om_sample.get("/api/v1/events", entityDeleted="*", entityUpdated="*", timestamp=start)["data"]
    assert [(e["eventType"], e["entityType"]) for e in events] == [("entitySoftDeleted", "databaseSchema")]


def test_deleting_a_table_recursively_takes_its_test_cases(om_sample: OMServer) -> None:
    table = om_sample.get(f"/api/v1/tables/name/{fqnlib.url_segment(DIM_ADDRESS)}")
    tests = {"entityLink": f"<#E::table::{DIM_ADDRESS}>", "includeAllTests": "true", "include": "all"}
    assert om_sample.get("/api/v1/dataQuality/testCases", **tests)["paging"]["total"] == 5
    start = since(om_sample)
    answer = om_sample.http.delete(f"/api/v1/tables/{table['id']}", params={"recursive": "true", "hardDelete": "true"})
    assert answer.status_code == 200 and answer.json()["id"] == table["id"]
    assert om_sample.get("/api/v1/dataQuality/testCases", **tests)["paging"]["total"] == 0
    assert om_sample.http.get(f"/api/v1/tables/{table['id']}", params={"include": "all"}).status_code == 404
    events = om_sample.get("/api/v1/events", entityDeleted="*", timestamp=start)["data"]
    assert [(e["eventType"], e["entityFullyQualifiedName"]) for e in events] == [("entityDeleted", DIM_ADDRESS)]
