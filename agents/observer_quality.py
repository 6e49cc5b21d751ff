"""OpenMetadata incident states of data-quality tests: what the observer opens from them and when they resolve.

The quality gene carries each test's OpenMetadata incident (`quality.tests[].incident`):
`{"state_id", "status": New|Ack|Assigned|Resolved, "assignee", "severity"}` or None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.store import ChangeView

OPEN_STATES = frozenset({"New", "Ack", "Assigned"})
RESOLVED = "Resolved"
_OM_KEYS = ("state_id", "status", "assignee", "severity")
GenesOf = Callable[[str], "dict[str, Any] | None"]


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
