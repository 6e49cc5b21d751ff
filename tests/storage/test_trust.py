"""Trust scores: a well-kept table earns trust, a neglected one loses it and the factors say why."""

from __future__ import annotations

from storage.domain.dna import Edge, build_genes
from storage.domain.trust import WEIGHTS, TrustFactor, TrustScore, trust_dropped, trust_now, trust_score
from storage.openmetadata import models as om

SHOP = "shop.db.public"
ORDERS = f"{SHOP}.orders"
RAW = f"{SHOP}.raw_orders"


def table(**overrides) -> om.Table:
    payload = {
        "id": "t1",
        "name": "orders",
        "fullyQualifiedName": ORDERS,
        "description": "Orders, one row each.",
        "owners": [{"id": "team", "type": "team", "name": "data-eng"}],
        "usageSummary": {"weeklyStats": {"count": 500, "percentileRank": 90.0}, "monthlyStats": {"count": 2000}},
        "columns": [
            {"name": "order_id", "dataType": "BIGINT", "description": "key"},
            {"name": "shop_id", "dataType": "BIGINT", "description": "shop"},
            {"name": "status", "dataType": "VARCHAR", "description": "state"},
        ],
    }
    payload.update(overrides)
    return om.Table.model_validate(payload)


def dq_test(name: str, status: str, column: str | None = None, incident: str | None = None) -> om.TestCase:
    link = f"<#E::table::{ORDERS}::columns::{column}>" if column else f"<#E::table::{ORDERS}>"
    fqn = f"{ORDERS}.{column}.{name}" if column else f"{ORDERS}.{name}"
    return om.TestCase.model_validate(
        {
            "id": name,
            "name": name,
            "fullyQualifiedName": fqn,
            "entityLink": link,
            "testCaseResult": {"timestamp": 1, "testCaseStatus": status},
            "incidentId": incident,
        }
    )


LOAD = Edge(RAW, "table", ORDERS, "table", "airflow.load", (((f"{RAW}.id",), f"{ORDERS}.order_id"),))


def genes(entity: om.Table | None = None, **kwargs) -> dict:
    kwargs.setdefault("upstream", [LOAD])
    kwargs.setdefault("downstream", [])
    kwargs.setdefault("pipelines", {"airflow.load": {"status": "Successful", "failed_tasks": []}})
    return build_genes(entity or table(), "table", **kwargs)


def factor(score: TrustScore, name: str) -> TrustFactor:
    return next(f for f in score.factors if f.name == name)


def test_a_well_kept_table_is_trusted():
    score = trust_score(genes(tests=[dq_test("row_count", "Success")]))

    assert [f.name for f in score.factors] == list(WEIGHTS)
    assert sum(f.weight for f in score.factors) == 100
    assert score.score >= 95
    assert factor(score, "ownership").reason == "owned by data-eng (team)"
    assert factor(score, "documentation").reason == "has a description; 3 of 3 columns described"
    assert factor(score, "freshness").reason == "last run successful: airflow.load"
    assert factor(score, "lineage").score == 1.0


def test_an_unowned_undocumented_table_with_a_failing_test_scores_low_and_says_why():
    neglected = table(
        owners=[],
        description=None,
        columns=[{"name": "order_id", "dataType": "BIGINT"}, {"name": "shop_id", "dataType": "BIGINT"}],
        usageSummary={"monthlyStats": {"count": 0}},
    )
    tests = [
        dq_test("column_value_max_to_be_between", "Failed", column="shop_id", incident="inc-9"),
        dq_test("row_count", "Success"),
    ]
    score = trust_score(genes(neglected, upstream=[], tests=tests))

    assert score.score < 40
    assert factor(score, "ownership").score == 0 and factor(score, "ownership").reason == "no owner"
    assert factor(score, "documentation").reason == "no description; 0 of 2 columns described"
    quality = factor(score, "quality")
    assert quality.reason.startswith("1 of 2 tests failing: shop_id.column_value_max_to_be_between")
    assert "1 open incident (New)" in quality.reason
    assert quality.score < 0.5
    assert factor(score, "usage").reason == "not used in the last month"
    assert factor(score, "lineage").reason == "no lineage: neither upstream nor downstream known"


def test_many_failing_tests_are_listed_briefly():
    tests = [dq_test(f"t{i}", "Failed") for i in range(5)]
    quality = factor(trust_score(genes(tests=tests)), "quality")
    assert quality.reason == "5 of 5 tests failing: t0, t1, t2, …"
    assert quality.score == 0


def test_no_tests_is_neutral_and_said_so():
    quality = factor(trust_score(genes()), "quality")
    assert (quality.score, quality.reason) == (0.5, "no data-quality tests")


def test_a_mapping_to_a_column_that_no_longer_exists_is_broken_lineage():
    stale = Edge(RAW, "table", ORDERS, "table", None, (((f"{RAW}.state",), f"{ORDERS}.order_status"),))
    lineage = factor(trust_score(genes(upstream=[LOAD, stale])), "lineage")
    assert "1 broken column mapping: order_status" in lineage.reason
    assert lineage.score < 0.75


def test_a_source_table_has_healthy_lineage_when_it_feeds_others():
    feeds = Edge(ORDERS, "table", f"{SHOP}.daily", "table", None, (((f"{ORDERS}.order_id",), f"{SHOP}.daily.id"),))
    lineage = factor(trust_score(genes(upstream=[], downstream=[feeds])), "lineage")
    assert lineage.score == 1.0 and lineage.reason.startswith("a source")


def test_a_failed_loading_pipeline_costs_freshness():
    failed = {"airflow.load": {"status": "Failed", "failed_tasks": ["load_orders"]}}
    freshness = factor(trust_score(genes(pipelines=failed)), "freshness")
    assert freshness.score == 0
    assert freshness.reason == "last run failed: airflow.load (failed tasks: load_orders)"
    unknown = factor(trust_score(genes(upstream=[])), "freshness")
    assert (unknown.score, unknown.reason) == (0.7, "no pipeline information")


def test_a_deleted_entity_scores_zero_with_one_factor():
    score = trust_score(genes(table(deleted=True)))
    assert score.score == 0
    assert score.factors == [TrustFactor("deleted", 100, 0.0, "the entity is deleted in OpenMetadata")]


def test_a_drop_is_flagged_only_past_the_threshold():
    before = trust_score(genes(tests=[dq_test("row_count", "Success")]))
    after = trust_score(genes(table(owners=[]), tests=[dq_test("row_count", "Failed")]))
    assert before.score - after.score >= 15
    assert trust_dropped(before, after)
    assert not trust_dropped(after, before)
    assert not trust_dropped(None, after)
    assert not trust_dropped(before, after, threshold=100)


def test_factors_round_trip_through_json():
    score = trust_score(genes())
    again = TrustScore.from_json(score.score, score.factors_json())
    assert again == score
    assert score.factors[0].__dict__ == score.factors_json()[0]


def test_open_incidents_take_points_off_the_score_shown_now_by_severity():
    now = trust_now(100, [(2, "SEV1"), (5, "SEV3")])
    assert (now.score, now.stored, now.penalty, now.open_incidents) == (60, 100, 40, (2, 5))
    assert now.note() == "100 in the last snapshot, −40 for 2 open incidents"
    assert trust_now(100, [(2, "SEV1"), (2, "SEV1")]).score == 70  # one incident counts once


def test_the_score_shown_now_never_goes_below_zero_and_is_the_snapshots_without_incidents():
    assert (trust_now(25, [(1, "SEV1")]).score, trust_now(25, [(1, "SEV1")]).penalty) == (0, 25)
    calm = trust_now(88, [])
    assert (calm.score, calm.note(), calm.to_dict()["open_incidents"]) == (88, "", [])
    assert trust_now(None, [(1, "SEV2")]).score is None  # not scored stays not scored
