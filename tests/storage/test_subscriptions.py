"""Channel subscriptions on both databases: kinds detected, idempotent, and matched against incidents."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from storage.errors import DatasetNotFound
from storage.persistence import subscriptions
from storage.persistence.db import session_factory
from storage.persistence.incident_views import IncidentView
from storage.persistence.models import Entity

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STG_ORDERS = "warehouse.shop.staging.stg_orders"
ORDERS = "warehouse.shop.analytics.orders"


@pytest.fixture
def factory(engine):
    make = session_factory(engine)
    with make.begin() as session:
        for fqn, service in [(STG_ORDERS, "warehouse"), (ORDERS, "warehouse"), ("metabase.sales", "metabase")]:
            name = fqn.rsplit(".", 1)[1]
            kind = "dashboard" if service == "metabase" else "table"
            session.add(Entity(fqn=fqn, name=name, entity_type=kind, service=service, first_seen=NOW, last_seen=NOW))
    return make


def incident(**details) -> IncidentView:
    return IncidentView(
        id=1, fingerprint="f", kind="schema_break", severity="SEV1", status="open", title="t",
        root_fqn=STG_ORDERS, root_column="status", opened_at=NOW, updated_at=NOW, resolved_at=None,
        snoozed_until=None, assignee=None, opened_run_id=None, last_run_id=None, version=1, details=details,
    )  # fmt: skip


def test_kinds_are_detected(factory):
    with factory.begin() as s:
        assert subscriptions.subscribe(s, "C1", "warehouse", user="U1", now=NOW).kind == "service"
        dom = subscriptions.subscribe(s, "C1", "domain:Sales", user="U1", now=NOW)
        assert (dom.kind, dom.target) == ("domain", "Sales")
        glob = subscriptions.subscribe(s, "C1", "warehouse.shop.analytics.*", user="U1", now=NOW)
        assert (glob.kind, glob.target) == ("fqn", "warehouse.shop.analytics.*")
        fuzzy = subscriptions.subscribe(s, "C1", "`stg_orders`", user="U1", now=NOW)
        assert (fuzzy.kind, fuzzy.target, fuzzy.created_by) == ("fqn", STG_ORDERS, "U1")
        with pytest.raises(DatasetNotFound) as err:
            subscriptions.subscribe(s, "C1", "stg_ordrs", user="U1", now=NOW)
        assert STG_ORDERS in err.value.suggestions
    with factory() as s:
        kinds = [(v.kind, v.target) for v in subscriptions.list_for(s, "C1")]
    assert kinds == [("domain", "Sales"), ("fqn", "warehouse.shop.analytics.*"), ("fqn", STG_ORDERS),
                     ("service", "warehouse")]  # fmt: skip


def test_subscribe_and_unsubscribe_are_idempotent(factory):
    with factory.begin() as s:
        first = subscriptions.subscribe(s, "C1", "stg_orders", user="U1", now=NOW)
    with factory.begin() as s:
        again = subscriptions.subscribe(s, "C1", STG_ORDERS, user="U2", now=NOW)
        other = subscriptions.subscribe(s, "C2", STG_ORDERS, user="U2", now=NOW)
    assert again == first and other.id != first.id
    with factory.begin() as s:
        assert subscriptions.unsubscribe(s, "C1", "stg_orders") is True
    with factory.begin() as s:
        assert subscriptions.unsubscribe(s, "C1", "stg_orders") is False
        assert subscriptions.unsubscribe(s, "C1", "domain:Nope") is False
        assert [v.channel for v in subscriptions.list_for(s, "C2")] == ["C2"]
        assert subscriptions.list_for(s, "C1") == []


def test_channels_for_matches_root_service_dashboards_breaks_and_domains(factory):
    with factory.begin() as s:
        subscriptions.subscribe(s, "C_ROOT", STG_ORDERS, user=None, now=NOW)
        subscriptions.subscribe(s, "C_SVC", "warehouse", user=None, now=NOW)
        subscriptions.subscribe(s, "C_ANALYTICS", "warehouse.shop.analytics.*", user=None, now=NOW)
        subscriptions.subscribe(s, "C_DASH", "metabase.sales", user=None, now=NOW)
        subscriptions.subscribe(s, "C_BI", "metabase", user=None, now=NOW)
        subscriptions.subscribe(s, "C_DOMAIN", "domain:sales", user=None, now=NOW)
        subscriptions.subscribe(s, "C_ELSEWHERE", "domain:Finance", user=None, now=NOW)

    with factory() as s:
        assert subscriptions.channels_for(s, incident()) == {"C_ROOT", "C_SVC"}
        full = incident(
            breaks=[{"entity_fqn": ORDERS, "column": "status", "distance": 1, "reason": "missing"}],
            dashboards=[{"fqn": "metabase.sales", "display_name": "Sales"}],
            domains=["Sales"],
        )
        assert subscriptions.channels_for(s, full) == {"C_ROOT", "C_SVC", "C_ANALYTICS", "C_DASH", "C_BI", "C_DOMAIN"}
        elsewhere = dataclasses.replace(incident(), root_fqn="lake.raw.events")
        assert subscriptions.channels_for(s, elsewhere) == set()
