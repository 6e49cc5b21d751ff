"""Incidents in the store, on SQLite and PostgreSQL: opening, lifecycle, links, evidence and reads."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from storage.errors import DnaBotError, IncidentNotFound, InvalidTransition
from storage.persistence import db
from storage.persistence import incidents as inc
from storage.persistence.models import (
    Change,
    Entity,
    Incident,
    IncidentEvent,
    IncidentEvidence,
    IncidentLink,
    Snapshot,
    SyncRun,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ORDERS = "warehouse.shop.public.orders"
REVENUE = "warehouse.shop.public.daily_revenue"
DASHBOARD = "looker.sales_overview"


def add_changes(session: Session, *specs: tuple[str, str], at: datetime = T0) -> list[int]:
    """Rows in `changes` (kind, subject) on the orders table, in a run of their own; their ids."""
    run = SyncRun(started_at=at, finished_at=at, status="succeeded")
    entity = session.scalar(sa.select(Entity).where(Entity.fqn == ORDERS))
    if entity is None:
        entity = Entity(fqn=ORDERS, entity_type="table", name="orders", first_seen=at, last_seen=at)
    session.add_all([run, entity])
    session.flush()
    rows = [
        Change(
            sync_run_id=run.id,
            entity_id=entity.id,
            entity_fqn=ORDERS,
            entity_type="table",
            kind=kind,
            subject=subject,
            old_value={"name": "customer_id", "type": "INT"},
            new_value={"name": "client_id", "type": "INT"},
            detected_at=at,
        )
        for kind, subject in specs
    ]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def open_one(session: Session, fp: str = "fp-orders", **overrides: Any) -> inc.IncidentView:
    """A schema incident on orders.customer_id (or whatever `overrides` say), freshly opened."""
    fields: dict[str, Any] = {
        "fingerprint": fp,
        "kind": "breaking_schema_change",
        "severity": "SEV2",
        "title": "orders.customer_id was renamed",
        "root_fqn": ORDERS,
        "root_column": "customer_id",
        "details": {"breaks": [{"entity_fqn": REVENUE, "column": "customer_id"}], "dashboards": [DASHBOARD]},
        "run_id": 1,
        "now": T0,
    }
    fields.update(overrides)
    view, created = inc.open_incident(session, **fields)
    assert created
    return view


def event_kinds(session: Session, incident_id: int) -> list[str]:
    return [e.kind for e in inc.get_incident(session, incident_id).events]


# ------------------------------------------------------------------------------------------------ opening


def test_opening_the_same_fingerprint_twice_gives_one_incident_with_one_opened_event(
    session: Session, engine: Engine
) -> None:
    first = open_one(session)
    assert (first.status, first.version, first.opened_run_id, first.last_run_id) == ("open", 1, 1, 1)
    session.commit()

    again, created = inc.open_incident(
        session,
        fingerprint="fp-orders",
        kind="breaking_schema_change",
        severity="SEV1",
        title="something else",
        root_fqn=ORDERS,
        root_column="customer_id",
        details={"breaks": []},
        run_id=2,
        now=T0 + timedelta(hours=1),
    )
    session.commit()

    assert created is False
    assert again.id == first.id
    assert (again.severity, again.title, again.version, again.details) == ("SEV2", first.title, 1, first.details)
    assert (again.last_run_id, again.opened_run_id, again.updated_at) == (2, 1, T0)
    with db.session_factory(engine)() as other:
        detail = inc.get_incident(other, first.id)
        assert [(e.kind, e.status_to, e.actor) for e in detail.events] == [("opened", "open", "dnabot")]
        assert inc.find_by_fingerprint(other, "fp-orders") == again
        assert inc.find_by_fingerprint(other, "fp-nothing") is None


def test_a_resolved_incident_whose_cause_returns_is_reopened(session: Session) -> None:
    opened = open_one(session)
    inc.set_status(session, opened.id, "resolved", actor="U_ALICE", now=T0 + timedelta(hours=1), reason="fixed")
    later = T0 + timedelta(days=2)

    again, created = inc.open_incident(
        session,
        fingerprint="fp-orders",
        kind="breaking_schema_change",
        severity="SEV1",
        title="orders.customer_id was renamed again",
        root_fqn=ORDERS,
        root_column="customer_id",
        details={"breaks": [], "dashboards": ["looker.new_board"]},
        run_id=7,
        now=later,
    )
    session.commit()

    assert created is False and again.id == opened.id
    assert (again.status, again.resolved_at, again.version) == ("open", None, 3)
    assert (again.severity, again.title, again.details["dashboards"]) == (
        "SEV1",
        "orders.customer_id was renamed again",
        ["looker.new_board"],
    )
    assert (again.opened_at, again.updated_at, again.last_run_id, again.opened_run_id) == (T0, later, 7, 1)
    events = inc.get_incident(session, opened.id).events
    assert [(e.kind, e.status_from, e.status_to) for e in events] == [
        ("opened", None, "open"),
        ("status_changed", "open", "resolved"),
        ("reopened", "resolved", "open"),
    ]
    assert events[1].actor == "U_ALICE" and events[1].reason == "fixed"


def test_update_analysis_merges_the_details_and_is_quiet_when_nothing_changes(session: Session) -> None:
    opened = open_one(session)
    later = T0 + timedelta(minutes=5)

    updated = inc.update_analysis(
        session, opened.id, severity="SEV1", details_patch={"hypotheses": [{"cause_fqn": ORDERS}]}, now=later, run_id=3
    )
    assert updated.severity == "SEV1" and updated.version == 2 and updated.last_run_id == 3
    assert updated.details["dashboards"] == [DASHBOARD]  # kept
    assert updated.details["hypotheses"] == [{"cause_fqn": ORDERS}]
    assert updated.updated_at == later

    same = inc.update_analysis(
        session, opened.id, severity="SEV1", details_patch={"hypotheses": [{"cause_fqn": ORDERS}]}, now=later
    )
    assert same.version == 2
    events = inc.get_incident(session, opened.id).events
    assert [e.kind for e in events] == ["opened", "analysis_updated"]
    assert events[1].data == {"keys": ["hypotheses"], "severity": {"from": "SEV2", "to": "SEV1"}}


# ---------------------------------------------------------------------------------------------- lifecycle

ALLOWED = [
    ("open", "acknowledged"),
    ("open", "snoozed"),
    ("open", "resolved"),
    ("acknowledged", "snoozed"),
    ("acknowledged", "resolved"),
    ("acknowledged", "open"),
    ("snoozed", "open"),
    ("snoozed", "acknowledged"),
    ("snoozed", "resolved"),
    ("resolved", "open"),
]


def test_every_allowed_transition_is_recorded(session: Session) -> None:
    later, until = T0 + timedelta(hours=1), T0 + timedelta(days=1)
    for n, (start, target) in enumerate(ALLOWED):
        view = open_one(session, f"fp-{n}")
        if start != "open":
            inc.set_status(session, view.id, start, actor="U_BOB", now=T0, snoozed_until=until)
        before = inc.get_incident(session, view.id).incident

        after = inc.set_status(
            session, view.id, target, actor="U_ALICE", now=later, reason="why", note="a note", snoozed_until=until
        )

        label = f"{start} → {target}"
        assert after.status == target, label
        assert after.version == before.version + 1, label
        assert after.updated_at == later, label
        assert after.resolved_at == (later if target == "resolved" else None), label
        assert after.snoozed_until == (until if target == "snoozed" else None), label
        last = inc.get_incident(session, view.id).events[-1]
        assert (last.kind, last.status_from, last.status_to) == ("status_changed", start, target), label
        assert (last.actor, last.reason, last.note, last.at) == ("U_ALICE", "why", "a note", later), label
    session.commit()


@pytest.mark.parametrize("target", ["acknowledged", "snoozed"])
def test_a_resolved_incident_can_only_be_reopened(session: Session, target: str) -> None:
    view = open_one(session)
    resolved = inc.set_status(session, view.id, "resolved", actor="U_ALICE", now=T0)

    with pytest.raises(InvalidTransition, match=f"incident {view.id} is resolved; it can only be reopened") as caught:
        inc.set_status(session, view.id, target, actor="U_BOB", now=T0, snoozed_until=T0 + timedelta(days=1))

    assert isinstance(caught.value, DnaBotError)
    assert (caught.value.status_from, caught.value.status_to) == ("resolved", target)
    assert inc.get_incident(session, view.id).incident == resolved
    assert event_kinds(session, view.id) == ["opened", "status_changed"]


def test_an_unknown_status_is_refused_and_the_same_status_changes_nothing(session: Session) -> None:
    view = open_one(session)
    with pytest.raises(InvalidTransition, match="'closed' is not an incident status"):
        inc.set_status(session, view.id, "closed", actor="U_ALICE", now=T0)

    same = inc.set_status(session, view.id, "open", actor="U_ALICE", now=T0 + timedelta(hours=1))

    assert same == view
    assert event_kinds(session, view.id) == ["opened"]


@pytest.mark.parametrize("until", [None, T0, T0 - timedelta(minutes=1)], ids=["none", "now", "past"])
def test_snoozing_needs_a_time_in_the_future(session: Session, until: datetime | None) -> None:
    view = open_one(session)
    with pytest.raises(InvalidTransition, match="can only be snoozed until a time in the future"):
        inc.set_status(session, view.id, "snoozed", actor="U_ALICE", now=T0, snoozed_until=until)
    assert inc.get_incident(session, view.id).incident.status == "open"


def test_snoozes_that_have_ended_go_back_to_open(session: Session) -> None:
    due = open_one(session, "fp-due")
    not_yet = open_one(session, "fp-not-yet")
    still_open = open_one(session, "fp-open")
    inc.set_status(session, due.id, "snoozed", actor="U_ALICE", now=T0, snoozed_until=T0 + timedelta(hours=1))
    inc.set_status(session, not_yet.id, "snoozed", actor="U_ALICE", now=T0, snoozed_until=T0 + timedelta(days=1))
    session.commit()
    wake = T0 + timedelta(hours=2)

    assert inc.unsnooze_due(session, wake) == [due.id]
    session.commit()

    woken = inc.get_incident(session, due.id)
    assert (woken.incident.status, woken.incident.snoozed_until, woken.incident.version) == ("open", None, 3)
    last = woken.events[-1]
    assert (last.kind, last.status_from, last.status_to) == ("status_changed", "snoozed", "open")
    assert (last.actor, last.reason, last.at) == ("dnabot", "snooze ended", wake)
    assert inc.get_incident(session, not_yet.id).incident.status == "snoozed"
    assert inc.get_incident(session, still_open.id).incident.version == 1
    assert inc.unsnooze_due(session, wake) == []


def test_auto_resolve_is_done_by_dnabot_once(session: Session) -> None:
    view = open_one(session)
    inc.set_status(session, view.id, "acknowledged", actor="U_ALICE", now=T0, assignee="U_ALICE")
    later = T0 + timedelta(hours=3)

    resolved = inc.auto_resolve(session, view.id, reason="change reverted", now=later)
    again = inc.auto_resolve(session, view.id, reason="change reverted", now=later + timedelta(hours=1))

    assert (resolved.status, resolved.resolved_at, resolved.assignee, resolved.version) == (
        "resolved",
        later,
        "U_ALICE",
        3,
    )
    assert again == resolved
    last = inc.get_incident(session, view.id).events[-1]
    assert (last.kind, last.status_from, last.status_to) == ("auto_resolved", "acknowledged", "resolved")
    assert (last.actor, last.reason) == ("dnabot", "change reverted")


def test_assigning_and_notes_land_in_the_history(session: Session) -> None:
    view = open_one(session)
    assigned = inc.assign(session, view.id, "U_CAROL", actor="U_ALICE", now=T0 + timedelta(minutes=1))
    unchanged = inc.assign(session, view.id, "U_CAROL", actor="U_ALICE", now=T0 + timedelta(minutes=2))
    noted = inc.add_note(
        session, view.id, actor="U_CAROL", note="looking at the dbt model", now=T0 + timedelta(minutes=3)
    )

    assert (assigned.assignee, assigned.version, unchanged.version, noted.version) == ("U_CAROL", 2, 2, 3)
    events = inc.get_incident(session, view.id).events
    assert [(e.kind, e.actor, e.data, e.note) for e in events[1:]] == [
        ("note", "U_ALICE", {"assignee": "U_CAROL"}, None),
        ("note", "U_CAROL", {}, "looking at the dbt model"),
    ]


# ------------------------------------------------------------------------------------- links and evidence


def test_linking_changes_is_idempotent_and_only_new_symptoms_make_an_event(session: Session) -> None:
    view = open_one(session)
    cause, test_a, test_b, test_c = add_changes(
        session,
        ("column_renamed", "customer_id"),
        ("test_newly_failing", "revenue_not_null"),
        ("test_newly_failing", "revenue_unique"),
        ("pipeline_run_failed", None),
    )
    later = T0 + timedelta(hours=1)

    assert inc.link_changes(session, view.id, [cause], "cause", now=T0) == 1
    assert inc.link_changes(session, view.id, [cause], "cause", now=T0) == 0
    assert inc.get_incident(session, view.id).incident.version == 1
    assert inc.link_changes(session, view.id, [test_a, test_b, test_a], "symptom", now=later) == 2
    assert inc.link_changes(session, view.id, [test_b, test_a], "symptom", now=later) == 0
    assert inc.link_changes(session, view.id, [cause, test_c], "symptom", now=later) == 1
    session.commit()

    detail = inc.get_incident(session, view.id)
    assert detail.incident.version == 3
    symptoms = [e.data for e in detail.events if e.kind == "symptom_attached"]
    assert symptoms == [{"change_ids": [test_a, test_b]}, {"change_ids": [test_c]}]
    assert [(ln.change_id, ln.role) for ln in detail.links] == [
        (cause, "cause"),
        (test_a, "symptom"),
        (test_b, "symptom"),
        (test_c, "symptom"),
    ]
    first = detail.links[0]
    assert (first.kind, first.entity_fqn, first.subject, first.detected_at) == (
        "column_renamed",
        ORDERS,
        "customer_id",
        T0,
    )
    assert (first.old_value["name"], first.new_value["name"]) == ("customer_id", "client_id")
    with pytest.raises(ValueError, match="link role"):
        inc.link_changes(session, view.id, [cause], "bystander", now=T0)


def test_evidence_is_kept_once_per_kind_and_ref(session: Session) -> None:
    view = open_one(session)
    change = {"kind": "change", "ref": "change:12", "summary": "customer_id renamed to client_id"}
    edge = {"kind": "edge", "ref": f"{ORDERS} -> {REVENUE}", "summary": "revenue reads customer_id", "data": {"n": 1}}
    web = {
        "kind": "web",
        "ref": "https://docs.example.com/rename",
        "summary": "rename guide",
        "url": "https://docs.example.com/rename",
        "at": "2026-03-01T08:00:00+01:00",
    }

    assert inc.add_evidence(session, view.id, [change, edge, dict(change, summary="again")], now=T0) == 2
    assert inc.add_evidence(session, view.id, [edge, web], now=T0 + timedelta(hours=1)) == 1
    assert inc.add_evidence(session, view.id, [web, {**edge, "kind": "change"}], now=T0) == 1  # another kind
    session.commit()

    detail = inc.get_incident(session, view.id)
    assert [(e.kind, e.ref) for e in detail.evidence] == [
        ("change", "change:12"),
        ("edge", f"{ORDERS} -> {REVENUE}"),
        ("web", "https://docs.example.com/rename"),
        ("change", f"{ORDERS} -> {REVENUE}"),
    ]
    assert detail.evidence[0].summary == "customer_id renamed to client_id"
    assert detail.evidence[1].data == {"n": 1} and detail.evidence[0].at == T0
    assert detail.evidence[2].url == web["url"]
    assert detail.evidence[2].at == datetime(2026, 3, 1, 7, tzinfo=UTC)


def test_removing_an_incident_or_a_change_takes_their_rows_along(session: Session) -> None:
    view = open_one(session)
    doomed = open_one(session, "fp-doomed")
    cause, symptom = add_changes(session, ("column_renamed", "customer_id"), ("test_newly_failing", "t"))
    inc.link_changes(session, view.id, [cause, symptom], "cause", now=T0)
    inc.link_changes(session, doomed.id, [cause], "cause", now=T0)
    inc.add_evidence(session, doomed.id, [{"kind": "change", "ref": "change:1", "summary": "s"}], now=T0)
    session.commit()

    session.execute(sa.delete(Change).where(Change.id == symptom))
    session.execute(sa.delete(Incident).where(Incident.id == doomed.id))
    session.commit()

    assert [ln.change_id for ln in inc.get_incident(session, view.id).links] == [cause]
    for table in (IncidentEvent, IncidentLink, IncidentEvidence):
        assert session.scalar(sa.select(sa.func.count()).select_from(table).where(table.incident_id == doomed.id)) == 0


# -------------------------------------------------------------------------------------------------- reads


def test_lists_put_the_most_severe_first_then_the_newest(session: Session) -> None:
    sev3 = open_one(session, "fp-a", severity="SEV3", now=T0 + timedelta(hours=3))
    sev1_old = open_one(session, "fp-b", severity="SEV1", now=T0)
    sev1_new = open_one(session, "fp-c", severity="SEV1", now=T0 + timedelta(hours=1), root_fqn=REVENUE)
    sev4 = open_one(session, "fp-d", severity="SEV4", now=T0 + timedelta(hours=5))
    sev2_done = open_one(session, "fp-e", severity="SEV2", now=T0 + timedelta(hours=2))
    inc.set_status(session, sev2_done.id, "resolved", actor="U_ALICE", now=T0 + timedelta(hours=6))
    inc.set_status(session, sev4.id, "acknowledged", actor="U_ALICE", now=T0 + timedelta(hours=6))
    session.commit()

    def ids(views: list[inc.IncidentView]) -> list[int]:
        return [v.id for v in views]

    assert ids(inc.list_incidents(session)) == [sev1_new.id, sev1_old.id, sev2_done.id, sev3.id, sev4.id]
    assert ids(inc.open_incidents(session)) == [sev1_new.id, sev1_old.id, sev3.id, sev4.id]
    assert ids(inc.list_incidents(session, status="resolved")) == [sev2_done.id]
    assert ids(inc.list_incidents(session, status={"acknowledged", "resolved"})) == [sev2_done.id, sev4.id]
    assert ids(inc.list_incidents(session, since=T0 + timedelta(hours=2))) == [sev2_done.id, sev3.id, sev4.id]
    assert ids(inc.list_incidents(session, root_fqn=REVENUE)) == [sev1_new.id]
    assert ids(inc.list_incidents(session, limit=2)) == [sev1_new.id, sev1_old.id]


def test_incidents_for_an_asset_include_the_ones_that_break_it(session: Session) -> None:
    rooted = open_one(session, "fp-root", details={})
    breaking = open_one(
        session,
        "fp-breaks",
        root_fqn="warehouse.shop.public.customers",
        details={
            "breaks": [{"entity_fqn": ORDERS, "column": "customer_id", "distance": 1}],
        },
    )
    on_board = open_one(
        session,
        "fp-board",
        root_fqn="warehouse.shop.public.payments",
        severity="SEV1",
        details={
            "breaks": [{"entity_fqn": REVENUE}],
            "dashboards": [DASHBOARD],
        },
    )
    open_one(session, "fp-elsewhere", root_fqn="warehouse.hr.public.people", details={"breaks": []})
    session.commit()

    assert [v.id for v in inc.incidents_for(session, ORDERS)] == [breaking.id, rooted.id]
    assert [v.id for v in inc.incidents_for(session, DASHBOARD)] == [on_board.id]
    assert [v.id for v in inc.incidents_for(session, REVENUE)] == [on_board.id]
    assert inc.incidents_for(session, "warehouse.shop.public.nothing") == []


def test_a_missing_incident_points_to_the_list(session: Session) -> None:
    with pytest.raises(IncidentNotFound, match="dnabot incidents") as caught:
        inc.get_incident(session, 404)
    assert caught.value.incident_id == 404 and isinstance(caught.value, DnaBotError)
    with pytest.raises(IncidentNotFound):
        inc.set_status(session, 404, "resolved", actor="U_ALICE", now=T0)


def test_timestamps_come_back_aware_utc_and_naive_ones_are_refused(session: Session, engine: Engine) -> None:
    paris = timezone(timedelta(hours=1))
    local = datetime(2026, 3, 2, 10, 0, tzinfo=paris)  # == T0
    view = open_one(session, now=local)
    inc.set_status(session, view.id, "snoozed", actor="U_ALICE", now=local, snoozed_until=local + timedelta(days=1))
    [change_id] = add_changes(session, ("column_renamed", "customer_id"), at=local)
    inc.link_changes(session, view.id, [change_id], "cause", now=local)
    inc.add_evidence(session, view.id, [{"kind": "change", "ref": "change:1", "summary": "s"}], now=local)
    session.commit()

    with db.session_factory(engine)() as other:
        detail = inc.get_incident(other, view.id)
    stamps = [
        detail.incident.opened_at,
        detail.incident.updated_at,
        detail.incident.snoozed_until,
        *(e.at for e in detail.events),
        detail.links[0].detected_at,
        detail.evidence[0].at,
    ]
    for stamp in stamps:
        assert stamp is not None and stamp.tzinfo is UTC
    assert detail.incident.opened_at == T0 and detail.incident.snoozed_until == T0 + timedelta(days=1)
    with pytest.raises(ValueError, match="naive"):
        open_one(session, "fp-naive", now=datetime(2026, 3, 2, 9, 0))


def test_views_are_frozen_copies(session: Session) -> None:
    view = open_one(session)
    with pytest.raises(FrozenInstanceError):
        view.status = "resolved"  # type: ignore[misc]
    view.details["dashboards"].append("looker.sneaky")
    assert inc.get_incident(session, view.id).incident.details["dashboards"] == [DASHBOARD]


def test_a_change_made_by_another_process_is_seen_and_built_upon(session: Session, engine: Engine) -> None:
    view = open_one(session)
    session.commit()
    pinned = session.get(Incident, view.id)  # e.g. other code in this session still holds the row
    assert pinned is not None and pinned.status == "open"
    with db.session_factory(engine)() as slack_replica:
        inc.set_status(slack_replica, view.id, "acknowledged", actor="U_BOB", now=T0 + timedelta(minutes=1))
        slack_replica.commit()

    assert [v.status for v in inc.list_incidents(session)] == ["acknowledged"]
    resolved = inc.set_status(session, view.id, "resolved", actor="U_ALICE", now=T0 + timedelta(minutes=2))
    session.commit()

    assert resolved.version == 3
    events = inc.get_incident(session, view.id).events
    assert [(e.status_from, e.status_to) for e in events[1:]] == [
        ("open", "acknowledged"),
        ("acknowledged", "resolved"),
    ]


def _scored(session: Session, fqn: str, score: int) -> None:
    run = SyncRun(started_at=T0, finished_at=T0, status="succeeded")
    entity = Entity(fqn=fqn, entity_type="table", name=fqn.rsplit(".", 1)[-1], first_seen=T0, last_seen=T0)
    session.add_all([run, entity])
    session.flush()
    genes = {"entity": {"fqn": fqn, "type": "table", "deleted": False}}
    snap = Snapshot(entity_id=entity.id, sync_run_id=run.id, taken_at=T0, fingerprint=f"fp-{fqn}", genes=genes,
                    trust_score=score, trust_factors=[])  # fmt: skip
    session.add(snap)
    session.flush()
    entity.current_snapshot_id = snap.id
    session.flush()


def test_the_incident_view_shows_the_trust_now_of_its_root_and_what_it_breaks(session: Session) -> None:
    _scored(session, REVENUE, 90)
    view = open_one(session)  # SEV2, rooted at orders (no snapshot here), breaking daily_revenue and a dashboard
    other = open_one(session, "fp-other", severity="SEV4", root_fqn=REVENUE, details={})

    trust = inc.with_trust(session, inc.get_incident(session, view.id)).trust

    assert list(trust) == [ORDERS, REVENUE, DASHBOARD]
    assert (trust[REVENUE]["score"], trust[REVENUE]["stored"], trust[REVENUE]["open_incidents"]) == (
        65,
        90,
        [view.id, other.id],
    )
    assert trust[ORDERS]["score"] is None and trust[ORDERS]["open_incidents"] == [view.id]
    inc.set_status(session, view.id, "resolved", actor="U_ALICE", now=T0 + timedelta(hours=1))
    assert inc.trust_now(session, [REVENUE])[REVENUE].score == 85  # only the open SEV4 is left
