"""Observer stories about a failing test's result text: kept with the incident, newest first, short and plain."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agents.model import incident_fingerprint
from agents.observer_quality import RESULT_CHARS, results_of
from tests.agents import ORDERS, T0, Catalog, change, later
from tests.agents.test_observer import TEST_FQN, failing_test_row, run, stored

TEST_FP = incident_fingerprint("test", TEST_FQN)
ROW_COUNT = f"{ORDERS}.row_count"


def gene_test(result: str, status: str = "Failed", **extra: Any) -> dict[str, Any]:
    """The status_accepted_values test on orders.status as the quality gene holds it."""
    return {"fqn": TEST_FQN, "name": "status_accepted_values", "column": "status", "status": status,
            "result": result, "incident": None, **extra}  # fmt: skip


def opened(result_text: str = "3 unexpected values") -> tuple[Catalog, Any]:
    """Given orders.status failing its accepted-values test: the catalog and the incident as stored."""
    catalog = Catalog().set(ORDERS, tests=[gene_test(result_text)])
    result = run([failing_test_row(201, T0)], catalog)
    [draft] = result.drafts
    return catalog, stored(draft, result, id=7)


def test_a_failing_test_keeps_its_result_text_and_when_the_sync_saw_it():
    _, incident = opened()
    [kept] = incident.details["test_results"]
    assert kept["test_fqn"] == TEST_FQN and kept["text"] == "3 unexpected values"
    assert kept["seen_at"] == T0.isoformat() and kept["measured_at"] is None
    assert (kept["entity_fqn"], kept["column"]) == (ORDERS, "status")
    assert results_of(incident.details) == [kept]


def test_openmetadatas_time_and_short_values_are_kept_when_the_gene_has_them():
    values = [{"name": "unexpectedCount", "value": "3"}, {"name": "sample", "value": "x" * 200}]
    catalog = Catalog().set(
        ORDERS, tests=[gene_test("3 unexpected values", result_at=1_767_225_600_000, values=values)]
    )
    result = run([failing_test_row(201, T0)], catalog)
    [kept] = result.details[TEST_FP]["test_results"]
    assert kept["measured_at"] == "2026-01-01T00:00:00+00:00"
    assert kept["values"] == [{"name": "unexpectedCount", "value": "3"}]  # the long one is not "short"


def test_the_text_is_kept_as_one_plain_clipped_line():
    nasty = "bad\x1b[31m rows\n\u202etxet\t" + "y" * 1000
    catalog = Catalog().set(ORDERS, tests=[gene_test(nasty)])
    [kept] = run([failing_test_row(201, T0)], catalog).details[TEST_FP]["test_results"]
    assert len(kept["text"]) == RESULT_CHARS and kept["text"].endswith("…")
    assert kept["text"].startswith("bad [31m rows txet y") and not any(ord(c) < 32 for c in kept["text"])


def test_a_second_test_failing_in_the_same_run_brings_its_text_into_the_incident():
    second = change(202, "test_newly_failing", ORDERS, ROW_COUNT, "Success", "Failed",
                    details={"column": None, "result": "Found 0 rows", "incident": None}, at=T0)  # fmt: skip
    catalog = Catalog().set(ORDERS, tests=[gene_test("3 unexpected values")])
    result = run([failing_test_row(201, T0), second], catalog)
    [draft] = result.drafts
    texts = [(e["test_fqn"], e["text"]) for e in result.details[draft.fingerprint]["test_results"]]
    assert texts == [(TEST_FQN, "3 unexpected values"), (ROW_COUNT, "Found 0 rows")]


def test_a_test_still_failing_with_another_text_refreshes_its_open_incident():
    catalog, incident = opened()
    catalog.set(ORDERS, tests=[gene_test("9 unexpected values")])
    result = run([], catalog, incidents=[incident], now=later(2))
    assert result.drafts == [] and result.resolve == []
    [(incident_id, patch)] = result.refresh
    [newest] = patch["test_results"]
    assert incident_id == 7 and newest["text"] == patch["result"] == "9 unexpected values"
    assert newest["seen_at"] == later(2).isoformat()


def test_the_same_text_again_refreshes_nothing():
    catalog, incident = opened()
    assert run([], catalog, incidents=[incident], now=later(2)).refresh == []


def test_a_test_joining_an_open_incident_is_added_to_what_it_keeps():
    catalog, incident = opened()
    second = change(301, "test_newly_failing", ORDERS, ROW_COUNT, "Success", "Failed",
                    details={"column": None, "result": "Found 0 rows", "incident": None}, at=later(1))  # fmt: skip
    result = run([second], catalog, incidents=[incident], now=later(1))
    assert result.attach == [(7, [301])]
    [(_, patch)] = result.refresh
    assert [e["text"] for e in patch["test_results"]] == ["3 unexpected values", "Found 0 rows"]


def test_an_incident_opened_before_results_were_kept_gets_them_on_the_next_run():
    catalog, incident = opened()
    legacy = {k: v for k, v in incident.details.items() if k != "test_results"}
    [(_, patch)] = run([], catalog, incidents=[replace(incident, details=legacy)], now=later(1)).refresh
    assert [e["text"] for e in patch["test_results"]] == ["3 unexpected values"]
    assert results_of(legacy)[0]["text"] == "3 unexpected values"  # shown before that run, too


def test_a_recovered_test_resolves_its_incident_and_refreshes_nothing():
    catalog, incident = opened()
    catalog.set(ORDERS, tests=[gene_test("0 unexpected values", status="Success")])
    result = run([], catalog, incidents=[incident], now=later(1))
    assert [i for i, _ in result.resolve] == [7] and result.refresh == []
