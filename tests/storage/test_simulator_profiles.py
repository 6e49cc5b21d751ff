"""The simulator behaves like each OpenMetadata version: fields, shapes, inline results, incident paging and rules.

Every test runs once per row of the version table (`PROFILE_VERSIONS`); expectations come from the same profile
the simulator follows (`storage.openmetadata.versions.profile_for`), and every answer is validated against the schemas
reshaped to that version.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from simulator import Catalog, create_app
from storage.errors import OMUnsupportedVersion
from storage.openmetadata import fqn as fqnlib
from storage.openmetadata.versions import profile_for
from tests.fakes.omserver import PROFILE_VERSIONS, OMServer

SHOP = "sample_data.ecommerce_db.shopify"
DIM_ADDRESS = f"{SHOP}.dim_address"
REGEX_TEST = f"{DIM_ADDRESS}.last_name.column_values_to_match_regex"
INCIDENTS = "/api/v1/dataQuality/testCases/testCaseIncidentStatus"
DOMAIN = {
    "id": "8d5f1c3e-0f6a-4b8e-9a57-3c2e1d0b9f41",
    "type": "domain",
    "name": "Sales",
    "fullyQualifiedName": "Sales",
}


@pytest.fixture(params=PROFILE_VERSIONS)
def om_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def seg(fqn: str) -> str:
    return fqnlib.url_segment(fqn)


def status(om: OMServer, step: dict[str, Any], case: str = REGEX_TEST) -> Any:
    """POST one incident status for `case`; the raw response."""
    return om.http.post(INCIDENTS, json={**step, "testCaseReference": case})


def fail(om: OMServer, case: str = REGEX_TEST, result: str = "bad") -> str:
    """Post a Failed result; the stateId of the incident it belongs to."""
    body = {"timestamp": int(time.time() * 1000), "testCaseStatus": "Failed", "result": result}
    posted = om.http.post(f"/api/v1/dataQuality/testCases/testCaseResults/{seg(case)}", json=body)
    assert posted.status_code == 201
    return str(posted.json()["incidentId"])


def user_ref(om: OMServer, name: str = "aaron_johnson0") -> dict[str, Any]:
    user = om.get(f"/api/v1/users/name/{seg(name)}")
    return {"id": user["id"], "type": "user", "name": user["name"]}


def test_an_unsupported_version_is_refused_with_the_one_sentence_of_the_version_table() -> None:
    with pytest.raises(OMUnsupportedVersion) as refused:
        create_app(Catalog(), version="1.4.8")
    with pytest.raises(OMUnsupportedVersion) as expected:
        profile_for("1.4.8")
    assert str(refused.value) == str(expected.value) and str(refused.value).count(". ") == 0


# --- fields= and shapes ------------------------------------------------------------------------------------
def test_every_property_of_the_version_is_a_field_and_anything_else_is_refused(om_sample: OMServer) -> None:
    profile = profile_for(om_sample.version)
    table = f"/api/v1/tables/name/{seg(DIM_ADDRESS)}"
    everything = ",".join(sorted(profile.properties["table"]))
    assert om_sample.http.get(table, params={"fields": everything}).status_code == 200
    for bad in ("owner", "colums", "testCaseResult"):
        answer = om_sample.http.get(table, params={"fields": f"columns,{bad}"})
        assert answer.status_code == 400 and answer.json() == {"code": 400, "message": f"Invalid field name {bad}"}
    star = om_sample.get(table, fields="*")
    assert star["owners"] == [] and star["usageSummary"] and star["columns"][0]["tags"] == []
    assert set(star) <= profile.properties["table"]
    cases = om_sample.get("/api/v1/dataQuality/testCases", fields="testCaseResult,incidentId,owners", limit=50)
    assert cases["paging"]["total"] == 5
    users = om_sample.get("/api/v1/users", fields="*", limit=3)["data"]
    assert all("teams" in u and set(u) <= profile.properties["user"] for u in users)


def test_domain_is_one_reference_up_to_1_8_and_a_list_from_1_9(om_sample: OMServer) -> None:
    profile = profile_for(om_sample.version)
    rec = om_sample.catalog.get("table", DIM_ADDRESS)
    om_sample.catalog.seed_patch(rec, lambda d: d.update(domains=[DOMAIN]))
    name = profile.domains_field
    other = "domain" if name == "domains" else "domains"
    assert name == ("domain" if profile.release <= (1, 8) else "domains")
    table = om_sample.get(f"/api/v1/tables/name/{seg(DIM_ADDRESS)}", fields=f"columns,{name}")
    assert table[name] == (DOMAIN if name == "domain" else [DOMAIN]) and other not in table
    refused = om_sample.http.get(f"/api/v1/tables/name/{seg(DIM_ADDRESS)}", params={"fields": other})
    assert refused.status_code == 400 and refused.json()["message"] == f"Invalid field name {other}"
    bare = om_sample.get(f"/api/v1/tables/name/{seg(DIM_ADDRESS)}")
    assert name not in bare and "owners" not in bare  # relationship fields only when asked for


def test_the_latest_result_is_inline_only_when_asked(om_sample: OMServer) -> None:
    profile = profile_for(om_sample.version)
    fail(om_sample)
    path = f"/api/v1/dataQuality/testCases/name/{seg(REGEX_TEST)}"
    bare = om_sample.get(path)
    assert "testCaseResult" not in bare and "incidentId" not in bare
    assert ("testCaseStatus" in bare) == ("testCaseStatus" in profile.properties["testCase"])
    asked = om_sample.get(path, fields="testCaseResult")
    assert asked["testCaseResult"]["testCaseStatus"] == "Failed" and asked["testCaseResult"]["result"] == "bad"
    assert om_sample.get(path, fields="*")["testCaseResult"]["result"] == "bad"
    listed = om_sample.get("/api/v1/dataQuality/testCases", limit=50)["data"]
    assert not any("testCaseResult" in c for c in listed)


# --- incident list paging ----------------------------------------------------------------------------------
def test_incidents_page_with_an_opaque_cursor_and_refuse_plain_numbers(om_sample: OMServer) -> None:
    for i in range(3):
        fail(om_sample, result=f"bad {i}")
        for kind in ("Ack", "Resolved"):
            assert status(om_sample, {"testCaseResolutionStatusType": kind}).status_code == 201
    everything = om_sample.get(INCIDENTS, limit=1000)
    assert "after" not in everything["paging"] and "before" not in everything["paging"]
    total = everything["paging"]["total"]
    assert total == len(everything["data"]) >= 9
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 4}
    pages = 0
    while True:
        page = om_sample.get(INCIDENTS, **params)
        assert page["paging"]["total"] == total and set(page["paging"]) <= {"before", "after", "total"}
        assert ("before" in page["paging"]) == (pages > 0)
        seen += [r["id"] for r in page["data"]]
        pages += 1
        if "after" not in page["paging"]:
            break
        params["offset"] = page["paging"]["after"]  # passed back unchanged
    assert sorted(seen) == sorted(r["id"] for r in everything["data"]) and len(set(seen)) == total
    for plain, message in (("0", "Last unit does not have enough valid bits"), ("500", 'For input string: "')):
        refused = om_sample.http.get(INCIDENTS, params={"offset": plain, "limit": 4})
        assert refused.status_code == 400 and refused.json()["message"].startswith(message)


def test_incident_filters_still_work_under_cursor_paging(om_sample: OMServer) -> None:
    state_id = fail(om_sample)
    assert status(om_sample, {"testCaseResolutionStatusType": "Ack"}).status_code == 201
    latest = om_sample.get(INCIDENTS, latest="true", testCaseFQN=REGEX_TEST, limit=1)
    assert [r["testCaseResolutionStatusType"] for r in latest["data"]] == ["Ack"]
    acks = om_sample.get(INCIDENTS, testCaseResolutionStatusType="Ack", testCaseFQN=REGEX_TEST)["data"]
    assert acks[0]["stateId"] == state_id and all(r["testCaseResolutionStatusType"] == "Ack" for r in acks)
    newest = acks[0]["timestamp"]
    window = om_sample.get(INCIDENTS, startTs=newest, endTs=newest, testCaseFQN=REGEX_TEST)["data"]
    assert [r["testCaseResolutionStatusType"] for r in window] == ["Ack"]


# --- incident rules ----------------------------------------------------------------------------------------
def test_an_assignee_is_taken_by_id_and_by_name_only_where_the_version_resolves_names(om_sample: OMServer) -> None:
    profile = profile_for(om_sample.version)
    state_id = fail(om_sample)
    ref = user_ref(om_sample)
    by_name = status(
        om_sample,
        {
            "testCaseResolutionStatusType": "Assigned",
            "testCaseResolutionStatusDetails": {"assignee": {"name": ref["name"], "type": "user"}},
        },
    )
    if profile.release >= (2, 0):
        assert by_name.status_code == 201
        assert by_name.json()["testCaseResolutionStatusDetails"]["assignee"]["id"] == ref["id"]
    else:
        assert by_name.status_code == 404 and by_name.json()["message"] == "user instance for null not found"
    by_id = status(
        om_sample,
        {
            "testCaseResolutionStatusType": "Assigned",
            "testCaseResolutionStatusDetails": {"assignee": {"id": ref["id"], "type": "user"}},
        },
    )
    assert by_id.status_code == 201 and by_id.json()["stateId"] == state_id
    assert by_id.json()["testCaseResolutionStatusDetails"]["assignee"]["name"] == "aaron_johnson0"
    unknown = {"id": "0b4b9d7e-2a43-4d1e-8f0e-7d6c5b4a3f21", "type": "user"}
    missing = status(
        om_sample,
        {"testCaseResolutionStatusType": "Assigned", "testCaseResolutionStatusDetails": {"assignee": unknown}},
    )
    assert missing.status_code == 404
    resolved_by_name = status(
        om_sample,
        {
            "testCaseResolutionStatusType": "Resolved",
            "testCaseResolutionStatusDetails": {
                "testCaseFailureReason": "FalsePositive",
                "testCaseFailureComment": "fine",
                "resolvedBy": {"name": ref["name"], "type": "user"} if profile.release < (2, 0) else ref,
            },
        },
    )
    assert resolved_by_name.status_code == (404 if profile.release < (2, 0) else 201)


def test_ack_after_resolved_opens_a_new_incident(om_sample: OMServer) -> None:
    profile = profile_for(om_sample.version)
    first = fail(om_sample)
    for kind in ("Ack", "Resolved"):
        assert status(om_sample, {"testCaseResolutionStatusType": kind}).json()["stateId"] == first
    reopened = status(om_sample, {"testCaseResolutionStatusType": "Ack"})
    assert reopened.status_code == 201
    second = reopened.json()["stateId"]
    assert second != first
    assert [r["testCaseResolutionStatusType"] for r in om_sample.get(f"{INCIDENTS}/stateId/{second}")["data"]] == [
        "Ack"
    ]
    case = om_sample.get(f"/api/v1/dataQuality/testCases/name/{seg(REGEX_TEST)}", fields="incidentId")
    # 2.0 reads the incident timeline; 1.x shows the latest result's stamp, still the first incident
    assert case["incidentId"] == (second if profile.release >= (2, 0) else first)
    assert fail(om_sample) == second  # the next failure joins the open incident


def test_assigned_goes_back_to_ack_only_from_1_7(om_sample: OMServer) -> None:
    profile = profile_for(om_sample.version)
    state_id = fail(om_sample)
    assigned = status(
        om_sample,
        {
            "testCaseResolutionStatusType": "Assigned",
            "testCaseResolutionStatusDetails": {"assignee": user_ref(om_sample)},
        },
    )
    assert assigned.status_code == 201
    back = status(om_sample, {"testCaseResolutionStatusType": "Ack"})
    if profile.release < (1, 7):
        assert back.status_code == 400
        assert back.json()["message"] == "Incident with status [Assigned] cannot be moved to [Ack]"
    else:
        assert back.status_code == 201 and back.json()["stateId"] == state_id


def test_versions_and_change_events_have_the_version_shape(om_sample: OMServer) -> None:
    profile = profile_for(om_sample.version)
    rec = om_sample.catalog.get("table", DIM_ADDRESS)
    om_sample.catalog.seed_patch(rec, lambda d: d.update(domains=[DOMAIN]))
    start = om_sample.catalog.tick()
    om_sample.admin("PUT", f"/admin/entities/table/{seg(DIM_ADDRESS)}/description", {"description": "Addresses."})
    history = om_sample.get(f"/api/v1/tables/{rec.id}/versions")["versions"]
    (event,) = om_sample.get("/api/v1/events", entityUpdated="table", timestamp=start)["data"]
    for raw in [*history, event["entity"]]:
        entity = json.loads(raw)
        assert set(entity) <= profile.properties["table"]
        assert entity[profile.domains_field] == (DOMAIN if profile.domains_field == "domain" else [DOMAIN])
