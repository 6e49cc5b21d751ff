"""Ack / Assign / Resolve written back to OpenMetadata's Incident Manager, against the demo simulator."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from bot.core import services
from bot.core.settings import Settings
from bot.delivery import writeback
from storage.openmetadata.client import OpenMetadataClient
from storage.openmetadata.quality import failure_reason, incident_status_body
from tests.fakes.omserver import PROFILE_VERSIONS

STG_CUSTOMERS = "warehouse.shop.staging.stg_customers"
REVENUE_TEST = "warehouse.shop.analytics.revenue_daily.revenue_usd.revenue_not_null"
INCIDENT_PATH = "/api/v1/dataQuality/testCases/testCaseIncidentStatus"


@pytest.fixture(params=PROFILE_VERSIONS)
def om_version(request: pytest.FixtureRequest) -> str:
    """Write-backs and webhooks run against every simulated OpenMetadata release line."""
    return request.param


@pytest.fixture
def settings(tmp_path, om_demo, monkeypatch) -> Settings:
    """Settings on a fresh SQLite store and the demo simulator, one retry so faults fail fast."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'wb.db'}")
    monkeypatch.setenv("OPENMETADATA_URL", om_demo.url)
    monkeypatch.setenv("OPENMETADATA_TOKEN", om_demo.token)
    monkeypatch.setenv("DNABOT_OM_MAX_RETRIES", "1")
    monkeypatch.chdir(tmp_path)
    return Settings()


def _synced(settings: Settings):
    result = asyncio.run(services.sync(settings))
    assert result.ok
    return services.incidents_list(settings, "all")


def _test_incident(settings: Settings):
    found = [i for i in _synced(settings) if i.kind == "test_failing" and i.root_fqn == STG_CUSTOMERS]
    assert len(found) == 1, found
    incident = found[0]
    assert incident.details["test_fqn"] and incident.details["om_incident"]["state_id"]
    # OpenMetadata has it Assigned, so ours starts acknowledged (mirrored); reopen it here so the tests can act.
    # Reopening writes nothing back: OpenMetadata has no "open" state to post.
    assert incident.status == "acknowledged"
    return writeback.set_incident_status(settings, incident.id, "open", actor="U1")


def _history(om_demo, state_id: str) -> list[dict]:
    response = om_demo.http.get(f"{INCIDENT_PATH}/stateId/{state_id}")
    response.raise_for_status()
    body = response.json()
    return body["data"] if isinstance(body, dict) else body


def _notes(settings: Settings, incident_id: int) -> list[str]:
    events = services.incident_detail(settings, incident_id).events
    return [e.note for e in events if e.kind == "note" and e.note]


def _new_test_incident(settings: Settings, om_demo):
    """A test that starts failing now: OpenMetadata opens a New incident, and so does the bot."""
    _synced(settings)
    result = {"timestamp": int(time.time() * 1000), "testCaseStatus": "Failed", "result": "12 rows with a null"}
    om_demo.request("POST", f"/api/v1/dataQuality/testCases/testCaseResults/{om_demo.seg(REVENUE_TEST)}", result)
    found = [i for i in _synced(settings) if i.kind == "test_failing" and i.details.get("test_fqn") == REVENUE_TEST]
    assert len(found) == 1 and found[0].status == "open", found
    return found[0]


def test_acknowledge_then_resolve_are_written_back(settings, om_demo):
    incident = _new_test_incident(settings, om_demo)
    state_id = incident.details["om_incident"]["state_id"]
    before = [r["testCaseResolutionStatusType"] for r in _history(om_demo, state_id)]

    view = writeback.set_incident_status(settings, incident.id, "acknowledged", actor="U1")
    assert view.status == "acknowledged"
    rows = _history(om_demo, state_id)
    assert [r["testCaseResolutionStatusType"] for r in rows] == [*before, "Ack"]
    assert rows[-1]["testCaseReference"]["fullyQualifiedName"] == incident.details["test_fqn"]

    # the same status again changes nothing, so nothing is posted
    writeback.set_incident_status(settings, incident.id, "acknowledged", actor="U1")
    assert len(_history(om_demo, state_id)) == len(rows)

    writeback.set_incident_status(
        settings, incident.id, "resolved", actor="U1", reason="false_positive", note="the check was wrong"
    )
    last = _history(om_demo, state_id)[-1]
    assert last["testCaseResolutionStatusType"] == "Resolved"
    assert last["testCaseResolutionStatusDetails"]["testCaseFailureReason"] == "FalsePositive"
    assert last["testCaseResolutionStatusDetails"]["testCaseFailureComment"] == "the check was wrong"
    assert services.incident_detail(settings, incident.id).incident.status == "resolved"
    assert not _notes(settings, incident.id)
    # the test case no longer carries an open incident in OpenMetadata
    case = om_demo.http.get(f"/api/v1/dataQuality/testCases/name/{om_demo.seg(incident.details['test_fqn'])}")
    assert "incidentId" not in case.json()


def test_an_assignee_is_written_back_as_assigned_by_user_id(settings, om_demo):
    incident = _test_incident(settings)
    state_id = incident.details["om_incident"]["state_id"]
    before = _history(om_demo, state_id)
    assert before[-1]["testCaseResolutionStatusType"] == "Assigned"
    writeback.set_incident_status(settings, incident.id, "acknowledged", actor="U1", assignee="ana")
    rows = _history(om_demo, state_id)
    # OpenMetadata already has someone on it: an Ack would move it back (older servers refuse it), so only the
    # new assignee is written, as a full user reference (released servers resolve assignees by id)
    assert [r["testCaseResolutionStatusType"] for r in rows[len(before) :]] == ["Assigned"]
    ana = om_demo.get(f"/api/v1/users/name/{om_demo.seg('ana')}")
    assignee = rows[-1]["testCaseResolutionStatusDetails"]["assignee"]
    assert (assignee["id"], assignee["name"]) == (ana["id"], "ana")
    assert any("already assigned in OpenMetadata" in n for n in _notes(settings, incident.id))


def test_an_ack_after_openmetadata_resolved_it_opens_no_new_incident_there(settings, om_demo):
    """On OpenMetadata an Ack or Assigned after Resolved opens a NEW incident: the bot reads the state first."""
    incident = _test_incident(settings)
    test_fqn = incident.details["test_fqn"]
    state_id = incident.details["om_incident"]["state_id"]
    om_demo.request(
        "POST",
        INCIDENT_PATH,
        {
            "testCaseResolutionStatusType": "Resolved",
            "testCaseReference": test_fqn,
            "testCaseResolutionStatusDetails": {"testCaseFailureReason": "Other", "testCaseFailureComment": "done"},
        },
    )
    states = {r["stateId"] for r in om_demo.get(INCIDENT_PATH, limit=1000)["data"]}
    rows = len(_history(om_demo, state_id))

    writeback.set_incident_status(settings, incident.id, "acknowledged", actor="U1", assignee="ana")
    assert len(_history(om_demo, state_id)) == rows
    assert {r["stateId"] for r in om_demo.get(INCIDENT_PATH, limit=1000)["data"]} == states  # no new incident
    notes = _notes(settings, incident.id)
    assert any("already resolved in OpenMetadata" in n and "new incident" in n for n in notes), notes
    assert services.incident_detail(settings, incident.id).incident.status == "acknowledged"  # ours still moved


def test_an_incident_that_is_not_a_test_gets_no_write_back(settings, om_demo):
    _synced(settings)
    om_demo.admin(
        "POST",
        f"/admin/tables/{om_demo.seg('warehouse.shop.staging.stg_orders')}/columns/status/rename",
        {"newName": "order_state"},
    )
    others = [i for i in _synced(settings) if i.kind != "test_failing" and i.status == "open"]
    assert others
    rows_before = om_demo.http.get(INCIDENT_PATH, params={"limit": 1000}).json()["paging"]["total"]
    om_demo.admin("POST", "/admin/faults", {"path_regex": "testCaseIncidentStatus", "method": "POST", "status": 500})

    view = writeback.set_incident_status(settings, others[0].id, "acknowledged", actor="U1")
    assert view.status == "acknowledged"
    assert writeback.write_back(settings, view, "resolved", actor="U1") is None
    assert om_demo.http.get(INCIDENT_PATH, params={"limit": 1000}).json()["paging"]["total"] == rows_before
    assert not _notes(settings, others[0].id)


def test_om_failing_still_moves_the_store_and_leaves_a_note_without_the_token(settings, om_demo):
    incident = _new_test_incident(settings, om_demo)
    state_id = incident.details["om_incident"]["state_id"]
    rows = len(_history(om_demo, state_id))
    om_demo.admin("POST", "/admin/faults", {"path_regex": "testCaseIncidentStatus", "method": "POST", "status": 500})

    view = writeback.set_incident_status(settings, incident.id, "acknowledged", actor="U1")
    assert view.status == "acknowledged"
    assert services.incident_detail(settings, incident.id).incident.status == "acknowledged"
    notes = _notes(settings, incident.id)
    assert len(notes) == 1 and "Could not update OpenMetadata" in notes[0] and "unavailable" in notes[0]
    assert om_demo.token not in notes[0]
    om_demo.admin("DELETE", "/admin/faults")
    assert len(_history(om_demo, state_id)) == rows


def test_a_4xx_is_reported_with_the_servers_message(settings, om_demo):
    incident = _new_test_incident(settings, om_demo)
    om_demo.admin(
        "POST",
        "/admin/faults",
        {
            "path_regex": "testCaseIncidentStatus",
            "method": "POST",
            "status": 400,
            "message": f"bad request for token {om_demo.token}",
        },
    )
    reason = writeback.write_back(settings, incident, "acknowledged", actor="U1")
    assert reason is not None and "400" in reason and om_demo.token not in reason
    notes = _notes(settings, incident.id)
    assert len(notes) == 1 and om_demo.token not in notes[0]


def test_om_down_is_a_reason_not_an_exception(settings, monkeypatch):
    incident = _test_incident(settings)
    down = settings.model_copy(update={"openmetadata_url": "http://127.0.0.1:9", "om_max_retries": 0})
    reason = writeback.write_back(down, incident, "resolved", actor="U1", reason="fixed")
    assert reason is not None and "unavailable" in reason


def test_body_shapes_and_reason_mapping():
    assert incident_status_body("a.b.t", "Ack") == {"testCaseResolutionStatusType": "Ack", "testCaseReference": "a.b.t"}
    ana = {"id": "u-ana", "type": "user", "name": "ana", "fullyQualifiedName": "ana"}
    assigned = incident_status_body("a.b.t", "Assigned", assignee=ana)
    assert assigned["testCaseResolutionStatusDetails"] == {"assignee": ana}
    ben = {"id": "u-ben", "type": "user", "name": "ben", "fullyQualifiedName": "ben"}
    resolved = incident_status_body("a.b.t", "Resolved", reason="duplicate", comment="c", resolved_by=ben)
    assert resolved["testCaseResolutionStatusDetails"] == {
        "testCaseFailureReason": "Duplicates",
        "testCaseFailureComment": "c",
        "resolvedBy": ben,
    }
    assert [failure_reason(r) for r in ("fixed", "false_positive", "duplicate", "other", None)] == [
        "Other",
        "FalsePositive",
        "Duplicates",
        "Other",
        "Other",
    ]
    with pytest.raises(ValueError):
        incident_status_body("a.b.t", "Assigned")
    with pytest.raises(ValueError):
        incident_status_body("a.b.t", "Assigned", assignee={"name": "ana", "type": "user"})  # a name alone: no
    with pytest.raises(ValueError):
        incident_status_body("a.b.t", "New")


def test_post_json_retries_then_returns_the_answer():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # the version, the test case and its incident's history come first
            if request.url.path.endswith("/system/version"):
                return httpx.Response(200, json={"version": "1.13.6"})
            if "/stateId/" in request.url.path:
                return httpx.Response(200, json={"data": [{"stateId": "s1", "testCaseResolutionStatusType": "New"}]})
            return httpx.Response(
                200, json={"id": "t", "name": "t", "entityLink": "<#E::table::a.b>", "incidentId": "s1"}
            )
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(503, json={"code": 503, "message": "busy"})
        return httpx.Response(201, json={"stateId": "s1", "testCaseResolutionStatusType": "Ack"})

    async def go():
        async def no_sleep(_: float) -> None:
            return None

        async with OpenMetadataClient(
            "http://om.test", "tok", transport=httpx.MockTransport(handler), sleep=no_sleep
        ) as om:
            return await om.post_incident_status("a.b.t", "Ack"), om.stats.retries

    outcome, retries = asyncio.run(go())
    assert outcome.written is not None and outcome.written.stateId == "s1" and retries == 1
    assert [r.method for r in calls] == ["POST", "POST"]
    assert calls[0].headers["Authorization"] == "Bearer tok"


def test_slack_users_are_named_as_their_openmetadata_users(settings, om_demo, slack_api, monkeypatch):
    """Assigned to: the Slack user's email finds the OpenMetadata user synced from the catalog; a Slack user
    OpenMetadata does not know is not sent, and the incident says why."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", slack_api.token)
    monkeypatch.setenv("SLACK_API_URL", slack_api.url)
    settings = Settings()
    slack_api.users({"ben@shop.example": "U0BENOKAFOR", "nobody@elsewhere.example": "U0STRANGER"})
    incident = _new_test_incident(settings, om_demo)
    state_id = incident.details["om_incident"]["state_id"]
    before = len(_history(om_demo, state_id))

    writeback.set_incident_status(settings, incident.id, "acknowledged", actor="U0STRANGER", assignee="U0STRANGER")
    assert [r["testCaseResolutionStatusType"] for r in _history(om_demo, state_id)[before:]] == ["Ack"]
    [note] = _notes(settings, incident.id)
    assert "no OpenMetadata user" in note and "U0STRANGER" in note

    writeback.assign_incident(settings, incident.id, "U0BENOKAFOR", actor="U0BENOKAFOR")
    writeback.set_incident_status(settings, incident.id, "resolved", actor="U0BENOKAFOR", reason="fixed", note="ok")
    rows = _history(om_demo, state_id)
    assert [r["testCaseResolutionStatusType"] for r in rows[before:]] == ["Ack", "Assigned", "Resolved"]
    assert rows[-2]["testCaseResolutionStatusDetails"]["assignee"]["name"] == "ben"
    # (resolvedBy: OpenMetadata records the token's user, as the real server does, whatever the body says)
