"""Temporal diffs: what changed in a table between two syncs, in the words an on-call engineer uses."""

from __future__ import annotations

from typing import Any

import pytest

from storage.domain.diff import ChangeRecord, diff_genes
from storage.domain.dna import Edge, build_genes
from storage.openmetadata import models as om

SHOP = "shop.db.public"
ORDERS = f"{SHOP}.orders"
RAW = f"{SHOP}.raw_orders"
DAILY = f"{SHOP}.daily_orders"

COLUMNS = [
    {"name": "order_id", "dataType": "BIGINT", "constraint": "PRIMARY_KEY", "description": "key"},
    {"name": "a", "dataType": "INT"},
    {"name": "status", "dataType": "VARCHAR", "dataLength": 32, "dataTypeDisplay": "varchar(32)"},
    {"name": "customer_id", "dataType": "BIGINT", "description": "who ordered"},
    {"name": "shipping", "dataType": "STRUCT", "children": [
        {"name": "street", "dataType": "VARCHAR"},
        {"name": "zip", "dataType": "VARCHAR"},
    ]},
]  # fmt: skip
LOAD = Edge(RAW, "table", ORDERS, "table", "airflow.load", (
    ((f"{RAW}.id",), f"{ORDERS}.order_id"),
    ((f"{RAW}.state",), f"{ORDERS}.status"),
))  # fmt: skip
FEED = Edge(ORDERS, "table", DAILY, "table", None, (((f"{ORDERS}.order_id",), f"{DAILY}.order_id"),))


def dq(name: str, status: str | None) -> om.TestCase:
    result = {"timestamp": 1, "testCaseStatus": status, "result": f"{name} says {status}"} if status else None
    return om.TestCase.model_validate(
        {"id": name, "name": name, "fullyQualifiedName": f"{ORDERS}.{name}",
         "entityLink": f"<#E::table::{ORDERS}>", "testCaseResult": result}
    )  # fmt: skip


def genes(
    columns: list[dict[str, Any]] = COLUMNS,
    *,
    owners: tuple[str, ...] = ("alice",),
    description: str | None = "Orders.",
    tier: str | None = "Tier.Tier2",
    upstream: tuple[Edge, ...] = (LOAD,),
    downstream: tuple[Edge, ...] = (FEED,),
    tests: dict[str, str | None] | None = None,
    load_status: str = "Successful",
    deleted: bool = False,
) -> dict[str, Any]:
    table = om.Table.model_validate(
        {
            "id": "t1",
            "name": "orders",
            "fullyQualifiedName": ORDERS,
            "description": description,
            "deleted": deleted,
            "owners": [{"id": o, "type": "user", "name": o} for o in owners],
            "tags": [{"tagFQN": tier}] if tier else [],
            "columns": columns,
        }
    )
    return build_genes(
        table,
        "table",
        upstream=upstream,
        downstream=downstream,
        tests=[dq(n, s) for n, s in (tests or {"row_count": "Success"}).items()],
        pipelines={"airflow.load": {"status": load_status, "failed_tasks": ["t1"] if load_status == "Failed" else []}},
    )


def kinds(records: list[ChangeRecord]) -> list[tuple[str, str]]:
    return [(r.kind, r.subject) for r in records]


def replace(columns: list[dict[str, Any]], column: str, /, **changes: Any) -> list[dict[str, Any]]:
    return [({**c, **changes} if c["name"] == column else c) for c in columns]


def test_nothing_changed_means_no_changes():
    assert diff_genes(genes(), genes()) == []
    assert diff_genes(None, None) == []


def test_a_new_entity_is_added_and_a_vanished_one_deleted():
    (added,) = diff_genes(None, genes())
    assert (added.kind, added.subject, added.new_value["type"]) == ("entity_added", ORDERS, "table")
    assert kinds(diff_genes(genes(), None)) == [("entity_deleted", ORDERS)]
    assert kinds(diff_genes(genes(), genes(deleted=True))) == [("entity_deleted", ORDERS)]
    assert diff_genes(genes(deleted=True), genes(deleted=True)) == []
    assert diff_genes(None, genes(deleted=True)) == []


def test_a_restored_entity_reports_what_changed_while_it_was_gone():
    records = diff_genes(genes(deleted=True), genes(description=None))
    assert kinds(records) == [("entity_restored", ORDERS), ("description_removed", ORDERS)]


def test_a_rename_in_place_is_one_rename_not_a_drop_and_an_add():
    renamed = replace(COLUMNS, "status", name="order_state")
    (rec,) = diff_genes(genes(), genes(renamed))
    assert (rec.kind, rec.subject, rec.old_value, rec.new_value) == (
        "column_renamed",
        "status",
        "status",
        "order_state",
    )
    assert rec.confidence is not None and rec.confidence >= 0.9
    assert rec.details["old_name"] == "status" and rec.details["new_name"] == "order_state"
    assert rec.details["position"] == 3
    assert rec.details["why"] == "same type, same position, between the same columns"


def test_a_rename_next_to_a_dropped_column_picks_the_column_that_kept_its_place_and_description():
    address = [
        {"name": "address2", "dataType": "VARCHAR", "ordinalPosition": 6},
        {"name": "company", "dataType": "VARCHAR", "ordinalPosition": 7, "description": "Business name."},
        {"name": "city", "dataType": "VARCHAR", "ordinalPosition": 8, "description": "The city."},
        {"name": "region", "dataType": "VARCHAR", "ordinalPosition": 9},
    ]
    after = [address[0], {**address[2], "name": "town"}, address[3]]  # company dropped, city renamed to town
    records = diff_genes(genes(address), genes(after))
    assert kinds(records) == [("column_renamed", "city"), ("column_removed", "company")]
    assert records[0].confidence >= 0.9


def test_a_similar_name_elsewhere_is_a_less_certain_rename():
    moved = [c for c in COLUMNS if c["name"] != "customer_id"]
    moved.append({**COLUMNS[3], "name": "customer_uid"})
    moved.insert(0, {"name": "created_at", "dataType": "TIMESTAMP"})
    records = diff_genes(genes(), genes(moved))
    renames = [r for r in records if r.kind == "column_renamed"]
    assert [(r.old_value, r.new_value) for r in renames] == [("customer_id", "customer_uid")]
    assert 0.6 <= renames[0].confidence <= 0.85
    assert ("column_added", "created_at") in kinds(records)


def test_an_unrelated_drop_and_add_stay_a_drop_and_an_add():
    changed = [c for c in COLUMNS if c["name"] != "a"] + [{"name": "zzz", "dataType": "TIMESTAMP"}]
    records = diff_genes(genes(), genes(changed))
    assert kinds(records) == [("column_removed", "a"), ("column_added", "zzz")]
    assert records[0].old_value["type"] == "INT" and records[1].new_value["type"] == "TIMESTAMP"


def test_a_retype_shows_the_old_and_new_type():
    widened = replace(COLUMNS, "status", dataLength=64, dataTypeDisplay="varchar(64)")
    (rec,) = diff_genes(genes(), genes(widened))
    assert (rec.kind, rec.subject) == ("column_type_changed", "status")
    assert rec.old_value == {
        "type": "VARCHAR",
        "type_display": "varchar(32)",
        "length": 32,
        "precision": None,
        "scale": None,
    }
    assert rec.new_value["length"] == 64
    (bigger,) = diff_genes(genes(), genes(replace(COLUMNS, "a", dataType="BIGINT")))
    assert (bigger.kind, bigger.old_value["type"], bigger.new_value["type"]) == ("column_type_changed", "INT", "BIGINT")


def test_nested_fields_are_diffed_with_dotted_subjects():
    shipping = {**COLUMNS[4], "children": [{"name": "street", "dataType": "TEXT"}]}
    records = diff_genes(genes(), genes(replace(COLUMNS, "shipping", **shipping)))
    assert kinds(records) == [("column_removed", "shipping.zip"), ("column_type_changed", "shipping.street")]


def test_constraints_nullability_and_descriptions():
    changed = replace(COLUMNS, "order_id", constraint=None, description="")
    records = diff_genes(genes(), genes(changed, description="  "))
    assert kinds(records) == [
        ("column_constraint_changed", "order_id"),
        ("column_nullability_changed", "order_id"),
        ("column_description_removed", "order_id"),
        ("description_removed", ORDERS),
    ]
    assert (records[0].old_value, records[0].new_value) == ("PRIMARY_KEY", None)
    assert (records[1].old_value, records[1].new_value) == (False, True)
    assert records[2].old_value == "key"


def test_a_lost_upstream_edge_and_a_lost_mapping():
    lost_edge = diff_genes(genes(), genes(upstream=()))
    assert kinds(lost_edge) == [("lineage_edge_removed", RAW)]
    assert lost_edge[0].details == {"direction": "upstream"}
    assert lost_edge[0].old_value["pipeline"] == "airflow.load"

    fewer = Edge(RAW, "table", ORDERS, "table", "airflow.load", (((f"{RAW}.id",), f"{ORDERS}.order_id"),))
    (lost_map,) = diff_genes(genes(), genes(upstream=(fewer,)))
    assert (lost_map.kind, lost_map.subject) == ("column_mapping_removed", RAW)
    assert lost_map.details == {"direction": "upstream", "to": f"{ORDERS}.status", "from": [f"{RAW}.state"]}

    new_feed = Edge(ORDERS, "table", f"{SHOP}.refunds", "table")
    gained = diff_genes(genes(), genes(downstream=(FEED, new_feed)))
    assert kinds(gained) == [("lineage_edge_added", f"{SHOP}.refunds")]
    assert gained[0].details == {"direction": "downstream"}


def test_owner_swap_is_a_change_and_extra_owners_are_added_or_removed():
    (swap,) = diff_genes(genes(), genes(owners=("bob",)))
    assert (swap.kind, swap.subject, swap.old_value["name"], swap.new_value["name"]) == (
        "owner_changed",
        "alice",
        "alice",
        "bob",
    )
    assert kinds(diff_genes(genes(), genes(owners=("alice", "bob")))) == [("owner_added", "bob")]
    assert kinds(diff_genes(genes(owners=("alice", "bob")), genes(owners=("bob",)))) == [("owner_removed", "alice")]
    assert kinds(diff_genes(genes(), genes(owners=()))) == [("owner_removed", "alice")]


def test_tier_change():
    (rec,) = diff_genes(genes(), genes(tier="Tier.Tier1"))
    assert (rec.kind, rec.old_value, rec.new_value) == ("tier_changed", "Tier.Tier2", "Tier.Tier1")


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ({"row_count": "Success"}, {"row_count": "Failed"}, [("test_newly_failing", f"{ORDERS}.row_count")]),
        ({"row_count": None}, {"row_count": "Failed"}, [("test_newly_failing", f"{ORDERS}.row_count")]),
        ({"row_count": "Failed"}, {"row_count": "Failed"}, []),
        ({"row_count": "Failed"}, {"row_count": "Success"}, [("test_recovered", f"{ORDERS}.row_count")]),
        (
            {"row_count": "Success"},
            {"row_count": "Success", "fresh": "Failed"},
            [("test_added", f"{ORDERS}.fresh"), ("test_newly_failing", f"{ORDERS}.fresh")],
        ),
        ({"row_count": "Success", "fresh": "Success"}, {"row_count": "Success"}, [("test_removed", f"{ORDERS}.fresh")]),
    ],
)
def test_data_quality_transitions(before, after, expected):
    records = diff_genes(genes(tests=before), genes(tests=after))
    assert kinds(records) == expected


def test_a_newly_failing_test_carries_its_result():
    (rec,) = diff_genes(genes(), genes(tests={"row_count": "Failed"}))
    assert (rec.old_value, rec.new_value) == ("Success", "Failed")
    assert rec.details["result"] == "row_count says Failed"


def test_loading_pipeline_failure_and_recovery():
    (failed,) = diff_genes(genes(), genes(load_status="Failed"))
    assert (failed.kind, failed.subject, failed.details) == (
        "pipeline_run_failed",
        "airflow.load",
        {"failed_tasks": ["t1"]},
    )
    (recovered,) = diff_genes(genes(load_status="Failed"), genes())
    assert (recovered.kind, recovered.old_value, recovered.new_value) == (
        "pipeline_run_recovered",
        "Failed",
        "Successful",
    )


def test_many_changes_at_once_come_in_a_stable_order():
    after = genes(
        [c for c in replace(COLUMNS, "status", name="order_state") if c["name"] != "a"],
        owners=("bob", "carol"),
        upstream=(),
        tests={"row_count": "Failed"},
    )
    first = diff_genes(genes(), after)
    assert first == diff_genes(genes(), after)
    assert kinds(first) == [
        ("column_removed", "a"),
        ("column_renamed", "status"),
        ("owner_removed", "alice"),
        ("owner_added", "bob"),
        ("owner_added", "carol"),
        ("lineage_edge_removed", RAW),
        ("test_newly_failing", f"{ORDERS}.row_count"),
    ]
    assert first[0].as_dict()["kind"] == "column_removed"
    # "a" was dropped, so status moved up one place: its unchanged neighbours still make it a rename
    assert first[1].details["why"] == "same type, between the same columns"
