"""Data-quality tests in incidents: OpenMetadata incident states, when they resolve, and the results kept.

The quality gene carries each test's OpenMetadata incident (`quality.tests[].incident`):
`{"state_id", "status": New|Ack|Assigned|Resolved, "assignee", "severity"}` or None, and its latest `result`
text. An incident keeps the latest result of each failing test it holds in `details["test_results"]` (see
`result_entry`); the renderers read them back with `results_of`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.model import IncidentLike
from storage.persistence.store import ChangeView

OPEN_STATES = frozenset({"New", "Ack", "Assigned"})
RESOLVED = "Resolved"
_OM_KEYS = ("state_id", "status", "assignee", "severity")
GenesOf = Callable[[str], "dict[str, Any] | None"]
RESULT_CHARS = 300  # of a result text kept in an incident (OpenMetadata's own can run to pages)
VALUE_CHARS = 60  # a failing value (`name` + `value`) longer than this is left out: not "short"
VALUES_KEPT = 5
RESULTS_KEPT = 10  # tests whose results one incident keeps
# Control characters (newlines, ANSI escapes) and invisible or direction-changing ones: never kept in text
# that a terminal or Slack shows.
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+")


def tests_of(genes: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The test entries of an entity's quality gene."""
    return [t for t in ((genes or {}).get("quality") or {}).get("tests") or () if isinstance(t, Mapping)]


def find_test(genes: Mapping[str, Any] | None, test_fqn: str) -> Mapping[str, Any] | None:
    """The quality-gene entry of one test, or None."""
    return next((t for t in tests_of(genes) if t.get("fqn") == test_fqn), None)


def om_incident(holder: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`{state_id, status, assignee, severity}` of the OpenMetadata incident in a test entry (or a change's
    details, which carry the same `incident` key), None when there is none."""
    incident = (holder or {}).get("incident")
    if not isinstance(incident, Mapping) or not incident.get("status"):
        return None
    return {k: incident.get(k) for k in _OM_KEYS}


def is_open_in_om(test: Mapping[str, Any]) -> bool:
    """Whether the test fails now and OpenMetadata holds an unresolved incident for it."""
    incident = om_incident(test)
    return test.get("status") == "Failed" and incident is not None and incident["status"] in OPEN_STATES


def resolved_note(test: Mapping[str, Any]) -> str | None:
    """The auto-resolve note when the test's OpenMetadata incident is Resolved, else None."""
    incident = om_incident(test)
    if incident is None or incident["status"] != RESOLVED:
        return None
    return "resolved in OpenMetadata" + (f", assigned to {incident['assignee']}" if incident["assignee"] else "")


@dataclass(frozen=True)
class OpenTest:
    """A failing test with an open OpenMetadata incident, on an entity this run's changes touched."""

    entity: str
    test: Mapping[str, Any]
    change_ids: tuple[int, ...]  # this run's rows about the test itself (test_added, …); may be empty
    first_row: int  # the first row of this run on the entity (orders drafts that have no row of their own)
    at: datetime  # the latest row of this run on the entity

    @property
    def fqn(self) -> str:
        return str(self.test.get("fqn"))


def open_in_om(
    changes: Sequence[ChangeView],
    genes_of: GenesOf,
    skip: Iterable[str] = (),
    *,
    extra: Iterable[str] = (),
    now: datetime | None = None,
) -> list[OpenTest]:
    """Tests failing with an open OpenMetadata incident on the entities of `changes` (sorted by id).

    The observer only sees changes, so only entities with a change in this run are looked at; `skip` holds
    test FQNs already handled (a `test_newly_failing` row of this run).
    """
    skipped = set(skip)
    rows_by_entity: dict[str, list[ChangeView]] = {}
    for c in changes:
        rows_by_entity.setdefault(c.entity_fqn, []).append(c)
    out: list[OpenTest] = []
    for entity, rows in rows_by_entity.items():
        for test in tests_of(genes_of(entity)):
            fqn = str(test.get("fqn"))
            if fqn in skipped or not is_open_in_om(test):
                continue
            skipped.add(fqn)
            ids = tuple(r.id for r in rows if r.subject == fqn)
            out.append(OpenTest(entity, test, ids, rows[0].id, max(r.detected_at for r in rows)))
    for entity in extra:  # no change this run (the first sync): no rows, sorted after those that have some
        if entity in rows_by_entity or now is None:
            continue
        for test in tests_of(genes_of(entity)):
            fqn = str(test.get("fqn"))
            if fqn in skipped or not is_open_in_om(test):
                continue
            skipped.add(fqn)
            out.append(OpenTest(entity, test, (), 1 << 62, now))
    return out


# ------------------------------------------------------------------------------------------ results kept


def plain(value: Any, limit: int) -> str:
    """Metadata text as one plain line: hidden and control characters become spaces, cut to `limit` with "…"."""
    text = " ".join(_HIDDEN.sub(" ", str(value)).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _iso(value: Any) -> str | None:
    """An OpenMetadata timestamp (epoch milliseconds, or ISO text) as ISO-8601 UTC; None when absent or bad."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / 1000, UTC).isoformat()
        if isinstance(value, str) and value:
            at = datetime.fromisoformat(value)
            return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None
    return None


def _short_values(values: Any) -> list[dict[str, str]]:
    """The failing values (`testResultValue`s: name and value) that are short, at most `VALUES_KEPT`."""
    if not isinstance(values, Sequence) or isinstance(values, str):
        return []
    out = []
    for v in values:
        if isinstance(v, Mapping) and v.get("name") is not None and v.get("value") is not None:
            name, value = plain(v["name"], VALUE_CHARS + 1), plain(v["value"], VALUE_CHARS + 1)
            if len(name) + len(value) <= VALUE_CHARS:
                out.append({"name": name, "value": value})
    return out[:VALUES_KEPT]


def result_entry(entity: str, test_fqn: str, source: Mapping[str, Any], seen_at: datetime | None) -> dict[str, Any]:
    """What an incident keeps of a failing test's latest result: its text (plain, clipped), short values, when.

    `source` is the test's quality-gene entry or its change row's details (`result`, `column`). `measured_at`
    is OpenMetadata's time of the result when the gene carries it (`result_at`, with `values`); `seen_at` is
    when a sync saw the result.
    """
    text = source.get("result")
    return {
        "test_fqn": test_fqn,
        "entity_fqn": entity,
        "column": source.get("column"),
        "text": plain(text, RESULT_CHARS) if text not in (None, "") else None,
        "values": _short_values(source.get("values")),
        "measured_at": _iso(source.get("result_at")),
        "seen_at": seen_at.astimezone(UTC).isoformat() if seen_at else None,
    }


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("text", "values", "measured_at"))


def merge_results(kept: Iterable[Mapping[str, Any]], newer: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`kept` with each of `newer` in its test's place: a different result replaces the old one, the same one
    keeps its first `seen_at`; at most `RESULTS_KEPT` tests, the first ones (the incident's own) kept."""
    out = {str(e.get("test_fqn")): dict(e) for e in kept if isinstance(e, Mapping)}
    for e in newer:
        fqn = str(e.get("test_fqn"))
        if fqn not in out or not _same(out[fqn], e):
            out[fqn] = dict(e)
    return list(out.values())[:RESULTS_KEPT]


def _kept(inc: IncidentLike) -> list[dict[str, Any]]:
    """The results an open incident keeps; for one opened before incidents kept them, its own test."""
    d = inc.details or {}
    kept = [dict(e) for e in d.get("test_results") or () if isinstance(e, Mapping)]
    if not kept and inc.kind == "test_failing" and d.get("test_fqn"):
        kept = [result_entry(inc.root_fqn, str(d["test_fqn"]), {"result": d.get("result")}, None)]
    return kept


def refreshed(
    open_incidents: Iterable[IncidentLike],
    genes_of: GenesOf,
    joined: Mapping[int, Sequence[Mapping[str, Any]]],
    now: datetime,
) -> list[tuple[int, dict[str, Any]]]:
    """(incident id, details patch) for open incidents whose failing tests have a newer result in the genes
    (the test failed again with another text), or that tests joined in this run (`joined`)."""
    out = []
    for inc in open_incidents:
        kept = _kept(inc)
        newer = []
        for e in kept:
            entity, fqn = str(e.get("entity_fqn") or inc.root_fqn), str(e.get("test_fqn"))
            test = find_test(genes_of(entity), fqn)
            if test is not None and test.get("status") == "Failed" and test.get("result"):
                newer.append(result_entry(entity, fqn, test, now))
        merged = merge_results(kept, [*newer, *joined.get(inc.id, ())])
        if merged != [dict(e) for e in (inc.details or {}).get("test_results") or ()]:
            patch: dict[str, Any] = {"test_results": merged}
            own = next((e for e in merged if e.get("test_fqn") == (inc.details or {}).get("test_fqn")), None)
            if own is not None:
                patch["result"] = own.get("text")
            out.append((inc.id, patch))
    return out


def results_of(details: Mapping[str, Any] | None, links: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """The failing tests' results an incident shows: those it keeps (for an older incident, its `result`), then
    those of failing-test symptoms linked to it (a `storage.persistence.incident_views.LinkView`), as their sync saw
    them."""
    d = details or {}
    shown = [dict(e) for e in d.get("test_results") or () if isinstance(e, Mapping)]
    if not shown and d.get("test_fqn") and d.get("result"):
        shown = [result_entry(str(d.get("root_fqn") or ""), str(d["test_fqn"]), {"result": d["result"]}, None)]
    known = {e.get("test_fqn") for e in shown}
    for link in links:
        source = getattr(link, "details", None) or {}
        if link.kind == "test_newly_failing" and link.subject not in known and source.get("result"):
            shown.append(result_entry(link.entity_fqn, str(link.subject), source, link.detected_at))
            known.add(link.subject)
    return [e for e in shown if e.get("text") or e.get("values")]
