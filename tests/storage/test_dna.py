"""Genes and fingerprints: what DNA Bot remembers about a table, a topic, a dashboard, a pipeline."""

from __future__ import annotations

import json

from storage.domain.dna import (
    Edge,
    build_genes,
    canonical_json,
    column_of_test_link,
    columns_from_json,
    columns_json,
    decode,
    entity_of_test_link,
    fingerprint,
    pipeline_summary,
    with_lineage,
)
from storage.openmetadata import models as om
from storage.openmetadata.models import Chart, Dashboard, DashboardDataModel, Pipeline, Table, Topic

SHOP = "sample_data.ecommerce_db.shopify"
ORDERS = f"{SHOP}.fact_order"
RAW = f"{SHOP}.raw_order"


def orders_payload() -> dict:
    return {
        "id": "0a1b",
        "name": "fact_order",
        "fullyQualifiedName": ORDERS,
        "description": "One row per order.",
        "version": 0.7,
        "updatedAt": 1700000000000,
        "tableType": "Regular",
        "service": {"id": "s1", "type": "databaseService", "name": "sample_data"},
        "serviceType": "BigQuery",
        "owners": [
            {"id": "u2", "type": "user", "name": "zoe", "displayName": "Zoé"},
            {"id": "t1", "type": "team", "name": "data-eng"},
        ],
        "tags": [{"tagFQN": "Tier.Tier1"}, {"tagFQN": "PII.Sensitive"}],
        "domains": [{"id": "d1", "type": "domain", "name": "Sales", "fullyQualifiedName": "Sales"}],
        "followers": [{"id": "u3", "type": "user"}],
        "usageSummary": {
            "dailyStats": {"count": 12, "percentileRank": 40.0},
            "weeklyStats": {"count": 73, "percentileRank": 45.0},
            "monthlyStats": {"count": 300, "percentileRank": 50.0},
        },
        "tableConstraints": [{"constraintType": "PRIMARY_KEY", "columns": ["order_id"]}],
        "columns": [
            # listed out of order on purpose: genes order by ordinalPosition
            {"name": "status", "dataType": "VARCHAR", "dataLength": 32, "dataTypeDisplay": "varchar(32)",
             "ordinalPosition": 3, "constraint": "NOT_NULL", "description": "  "},
            {"name": "order_id", "dataType": "BIGINT", "ordinalPosition": 1, "description": "Order key",
             "tags": [{"tagFQN": "PII.None"}]},
            {"name": "shipping", "dataType": "STRUCT", "ordinalPosition": 2, "children": [
                {"name": "street", "dataType": "VARCHAR"},
                {"name": "zip", "dataType": "VARCHAR", "constraint": "NOT_NULL"},
            ]},
            {"name": "amount", "dataType": "DECIMAL", "precision": 10, "scale": 2, "ordinalPosition": 4},
        ],
    }  # fmt: skip


def orders() -> Table:
    return Table.model_validate(orders_payload())


def failing_test() -> om.TestCase:
    return om.TestCase.model_validate(
        {
            "id": "tc1",
            "name": "status_not_null",
            "fullyQualifiedName": f"{ORDERS}.status.status_not_null",
            "entityLink": f"<#E::table::{ORDERS}::columns::status>",
            "testDefinition": {"id": "td", "name": "columnValuesToBeNotNull"},
            "testCaseResult": {"timestamp": 1, "testCaseStatus": "Failed", "result": "Found 3 nulls"},
            "incidentId": "inc-1",
        }
    )


def passing_test() -> om.TestCase:
    return om.TestCase.model_validate(
        {
            "id": "tc0",
            "name": "row_count",
            "fullyQualifiedName": f"{ORDERS}.row_count",
            "entityLink": f"<#E::table::{ORDERS}>",
            "testCaseResult": {"timestamp": 2, "testCaseStatus": "Success"},
        }
    )


INCIDENTS = {
    "inc-1": om.TestCaseResolutionStatus.model_validate(
        {
            "stateId": "inc-1",
            "testCaseResolutionStatusType": "Assigned",
            "testCaseResolutionStatusDetails": {"assignee": {"id": "u1", "type": "user", "name": "aaron"}},
            "severity": "Severity2",
        }
    )
}

LOAD_EDGE = Edge(
    RAW, "table", ORDERS, "table", "airflow.load_orders",
    ((( f"{RAW}.status",), f"{ORDERS}.status"), ((f"{RAW}.id",), f"{ORDERS}.order_id")),
)  # fmt: skip
REPORT_EDGE = Edge(ORDERS, "table", "superset.model.orders", "dashboardDataModel")


def orders_genes(**overrides) -> dict:
    kwargs = {
        "upstream": [LOAD_EDGE],
        "downstream": [REPORT_EDGE],
        "tests": [failing_test(), passing_test()],
        "incidents": INCIDENTS,
        "pipelines": {"airflow.load_orders": {"status": "Failed", "failed_tasks": ["load"]}},
    }
    kwargs.update(overrides)
    return build_genes(orders(), "table", **kwargs)


def test_a_table_becomes_genes_with_identity_schema_and_context():
    genes = orders_genes()

    assert genes["entity"] == {
        "fqn": ORDERS,
        "type": "table",
        "id": "0a1b",
        "name": "fact_order",
        "display_name": None,
        "service": "sample_data",
        "service_type": "BigQuery",
        "subtype": "Regular",
        "deleted": False,
    }
    cols = genes["schema"]["columns"]
    assert [c["name"] for c in cols] == ["order_id", "shipping", "status", "amount"]
    order_id, shipping, status, amount = cols
    # the table-level primary key makes order_id non-nullable even without a column constraint
    assert order_id["nullable"] is False and order_id["constraint"] is None
    assert order_id["tags"] == ["PII.None"] and order_id["description"] == "Order key"
    assert status == {
        "name": "status", "type": "VARCHAR", "type_display": "varchar(32)", "length": 32,
        "precision": None, "scale": None, "constraint": "NOT_NULL", "nullable": False,
        "position": 3, "description": None, "tags": [], "children": [],
    }  # fmt: skip
    assert [(c["name"], c["position"], c["nullable"]) for c in shipping["children"]] == [
        ("street", 1, True),
        ("zip", 2, False),
    ]
    assert (amount["precision"], amount["scale"], amount["nullable"]) == (10, 2, True)
    assert genes["schema"]["constraints"] == [{"type": "PRIMARY_KEY", "columns": ["order_id"], "referred": []}]


def test_ownership_usage_tests_and_incident_are_in_the_genes():
    genes = orders_genes()

    assert genes["ownership"] == {
        "owners": [
            {"name": "data-eng", "type": "team", "display_name": None},
            {"name": "zoe", "type": "user", "display_name": "Zoé"},
        ],
        "description": "One row per order.",
        "tier": "Tier.Tier1",
        "tags": ["PII.Sensitive", "Tier.Tier1"],
        "domains": ["Sales"],
        "followers": 1,
    }
    assert genes["usage"] == {"daily": 12, "weekly": 73, "monthly": 300, "percentile": 45.0}
    tests = genes["quality"]["tests"]
    assert [t["fqn"] for t in tests] == [f"{ORDERS}.row_count", f"{ORDERS}.status.status_not_null"]
    assert tests[0]["column"] is None and tests[0]["incident"] is None
    assert tests[1] == {
        "fqn": f"{ORDERS}.status.status_not_null",
        "name": "status_not_null",
        "column": "status",
        "definition": "columnValuesToBeNotNull",
        "status": "Failed",
        "result": "Found 3 nulls",
        "incident": {"state_id": "inc-1", "status": "Assigned", "assignee": "aaron", "severity": "Severity2"},
    }


def test_lineage_and_loading_pipelines_are_in_the_genes():
    genes = orders_genes()

    assert genes["lineage"]["upstream"] == [
        {
            "fqn": RAW,
            "type": "table",
            "pipeline": "airflow.load_orders",
            "columns": [
                {"from": [f"{RAW}.id"], "to": f"{ORDERS}.order_id"},
                {"from": [f"{RAW}.status"], "to": f"{ORDERS}.status"},
            ],
        }
    ]
    assert genes["lineage"]["downstream"] == [
        {"fqn": "superset.model.orders", "type": "dashboardDataModel", "pipeline": None, "columns": []}
    ]
    assert genes["pipeline"]["runs"] == [{"fqn": "airflow.load_orders", "status": "Failed", "failed_tasks": ["load"]}]
    assert genes["contains"] == {"charts": [], "data_models": [], "dashboards": []}


def test_an_unchanged_entity_has_the_same_fingerprint_and_volatile_fields_do_not_count():
    first = orders_genes()
    payload = orders_payload() | {"version": 9.9, "updatedAt": 1800000000000}
    again = build_genes(
        Table.model_validate(payload),
        "table",
        upstream=[LOAD_EDGE],
        downstream=[REPORT_EDGE],
        tests=[passing_test(), failing_test()],  # another order
        incidents=INCIDENTS,
        pipelines={"airflow.load_orders": {"status": "Failed", "failed_tasks": ["load"]}},
    )
    assert fingerprint(first) == fingerprint(again)
    assert len(fingerprint(first)) == 64
    assert decode(canonical_json(first)) == first


def test_a_changed_description_changes_the_fingerprint():
    payload = orders_payload() | {"description": "One row per order line."}
    changed = build_genes(Table.model_validate(payload), "table", upstream=[LOAD_EDGE], downstream=[REPORT_EDGE])
    same_input = build_genes(orders(), "table", upstream=[LOAD_EDGE], downstream=[REPORT_EDGE])
    assert fingerprint(changed) != fingerprint(same_input)


def test_canonical_json_keeps_unicode_and_sorts_keys():
    text = canonical_json({"b": "магазин", "a": [1, 2]})
    assert text == '{"a":[1,2],"b":"магазин"}'
    assert json.loads(text)["b"] == "магазин"


def test_with_lineage_replaces_only_lineage_and_what_derives_from_it():
    genes = orders_genes()
    other = Edge(f"{SHOP}.raw_refund", "table", ORDERS, "table", "airflow.refunds", ())
    updated = with_lineage(genes, [other], [], pipelines={"airflow.refunds": {"status": "Successful"}})

    assert [e["fqn"] for e in updated["lineage"]["upstream"]] == [f"{SHOP}.raw_refund"]
    assert updated["lineage"]["downstream"] == []
    assert updated["pipeline"]["runs"] == [{"fqn": "airflow.refunds", "status": "Successful", "failed_tasks": []}]
    assert updated["schema"] == genes["schema"] and updated["quality"] == genes["quality"]
    assert [e["fqn"] for e in genes["lineage"]["upstream"]] == [RAW]  # the input is untouched


def test_edges_in_the_stored_json_form_are_accepted_and_duplicates_merged():
    stored = Edge(RAW, "table", ORDERS, "table", None, [{"from": [f"{RAW}.id"], "to": f"{ORDERS}.order_id"}])
    genes = orders_genes(upstream=[LOAD_EDGE, stored], downstream=[])
    (edge,) = genes["lineage"]["upstream"]
    assert edge["pipeline"] == "airflow.load_orders"
    assert len(edge["columns"]) == 2
    assert columns_from_json(columns_json(LOAD_EDGE.columns)) == (
        ((f"{RAW}.id",), f"{ORDERS}.order_id"),
        ((f"{RAW}.status",), f"{ORDERS}.status"),
    )


def test_an_incident_missing_from_the_feed_is_new_while_the_test_fails():
    genes = orders_genes(incidents={})
    failing = genes["quality"]["tests"][1]
    assert failing["incident"] == {"state_id": "inc-1", "status": "New", "assignee": None, "severity": None}


def test_a_topic_schema_comes_from_its_message_schema_fields():
    topic = Topic.model_validate(
        {
            "id": "tp",
            "name": "orders",
            "fullyQualifiedName": "kafka.orders",
            "messageSchema": {
                "schemaType": "Avro",
                "schemaFields": [
                    {"name": "order", "dataType": "RECORD", "children": [{"name": "id", "dataType": "LONG"}]}
                ],
            },
        }
    )
    genes = build_genes(topic, "topic", upstream=[], downstream=[])
    (order,) = genes["schema"]["columns"]
    assert order["name"] == "order" and order["children"][0]["name"] == "id"
    assert genes["usage"] is None and genes["entity"]["subtype"] is None


def test_dashboards_charts_and_models_know_what_they_contain():
    dashboard = Dashboard.model_validate(
        {
            "id": "d",
            "name": "8",
            "fullyQualifiedName": "superset.8",
            "dashboardType": "Dashboard",
            "charts": [{"id": "c2", "fullyQualifiedName": "superset.183"}, {"id": "c1", "name": "superset.12"}],
            "dataModels": [{"id": "m", "fullyQualifiedName": "superset.model.orders"}],
        }
    )
    chart = Chart.model_validate(
        {"id": "c", "name": "183", "fullyQualifiedName": "superset.183", "chartType": "Bar",
         "dashboards": [{"id": "d", "fullyQualifiedName": "superset.8"}]}
    )  # fmt: skip
    model = DashboardDataModel.model_validate(
        {"id": "m", "name": "orders", "fullyQualifiedName": "superset.model.orders",
         "dataModelType": "SupersetDataModel", "columns": [{"name": "status", "dataType": "VARCHAR"}]}
    )  # fmt: skip
    to_dash = Edge("superset.model.orders", "dashboardDataModel", "superset.8", "dashboard")

    dash_genes = build_genes(dashboard, "dashboard", upstream=[to_dash], downstream=[])
    assert dash_genes["contains"] == {
        "charts": ["superset.12", "superset.183"],
        "data_models": ["superset.model.orders"],
        "dashboards": [],
    }
    assert dash_genes["entity"]["subtype"] == "Dashboard"
    assert build_genes(chart, "chart", upstream=[], downstream=[])["contains"]["dashboards"] == ["superset.8"]
    model_genes = build_genes(model, "dashboardDataModel", upstream=[REPORT_EDGE], downstream=[to_dash])
    assert model_genes["contains"]["dashboards"] == ["superset.8"]
    assert model_genes["schema"]["columns"][0]["name"] == "status"


def test_a_pipeline_carries_its_own_last_run():
    pipeline = Pipeline.model_validate(
        {
            "id": "p",
            "name": "load_orders",
            "fullyQualifiedName": "airflow.load_orders",
            "tasks": [{"name": "extract"}, {"name": "load"}],
            "pipelineStatus": {
                "timestamp": 5,
                "executionStatus": "Failed",
                "taskStatus": [
                    {"name": "load", "executionStatus": "Failed"},
                    {"name": "extract", "executionStatus": "Successful"},
                ],
            },
        }
    )
    assert pipeline_summary(pipeline) == {"status": "Failed", "failed_tasks": ["load"]}
    genes = build_genes(pipeline, "pipeline", upstream=[], downstream=[LOAD_EDGE])
    assert genes["pipeline"]["runs"] == [{"fqn": "airflow.load_orders", "status": "Failed", "failed_tasks": ["load"]}]
    never_ran = Pipeline.model_validate({"id": "q", "name": "new", "fullyQualifiedName": "airflow.new"})
    assert pipeline_summary(never_ran) == {"status": None, "failed_tasks": []}


def test_entity_links_name_the_tested_entity_and_column():
    link = f"<#E::table::{ORDERS}::columns::status>"
    assert (entity_of_test_link(link), column_of_test_link(link)) == (ORDERS, "status")
    assert (entity_of_test_link(f"<#E::table::{ORDERS}>"), column_of_test_link(f"<#E::table::{ORDERS}>")) == (
        ORDERS,
        None,
    )
    assert column_of_test_link(f'<#E::table::{ORDERS}::columns::"a.b">') == "a.b"
    assert entity_of_test_link("garbage") is None
