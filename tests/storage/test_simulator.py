"""The OpenMetadata simulator over real HTTP: auth, paging, FQNs, versions, lineage, events, DQ, admin, faults."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest

from simulator import DEMO_CATALOG, Catalog, synthetic_catalog
from storage.openmetadata import fqn as fqnlib
from tests.conftest import SAMPLE_DATA
from tests.fakes.omserver import OMServer

SHOP = "sample_data.ecommerce_db.shopify"
DIM_ADDRESS = f"{SHOP}.dim_address"
ZIP_TEST = f"{DIM_ADDRESS}.zip.column_values_to_be_between"
REGEX_TEST = f"{DIM_ADDRESS}.last_name.column_values_to_match_regex"


@pytest.fixture
def om_version() -> str:
    """These tests pin the 1.13 behaviour; tests/storage/test_simulator_profiles*.py cover every release line."""
    return "1.13.6"


def seg(fqn: str) -> str:
    return fqnlib.url_segment(fqn)


def events(om: OMServer, timestamp: int, **params: str) -> list[dict[str, Any]]:
    return om.get("/api/v1/events", timestamp=timestamp, **params)["data"]


def last_event_ts(om: OMServer) -> int:
    return om.catalog.events[-1][0] if om.catalog.events else 0


# --- auth -------------------------------------------------------------------------------------------------
def test_version_is_public_but_everything_else_needs_the_bearer_token(om_sample: OMServer) -> None:
    anonymous = httpx.Client(base_url=om_sample.url, trust_env=False)
    assert anonymous.get("/api/v1/system/version").json()["version"] == "1.13.6"
    for path in ("/api/v1/tables", "/admin/faults"):
        response = anonymous.get(path)
        assert response.status_code == 401
        assert response.json()["code"] == 401 and response.json()["message"]
        assert response.headers["WWW-Authenticate"] == "om-auth"
    wrong = anonymous.get("/api/v1/tables", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert om_sample.http.get("/api/v1/tables").status_code == 200


# --- listing ----------------------------------------------------------------------------------------------
def test_paging_walks_every_table_in_name_order_with_opaque_cursors(om_sample: OMServer) -> None:
    names: list[str] = []
    pages: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 5, "fields": "columns"}
    while True:
        page = om_sample.get("/api/v1/tables", **params)
        pages.append(page)
        names += [t["name"] for t in page["data"]]
        assert page["paging"]["total"] == 18
        if "after" not in page["paging"]:
            break
        params["after"] = page["paging"]["after"]
    assert len(names) == 18 and names == sorted(names) and len(set(names)) == 18
    assert "before" not in pages[0]["paging"] and "before" in pages[1]["paging"]
    cursor = json.loads(base64.urlsafe_b64decode(pages[0]["paging"]["after"]))
    assert cursor == {"name": names[4], "id": pages[0]["data"][-1]["id"]}
    back = om_sample.get("/api/v1/tables", limit=5, before=pages[1]["paging"]["before"])
    assert [t["name"] for t in back["data"]] == names[:5]
    assert om_sample.get("/api/v1/tables", limit=0) == {"data": [], "paging": {"total": 18}}
    assert len(om_sample.get("/api/v1/tables")["data"]) == 10


def test_fields_are_whitelisted_and_relationships_only_come_when_asked(om_sample: OMServer) -> None:
    bad = om_sample.http.get("/api/v1/tables", params={"fields": "columns,owner"})
    assert bad.status_code == 400 and bad.json() == {"code": 400, "message": "Invalid field name owner"}
    bare = om_sample.get(f"/api/v1/tables/name/{seg(DIM_ADDRESS)}")
    assert not {"owners", "tags", "usageSummary", "followers", "joins", "tableConstraints"} & bare.keys()
    assert "tags" not in bare["columns"][0]
    full = om_sample.get(
        f"/api/v1/tables/name/{seg(DIM_ADDRESS)}", fields="columns,owners,tags,usageSummary,tableConstraints"
    )
    assert full["owners"] == [] and full["usageSummary"]["dailyStats"]["count"] == 73
    assert full["columns"][0]["tags"] == [] and full["tableConstraints"][0]["constraintType"] == "PRIMARY_KEY"
    assert all(v is not None for v in full.values())


def test_list_filters_by_service_and_schema(om_sample: OMServer) -> None:
    assert om_sample.get("/api/v1/dashboards", service="sample_looker", limit=50)["paging"]["total"] == 2
    charts = om_sample.get("/api/v1/charts", service="sample_superset", fields="dashboards", limit=50)["data"]
    assert {c["fullyQualifiedName"] for c in charts} >= {"sample_superset.114", "sample_superset.197"}
    assert all(c["dashboards"] for c in charts if c["name"] != "Birth in France by department in 2016")
    assert om_sample.get("/api/v1/tables", databaseSchema=SHOP)["paging"]["total"] == 18
    assert om_sample.get("/api/v1/tables", databaseSchema="nope")["paging"]["total"] == 0


@pytest.mark.parametrize(
    ("name", "column"),
    [
        ("dim.product", "product_id"),
        ("dim(shop)", "shop(id)"),
        ("магазин", "идентификатор"),
        ("dim.api/client", "title"),
    ],
)
def test_quoted_and_unusual_fqns_round_trip_through_the_url(om_sample: OMServer, name: str, column: str) -> None:
    fqn = fqnlib.build("sample_data", "ecommerce_db", "shopify", name)
    table = om_sample.get(f"/api/v1/tables/name/{seg(fqn)}", fields="columns")
    assert table["name"] == name and table["fullyQualifiedName"] == fqn
    assert fqnlib.column_fqn(fqn, column) in {c["fullyQualifiedName"] for c in table["columns"]}
    assert om_sample.get(f"/api/v1/tables/{table['id']}")["fullyQualifiedName"] == fqn


def test_dim_product_fqn_is_quoted_on_the_wire(om_sample: OMServer) -> None:
    response = om_sample.http.get(f"/api/v1/tables/name/{SHOP}.%22dim.product%22")
    assert response.json()["fullyQualifiedName"] == f'{SHOP}."dim.product"'
    missing = om_sample.http.get(f"/api/v1/tables/name/{SHOP}.nope")
    assert missing.status_code == 404
    assert missing.json() == {"code": 404, "message": f"table instance for {SHOP}.nope not found"}


# --- versions and mutations -------------------------------------------------------------------------------
def test_versions_are_json_strings_newest_first(om_sample: OMServer) -> None:
    table = om_sample.get(f"/api/v1/tables/name/{seg(DIM_ADDRESS)}")
    om_sample.admin("PUT", f"/admin/entities/table/{seg(DIM_ADDRESS)}/description", {"description": "Addresses."})
    history = om_sample.get(f"/api/v1/tables/{table['id']}/versions")
    assert history["entityType"] == "table" and all(isinstance(v, str) for v in history["versions"])
    assert [json.loads(v)["version"] for v in history["versions"]] == [0.2, 0.1]
    old = om_sample.get(f"/api/v1/tables/{table['id']}/versions/0.1")
    assert old["description"] == table["description"]
    assert om_sample.http.get(f"/api/v1/tables/{table['id']}/versions/7.0").status_code == 404


COLUMN = {"name": "sku", "dataType": "VARCHAR", "dataLength": 64}


@pytest.mark.parametrize(
    ("method", "path", "body", "version", "change"),
    [
        ("POST", "columns", COLUMN, 0.2, ("fieldsAdded", "columns")),
        ("DELETE", "columns/zip", None, 1.1, ("fieldsDeleted", "columns")),
        ("POST", "columns/zip/rename", {"newName": "postcode"}, 1.1, ("fieldsDeleted", "columns")),
        ("POST", "columns/zip/retype", {"dataType": "INT"}, 1.1, ("fieldsAdded", "columns")),
        ("POST", "columns/zip/constraint", {"constraint": "NOT_NULL"}, 0.2, ("fieldsAdded", "columns.zip.constraint")),
        ("POST", "columns/zip/description", {"description": None}, 0.2, ("fieldsDeleted", "columns.zip.description")),
    ],
)
def test_each_column_mutation_is_recorded_like_om(
    om_sample: OMServer, method: str, path: str, body: Any, version: float, change: tuple[str, str]
) -> None:
    before = last_event_ts(om_sample)
    entity = om_sample.admin(method, f"/admin/tables/{seg(DIM_ADDRESS)}/{path}", body)
    assert entity["version"] == version
    description = entity["changeDescription"]
    assert description["previousVersion"] == 0.1
    kind, name = change
    assert name in [f["name"] for f in description[kind]]
    for item in description["fieldsAdded"] + description["fieldsDeleted"]:
        if item["name"] == "columns":
            assert isinstance(item.get("newValue", item.get("oldValue")), str)  # a JSON-encoded list
    (event,) = events(om_sample, before + 1, entityUpdated="table")
    assert event["currentVersion"] == version and event["previousVersion"] == 0.1
    assert event["changeDescription"] == description and event["timestamp"] == entity["updatedAt"]
    assert json.loads(event["entity"])["version"] == version


def test_rename_shows_the_old_column_deleted_and_the_new_one_added(om_sample: OMServer) -> None:
    entity = om_sample.admin("POST", f"/admin/tables/{seg(DIM_ADDRESS)}/columns/zip/rename", {"newName": "postcode"})
    (deleted,) = [f for f in entity["changeDescription"]["fieldsDeleted"] if f["name"] == "columns"]
    (added,) = [f for f in entity["changeDescription"]["fieldsAdded"] if f["name"] == "columns"]
    assert json.loads(deleted["oldValue"])[0]["name"] == "zip"
    assert json.loads(added["newValue"])[0]["fullyQualifiedName"] == f"{DIM_ADDRESS}.postcode"


def test_dotted_column_names_are_quoted_in_change_field_names(om_sample: OMServer) -> None:
    table = seg(DIM_ADDRESS)
    om_sample.admin("POST", f"/admin/tables/{table}/columns", {"name": "geo.lat", "dataType": "DOUBLE"})
    entity = om_sample.admin(
        "POST", f"/admin/tables/{table}/columns/{seg('geo.lat')}/description", {"description": "x"}
    )
    assert entity["changeDescription"]["fieldsAdded"][0]["name"] == 'columns."geo.lat".description'
    assert entity["version"] == 0.3


def test_owners_soft_delete_and_restore(om_sample: OMServer) -> None:
    before = last_event_ts(om_sample)
    path = f"/admin/entities/table/{seg(DIM_ADDRESS)}"
    owned = om_sample.admin("PUT", f"{path}/owners", {"owners": ["aaron_johnson0", "Sales"]})
    assert {o["type"] for o in owned["owners"]} == {"user", "team"}
    assert json.loads(owned["changeDescription"]["fieldsAdded"][0]["newValue"])[0]["name"] == "aaron_johnson0"
    tiered = om_sample.admin("PUT", f"{path}/tags", {"tags": ["Tier.Tier1"]})
    assert tiered["changeDescription"]["fieldsAdded"] == [
        {
            "name": "tags",
            "newValue": json.dumps(
                [{"tagFQN": "Tier.Tier1", "source": "Classification", "labelType": "Manual", "state": "Confirmed"}],
                separators=(",", ":"),
            ),
        }
    ]
    om_sample.admin("DELETE", path)
    assert om_sample.http.get(f"/api/v1/tables/name/{seg(DIM_ADDRESS)}").status_code == 404
    assert om_sample.get(f"/api/v1/tables/name/{seg(DIM_ADDRESS)}", include="all")["deleted"] is True
    assert om_sample.get("/api/v1/tables", include="deleted")["paging"]["total"] == 1
    assert om_sample.get("/api/v1/tables")["paging"]["total"] == 17
    restored = om_sample.admin("POST", f"{path}/restore")
    assert restored["deleted"] is False and restored["version"] == 0.5
    deleted = events(om_sample, before, entityDeleted="table", entityRestored="*")
    assert [e["eventType"] for e in deleted] == ["entitySoftDeleted", "entityRestored"]


def test_successive_mutations_strictly_advance_time_under_a_frozen_clock() -> None:
    catalog = Catalog.from_sample_data(SAMPLE_DATA, clock=lambda: 1_700_000_000_000)
    stamps = [catalog.set_description("table", DIM_ADDRESS, f"v{i}")["updatedAt"] for i in range(3)] + [
        catalog.add_column(DIM_ADDRESS, {"name": "extra", "dataType": "INT"})["updatedAt"]
    ]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    assert [e[0] for e in catalog.events] == stamps


def test_a_table_created_after_start_emits_entity_created(om_sample: OMServer) -> None:
    before = last_event_ts(om_sample)
    spec = {"fqn": f"{SHOP}.fresh", "columns": [{"name": "id", "dataType": "INT"}], "owners": ["Sales"]}
    created = om_sample.admin("POST", "/admin/tables", spec)
    (event,) = events(om_sample, before + 1, entityCreated="table")
    assert event["entityId"] == created["id"] and "changeDescription" not in event
    assert om_sample.get("/api/v1/tables")["paging"]["total"] == 19


# --- lineage ----------------------------------------------------------------------------------------------
def test_lineage_edges_are_bare_uuids_resolved_through_nodes(om_sample: OMServer) -> None:
    lineage = om_sample.get(f"/api/v1/lineage/table/name/{seg(SHOP + '.raw_order')}", downstreamDepth=3)
    root = lineage["entity"]["id"]
    ids = {n["id"]: n["fullyQualifiedName"] for n in lineage["nodes"]}
    assert root not in ids and lineage["upstreamEdges"] == []
    targets = {ids[e["toEntity"]] for e in lineage["downstreamEdges"] if e["fromEntity"] == root}
    assert targets == {f'{SHOP}."dim.product"', f'{SHOP}."dim.product.variant"'}
    details = lineage["downstreamEdges"][0]["lineageDetails"]
    assert details["pipeline"]["fullyQualifiedName"] == "sample_airflow.dim_product_etl"
    assert "columnsLineage" not in details and details["sqlQuery"]
    clamped = om_sample.get(f"/api/v1/lineage/table/{root}", upstreamDepth=-4, downstreamDepth=99)
    assert clamped["downstreamEdges"] == lineage["downstreamEdges"]
    by_model = om_sample.get("/api/v1/lineage/dashboard/name/sample_superset.9")
    assert {n["fullyQualifiedName"] for n in by_model["nodes"]} == {
        "sample_superset.model.103",
        "sample_superset.model.73",
    }


def test_put_lineage_adds_column_lineage_and_delete_removes_the_edge(om_sample: OMServer) -> None:
    raw = om_sample.get(f"/api/v1/tables/name/{seg(SHOP + '.raw_order')}")
    product_fqn = f'{SHOP}."dim.product"'
    product = om_sample.get(f"/api/v1/tables/name/{seg(product_fqn)}")
    mapping = {"fromColumns": [f"{SHOP}.raw_order.orders"], "toColumn": f"{product_fqn}.product_id"}
    edge = {
        "fromEntity": {"id": raw["id"], "type": "table"},
        "toEntity": {"id": product["id"], "type": "table"},
        "lineageDetails": {"columnsLineage": [mapping], "sqlQuery": "insert into x select ..."},
    }
    before = last_event_ts(om_sample)
    assert om_sample.http.put("/api/v1/lineage", json={"edge": edge}).status_code == 200
    lineage = om_sample.get(f"/api/v1/lineage/table/name/{seg(product_fqn)}")
    (up,) = [e for e in lineage["upstreamEdges"] if e["fromEntity"] == raw["id"]]
    assert up["lineageDetails"]["columnsLineage"] == [mapping]
    bad = dict(edge, lineageDetails={"columnsLineage": [{"fromColumns": ["x.y"], "toColumn": mapping["toColumn"]}]})
    assert om_sample.http.put("/api/v1/lineage", json={"edge": bad}).status_code == 400
    assert om_sample.get(f"/api/v1/tables/{product['id']}")["version"] == 0.1  # lineage is not versioned
    assert last_event_ts(om_sample) == before
    gone = om_sample.http.delete(f"/api/v1/lineage/table/name/{seg(SHOP + '.raw_order')}/table/name/{seg(product_fqn)}")
    assert gone.status_code == 200
    lineage = om_sample.get(f"/api/v1/lineage/table/name/{seg(product_fqn)}")
    assert raw["id"] not in {e["fromEntity"] for e in lineage["upstreamEdges"]}


def test_demo_rename_of_stg_orders_status_breaks_the_marts_and_two_dashboards(om_demo: OMServer) -> None:
    stg = "warehouse.shop.staging.stg_orders"
    entity = om_demo.admin("POST", f"/admin/tables/{seg(stg)}/columns/status/rename", {"newName": "order_status"})
    assert entity["version"] == 1.1
    lineage = om_demo.get(f"/api/v1/lineage/table/name/{seg(stg)}", upstreamDepth=0, downstreamDepth=3)
    names = {n["id"]: n for n in lineage["nodes"]}
    broken = {f"{stg}.status"}
    for _ in range(3):
        for edge in lineage["downstreamEdges"]:
            for m in edge.get("lineageDetails", {}).get("columnsLineage", []):
                if broken & set(m["fromColumns"]):
                    broken.add(m["toColumn"])
    assert broken == {
        f"{stg}.status",
        "warehouse.shop.analytics.orders.status",
        "warehouse.shop.analytics.revenue_daily.order_status",
        "looker.model.orders.order_status",
    }
    model_id = next(i for i, n in names.items() if n["fullyQualifiedName"] == "looker.model.orders")
    dashboards = {
        names[e["toEntity"]]["displayName"] for e in lineage["downstreamEdges"] if e["fromEntity"] == model_id
    }
    assert dashboards == {"Sales overview", "Customer health"}


def test_lineage_can_follow_renamed_and_dropped_columns_like_newer_om() -> None:
    catalog = Catalog.from_file(DEMO_CATALOG)
    catalog.lineage_follows_columns = True
    stg, mart = "warehouse.shop.staging.stg_orders", "warehouse.shop.analytics.orders"
    catalog.rename_column(stg, "status", "order_status")
    catalog.drop_column(stg, "customer_id")
    (edge,) = [
        e for e in catalog.edges_of(catalog.get("table", mart)) if e["fromEntity"] == catalog.get("table", stg).id
    ]
    pairs = {m["toColumn"]: m["fromColumns"] for m in edge["lineageDetails"]["columnsLineage"]}
    assert pairs[f"{mart}.status"] == [f"{stg}.order_status"] and f"{mart}.customer_id" not in pairs


# --- events -----------------------------------------------------------------------------------------------
def test_events_are_inclusive_ascending_and_only_for_named_kinds(om_sample: OMServer) -> None:
    path = f"/admin/entities/table/{seg(DIM_ADDRESS)}/description"
    first = om_sample.admin("PUT", path, {"description": "one"})["updatedAt"]
    second = om_sample.admin("PUT", path, {"description": "two"})["updatedAt"]
    both = events(om_sample, first, entityUpdated="table")
    assert [e["timestamp"] for e in both] == [first, second]
    assert len({e["id"] for e in both}) == 2 and all(isinstance(e["entity"], str) for e in both)
    assert [e["timestamp"] for e in events(om_sample, second, entityUpdated="*")] == [second]
    assert events(om_sample, second + 1, entityUpdated="table") == []
    assert events(om_sample, first, entityCreated="table") == []
    assert events(om_sample, first, entityUpdated="dashboard") == []
    assert events(om_sample, first) == []
    bad = om_sample.http.get("/api/v1/events", params={"entityUpdated": "tabel", "timestamp": 0})
    assert bad.status_code == 400 and bad.json()["message"] == "Invalid entity tabel in query param entityUpdated"


# --- data quality -----------------------------------------------------------------------------------------
def test_sample_tests_carry_their_latest_result_and_open_incident(om_sample: OMServer) -> None:
    cases = om_sample.get(
        "/api/v1/dataQuality/testCases",
        fields="testDefinition,testSuite,incidentId,owners,tags",
        entityLink=f"<#E::table::{DIM_ADDRESS}>",
        includeAllTests="true",
    )["data"]
    assert len(cases) == 5
    by_name = {c["name"]: c for c in cases}
    zip_case = by_name["column_values_to_be_between"]
    # 1.x shows the latest result's incident stamp, and an Aborted result carries none (the incident stays open)
    assert zip_case["testCaseStatus"] == "Aborted" and "incidentId" not in zip_case
    assert "testCaseResult" not in zip_case  # inline only when `fields` asks for it
    assert ZIP_TEST in om_sample.catalog.open_incidents
    assert zip_case["testSuite"]["fullyQualifiedName"] == f"{DIM_ADDRESS}.testSuite"
    assert "incidentId" not in by_name["table_column_count_equals"]
    table_only = om_sample.get("/api/v1/dataQuality/testCases", entityLink=f"<#E::table::{DIM_ADDRESS}>")
    assert table_only["paging"]["total"] == 2
    results = om_sample.get(f"/api/v1/dataQuality/testCases/testCaseResults/{seg(ZIP_TEST)}")["data"]
    stamps = [r["timestamp"] for r in results]
    assert len(results) == 10 and stamps == sorted(stamps, reverse=True)
    assert stamps[0] - stamps[1] == 86_400_000
    window = om_sample.get(
        f"/api/v1/dataQuality/testCases/testCaseResults/{seg(ZIP_TEST)}", startTs=stamps[2], endTs=stamps[0]
    )
    assert len(window["data"]) == 3


def test_a_failed_result_opens_an_incident_that_moves_through_its_states(om_sample: OMServer) -> None:
    before = last_event_ts(om_sample)
    result = {"timestamp": int(time.time() * 1000), "testCaseStatus": "Failed", "result": "bad", "testResultValue": []}
    posted = om_sample.http.post(f"/api/v1/dataQuality/testCases/testCaseResults/{seg(REGEX_TEST)}", json=result)
    assert posted.status_code == 201
    state_id = posted.json()["incidentId"]
    (event,) = events(om_sample, before + 1, entityUpdated="testCase")
    assert event["entityFullyQualifiedName"] == REGEX_TEST
    assert event["changeDescription"]["fieldsUpdated"][0]["newValue"]["testCaseStatus"] == "Failed"
    case = om_sample.get(f"/api/v1/dataQuality/testCases/name/{seg(REGEX_TEST)}", fields="incidentId,testCaseResult")
    assert case["incidentId"] == state_id and case["testCaseResult"]["result"] == "bad"
    failing = om_sample.get("/api/v1/dataQuality/testCases", testCaseStatus="Failed")["data"]
    assert [c["fullyQualifiedName"] for c in failing] == [REGEX_TEST]
    user = om_sample.get("/api/v1/users/name/aaron_johnson0")
    assignee = {"id": user["id"], "type": "user", "name": "aaron_johnson0"}
    steps = [
        {"testCaseResolutionStatusType": "Ack", "severity": "Severity1"},
        {"testCaseResolutionStatusType": "Assigned", "testCaseResolutionStatusDetails": {"assignee": assignee}},
        {
            "testCaseResolutionStatusType": "Resolved",
            "testCaseResolutionStatusDetails": {
                "testCaseFailureReason": "FalsePositive",
                "testCaseFailureComment": "ok",
            },
        },
    ]
    for step in steps:
        response = om_sample.http.post(
            "/api/v1/dataQuality/testCases/testCaseIncidentStatus", json={**step, "testCaseReference": REGEX_TEST}
        )
        assert response.status_code == 201 and response.json()["stateId"] == state_id
    history = om_sample.get(f"/api/v1/dataQuality/testCases/testCaseIncidentStatus/stateId/{state_id}")["data"]
    assert [h["testCaseResolutionStatusType"] for h in history] == ["New", "Ack", "Assigned", "Resolved"]
    assert history[2]["testCaseResolutionStatusDetails"]["assignee"]["name"] == "aaron_johnson0"
    assert history[3]["severity"] == "Severity1"
    latest = om_sample.get(
        "/api/v1/dataQuality/testCases/testCaseIncidentStatus", latest="true", testCaseFQN=REGEX_TEST, limit=1
    )
    assert latest["data"][0]["testCaseResolutionStatusType"] == "Resolved"
    assert set(latest["paging"]) <= {"before", "after", "total"} and latest["paging"]["total"] >= 1
    # 1.x keeps the latest result's stamp on the test case after the incident is resolved
    resolved = om_sample.get(f"/api/v1/dataQuality/testCases/name/{seg(REGEX_TEST)}", fields="incidentId")
    assert resolved["incidentId"] == state_id


def test_admin_test_result_and_pipeline_run(om_sample: OMServer) -> None:
    row = om_sample.admin("POST", f"/admin/tests/{seg(REGEX_TEST)}/result", {"status": "Failed", "result": "3 rows"})
    assert row["incidentId"]
    origin = om_sample.get(
        "/api/v1/dataQuality/testCases/testCaseIncidentStatus", originEntityFQN=DIM_ADDRESS, latest="true", limit=50
    )
    assert row["incidentId"] in {r["stateId"] for r in origin["data"]}
    before = last_event_ts(om_sample)
    pipe = "sample_airflow.dim_address_etl"
    run = {"executionStatus": "Failed", "taskStatus": {"dim_address_task": "Failed", "assert_table_exists": "Skipped"}}
    om_sample.admin("POST", f"/admin/pipelines/{seg(pipe)}/status", run)
    pipeline = om_sample.get(f"/api/v1/pipelines/name/{seg(pipe)}", fields="pipelineStatus,tasks")
    assert pipeline["pipelineStatus"]["executionStatus"] == "Failed" and pipeline["version"] == 0.1
    (event,) = events(om_sample, before + 1, entityUpdated="pipeline")
    assert event["changeDescription"]["fieldsUpdated"][0]["name"] == "pipelineStatus"
    runs = om_sample.get(f"/api/v1/pipelines/{seg(pipe)}/status")["data"]
    assert runs[0]["executionStatus"] == "Failed" and len(runs) == 8


# --- faults -----------------------------------------------------------------------------------------------
def test_injected_errors_retry_after_delay_and_malformed_entities(om_sample: OMServer) -> None:
    om_sample.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/tables$", "status": 500, "times": 2})
    codes = [om_sample.http.get("/api/v1/tables").status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    om_sample.admin("POST", "/admin/faults", {"path_regex": "/charts", "retry_after": 1, "times": 1})
    limited = om_sample.http.get("/api/v1/charts")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1" and limited.json()["code"] == 429
    om_sample.admin("POST", "/admin/faults", {"path_regex": "/topics", "delay_seconds": 0.2, "times": 1})
    started = time.monotonic()
    assert om_sample.http.get("/api/v1/topics").status_code == 200
    assert time.monotonic() - started >= 0.2
    om_sample.admin("POST", "/admin/faults", {"malformed": DIM_ADDRESS})
    broken = om_sample.get(f"/api/v1/tables/name/{seg(DIM_ADDRESS)}")
    assert "name" not in broken and not isinstance(broken["columns"], list)
    listed = om_sample.get("/api/v1/tables", limit=50)["data"]
    assert sum("name" not in t for t in listed) == 1
    om_sample.admin("DELETE", "/admin/faults")
    assert om_sample.get(f"/api/v1/tables/name/{seg(DIM_ADDRESS)}")["name"] == "dim_address"
    assert om_sample.violations == []


def test_lineage_faults_hit_only_the_chosen_entities_and_answer_as_openmetadata(om_sample: OMServer) -> None:
    """`lineage_of` narrows a fault to those entities' lineage reads; `body` serves a 200 that is not the answer."""
    other = f"{SHOP}.dim_customer"
    lineage = f"/api/v1/lineage/table/name/{seg(DIM_ADDRESS)}"
    om_sample.admin("POST", "/admin/faults", {"lineage_of": [DIM_ADDRESS], "status": 404, "times": 1})
    missing = om_sample.http.get(lineage)
    assert missing.status_code == 404 and missing.headers["WWW-Authenticate"] == "om-auth"
    assert missing.json() == {"code": 404, "message": f"table instance for {DIM_ADDRESS} not found"}
    assert om_sample.http.get(lineage).status_code == 200  # used up
    om_sample.admin("POST", "/admin/faults", {"lineage_of": DIM_ADDRESS, "status": 500})
    assert om_sample.http.get(lineage).json()["code"] == 500
    assert om_sample.http.get(f"/api/v1/tables/name/{seg(DIM_ADDRESS)}").status_code == 200  # the entity reads
    assert om_sample.http.get(f"/api/v1/lineage/table/name/{seg(other)}").status_code == 200
    om_sample.admin("DELETE", "/admin/faults")
    om_sample.admin("POST", "/admin/faults", {"lineage_of": DIM_ADDRESS, "body": {"upstreamEdges": "none"}})
    garbled = om_sample.http.get(lineage)
    assert garbled.status_code == 200 and garbled.json() == {"upstreamEdges": "none"}
    om_sample.admin("POST", "/admin/faults", {"lineage_of": other, "body": "<html>502</html>", "status": 200})
    assert om_sample.http.get(f"/api/v1/lineage/table/name/{seg(other)}").text == "<html>502</html>"
    with pytest.raises(httpx.HTTPStatusError):
        om_sample.admin("POST", "/admin/faults", {"lineage_of": 42, "status": 404})
    om_sample.admin("DELETE", "/admin/faults")
    assert om_sample.violations == []


# --- synthetic --------------------------------------------------------------------------------------------
def test_synthetic_catalog_is_a_layered_dag_with_column_lineage(om_factory: Any) -> None:
    catalog = synthetic_catalog(200, columns=8, upstream=3, seed=1)
    assert catalog.counts()["table"] == 200 and catalog.counts()["dashboard"] == 10
    om = om_factory(catalog)
    mart = catalog.by_type["table"][-1]
    lineage = om.get(f"/api/v1/lineage/table/name/{seg(mart.fqn)}", upstreamDepth=2, downstreamDepth=1)
    assert len([e for e in lineage["upstreamEdges"] if e["toEntity"] == mart.id]) == 3
    assert all(e["lineageDetails"]["columnsLineage"] for e in lineage["upstreamEdges"])
    page = om.get("/api/v1/tables", limit=1000, fields="columns,owners,tags,usageSummary")
    assert len(page["data"]) == 200 and all(t["owners"] for t in page["data"])
    assert om.get("/api/v1/dataQuality/testCases", testCaseStatus="Failed")["paging"]["total"] >= 1
