"""Full syncs keep OpenMetadata's users and teams (with their emails) in `people`, and survive a refusal."""

from __future__ import annotations

from sqlalchemy import select

from storage.persistence.models import Person
from storage.persistence.people import emails_of
from tests.storage.test_sync import read, sync

DEMO_USERS = {
    "ana": "ana@shop.example",
    "ben": "ben@shop.example",
    "chloe": "chloe@shop.example",
    "dev": "dev@shop.example",
}


def people(session) -> dict[str, tuple[str, str | None, str | None]]:
    return {p.name: (p.kind, p.email, p.display_name) for p in session.scalars(select(Person))}


def test_a_full_sync_fills_people_with_the_demo_users_and_teams(db_url, om_demo):
    result = sync(db_url, om_demo, mode="full")
    assert result.status == "succeeded", result.error
    rows = read(db_url, people)
    assert {name: email for name, (kind, email, _) in rows.items() if kind == "user"} == DEMO_USERS
    assert rows["ana"] == ("user", "ana@shop.example", "Ana Souza")
    assert rows["data-platform"] == ("team", "data-platform@shop.example", "Data Platform")
    assert read(db_url, emails_of, ["ben", "nobody", "data-platform"]) == {
        "ben": "ben@shop.example",
        "data-platform": "data-platform@shop.example",
    }
    again = sync(db_url, om_demo, mode="full")  # unchanged: same rows, nothing doubled
    assert again.status == "succeeded" and read(db_url, people) == rows


def test_a_403_on_users_still_syncs_and_keeps_the_old_rows(db_url, om_demo):
    assert sync(db_url, om_demo, mode="full").status == "succeeded"
    before = read(db_url, people)
    om_demo.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/users", "status": 403, "times": 100})
    result = sync(db_url, om_demo, mode="full")
    assert result.status == "succeeded", result.error
    assert [m for m in result.malformed if m["kind"] == "people"]
    assert result.skipped_malformed >= 1
    assert read(db_url, people) == before


def test_a_403_on_the_first_sync_leaves_people_empty(db_url, om_demo):
    om_demo.admin("POST", "/admin/faults", {"path_regex": "^/api/v1/users", "status": 403, "times": 100})
    result = sync(db_url, om_demo, mode="full")
    assert result.status == "succeeded", result.error
    assert result.entities_seen > 20
    assert read(db_url, people) == {}
