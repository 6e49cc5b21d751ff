"""Routing incidents to channels from a YAML file: FQN globs, services, dashboards, owners, first match wins."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.core.routing import Router, RoutingConfigError, Rule
from storage.persistence.incident_views import IncidentView

T = datetime(2026, 3, 1, tzinfo=UTC)
CONFIG = """
default_channel: C_DEFAULT
rules:
  - match: {fqn: "warehouse.shop.analytics.*"}
    channel: C_ANALYTICS
  - match: {owner_team: finance}
    channel: C_FINANCE
  - match: {service: looker}
    channel: C_BI
  - match: {dashboard: "looker.sales_*"}
    channel: C_SALES
owners:
  ana: U_ANA
"""


def incident(root_fqn: str, **details: Any) -> IncidentView:
    return IncidentView(
        id=1,
        fingerprint="fp",
        kind="breaking_schema_change",
        severity="SEV2",
        status="open",
        title="a column was renamed",
        root_fqn=root_fqn,
        root_column=None,
        opened_at=T,
        updated_at=T,
        resolved_at=None,
        snoozed_until=None,
        assignee=None,
        opened_run_id=None,
        last_run_id=None,
        version=1,
        details=details,
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def router(tmp_path: Path) -> Router:
    return Router.from_file(write(tmp_path, CONFIG))


def test_an_analytics_table_goes_to_the_analytics_channel(router: Router) -> None:
    assert router.route(incident("warehouse.shop.analytics.orders", owners=["finance"])) == "C_ANALYTICS"


def test_the_first_matching_rule_wins_over_later_ones(router: Router) -> None:
    # Owned by finance and rooted in looker: the finance rule comes first.
    assert router.route(incident("looker.model.orders", owners=["ben", "finance"])) == "C_FINANCE"


def test_the_service_is_the_first_part_of_the_root_fqn(router: Router) -> None:
    assert router.route(incident("looker.model.orders")) == "C_BI"


def test_a_broken_dashboard_routes_the_incident(router: Router) -> None:
    hit = incident("warehouse.shop.staging.stg_orders", dashboards=["looker.customer_health", "looker.sales_overview"])
    assert router.route(hit) == "C_SALES"


def test_nothing_matching_falls_back_to_the_default_channel(router: Router) -> None:
    assert router.route(incident("warehouse.shop.staging.stg_orders", owners=["ben"])) == "C_DEFAULT"


def test_owner_names_map_to_slack_ids(router: Router) -> None:
    assert router.owners == {"ana": "U_ANA"}


def test_every_key_of_one_match_must_hold_and_lists_match_any_value() -> None:
    rules = [Rule(match={"service": ("warehouse",), "owner": ("ana", "ben")}, channel="C_WH")]
    router = Router(rules, "C_DEFAULT")
    assert router.route(incident("warehouse.shop.raw.payments", owners=["ben"])) == "C_WH"
    assert router.route(incident("warehouse.shop.raw.payments", owners=["chloe"])) == "C_DEFAULT"
    assert router.route(incident("looker.model.orders", owners=["ben"])) == "C_DEFAULT"


def test_domains_route_when_the_incident_names_them() -> None:
    router = Router.from_mapping(
        {"default_channel": "C_D", "rules": [{"match": {"domain": "Sales"}, "channel": "C_S"}]}
    )
    assert router.route(incident("warehouse.shop.raw.payments", domains=["Sales"])) == "C_S"
    assert router.route(incident("warehouse.shop.raw.payments")) == "C_D"


def test_the_default_channel_can_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "rules: []\n")
    assert Router.from_file(path, default_channel="C_ENV").default_channel == "C_ENV"
    assert Router.from_file(write(tmp_path, ""), default_channel="C_ENV").rules == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rules: [\n  - match: {fqn: 'a'\n", "is not valid YAML (line"),
        ("- just\n- a list\n", "must be a mapping"),
        ("rules: []\n", "needs default_channel"),
        ("default_channel: C\nrules: {fqn: a}\n", "rules must be a list"),
        ("default_channel: C\nrules:\n  - channel: C_X\n", "rules[0] needs a non-empty `match`"),
        ("default_channel: C\nrules:\n  - match: {fqn: a}\n", "rules[0] needs a `channel`"),
        ("default_channel: C\nrules:\n  - match: {table: a}\n    channel: C_X\n", "unknown key(s) table"),
        ("default_channel: C\nrules:\n  - match: {fqn: []}\n    channel: C_X\n", "rules[0].match.fqn must be"),
        ("default_channel: C\nowners: [ana]\n", "owners must map"),
        ("default_channel: C\nchannels: {}\n", "unknown top-level key(s) channels"),
    ],
)
def test_a_bad_file_is_a_clear_error_naming_it(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RoutingConfigError) as caught:
        Router.from_file(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RoutingConfigError, match=r"routing config .*nowhere\.yml: cannot be read"):
        Router.from_file(tmp_path / "nowhere.yml")
