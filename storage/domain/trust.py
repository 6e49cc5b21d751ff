"""Trust score 0–100 of one entity, computed from its genes, with the factors that explain it.

Formula: ``score = round(Σ weight × factor)``, each factor in 0..1, the weights summing to 100.

- **ownership** (20): 1 when the entity has at least one owner, user or team; else 0.
- **documentation** (15): ½ × (entity has a description) + ½ × share of top-level columns described;
  an entity without columns scores its description alone.
- **quality** (25): share of tests passing among tests with a Success/Failed result, minus 0.1 per open
  incident (floor 0); no tests, or no test with a result yet → 0.5.
- **lineage** (15): 0.4 for having upstream (or being a source: downstream only) + 0.3 × share of upstream
  edges with column mappings (full 0.3 for sources and column-less entities) + 0.3 when no column mapping is
  broken; no lineage at all → 0 (a pipeline without node lineage → 0.5).
- **usage** (10): 0.2 + 0.8 × percentile/100 when used; unused in the last month → 0; no usage data → 0.5.
- **freshness** (15): over the pipelines in ``pipeline.runs`` with a known last run: any Failed → 0,
  all Successful → 1, otherwise (pending, skipped) → 0.7; none known → 0.7.

**The score now, with open incidents** (`trust_now`). The score stored with a snapshot comes from the genes alone,
so a table that a DNA Bot incident says is broken can still score 100. Wherever the score is shown *now* (the why
answer, `dnabot incident N` and its JSON) every open DNA Bot incident (open, acknowledged or snoozed) rooted at the
asset or breaking it takes points off: SEV1 30, SEV2 20, SEV3 10, SEV4 5, floor 0. The stored score is kept as is
(the trust history, trust-drop detection and `dnabot dna` show it).

A deleted entity scores 0 with a single `deleted` factor. A column mapping is *broken* when a column of this
entity it names (the `to` of an upstream mapping, a `from` of a downstream one) is no longer in its schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from storage.openmetadata.fqn import quote_name

WEIGHTS = {"ownership": 20, "documentation": 15, "quality": 25, "lineage": 15, "usage": 10, "freshness": 15}
OPEN_INCIDENT_PENALTY = 0.1
# points an open DNA Bot incident takes off the score shown now (`trust_now`), by severity
INCIDENT_PENALTY = {"SEV1": 30, "SEV2": 20, "SEV3": 10, "SEV4": 5}
MAX_LISTED = 3


@dataclass(frozen=True)
class TrustFactor:
    """One ingredient of the trust score: its weight (points), its score 0..1 and why."""

    name: str
    weight: int
    score: float
    reason: str


@dataclass(frozen=True, slots=True)
class TrustScore:
    """A trust score 0..100 and its factors."""

    score: int
    factors: list[TrustFactor]

    def factors_json(self) -> list[dict[str, Any]]:
        """The factors as plain dicts (the `snapshots.trust_factors` column)."""
        return [asdict(f) for f in self.factors]

    @classmethod
    def from_json(cls, score: int, factors: Sequence[Mapping[str, Any]] | None) -> TrustScore:
        """Rebuild a score read back from the database."""
        return cls(score, [TrustFactor(**f) for f in factors or ()])


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (", …" if len(names) > MAX_LISTED else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _ownership(genes: Mapping[str, Any]) -> tuple[float, str]:
    owners = genes["ownership"]["owners"]
    if not owners:
        return 0.0, "no owner"
    kinds = " and ".join(sorted({o["type"] for o in owners}))
    return 1.0, f"owned by {_listing([o['name'] for o in owners])} ({kinds})"


def _documentation(genes: Mapping[str, Any]) -> tuple[float, str]:
    has_desc = bool(genes["ownership"]["description"])
    columns = genes["schema"]["columns"]
    desc_reason = "has a description" if has_desc else "no description"
    if not columns:
        return float(has_desc), desc_reason
    described = sum(1 for c in columns if c["description"])
    score = 0.5 * has_desc + 0.5 * described / len(columns)
    return score, f"{desc_reason}; {described} of {len(columns)} columns described"


def _test_label(test: Mapping[str, Any]) -> str:
    return f"{test['column']}.{test['name']}" if test["column"] else test["name"]


def _quality(genes: Mapping[str, Any]) -> tuple[float, str]:
    tests = genes["quality"]["tests"]
    if not tests:
        return 0.5, "no data-quality tests"
    failing = [_test_label(t) for t in tests if t["status"] == "Failed"]
    passing = sum(1 for t in tests if t["status"] == "Success")
    open_incidents = [t["incident"] for t in tests if t["incident"] and t["incident"]["status"] != "Resolved"]
    if failing:
        reason = f"{len(failing)} of {len(tests)} tests failing: {_listing(failing)}"
    elif passing:
        pending = len(tests) - passing
        reason = f"{_count(passing, 'test')} passing" + (f", {pending} without a result" if pending else "")
    else:
        reason = f"{len(tests)} tests, none with a result yet"
    score = passing / (passing + len(failing)) if passing + len(failing) else 0.5
    if open_incidents:
        score = max(0.0, score - OPEN_INCIDENT_PENALTY * len(open_incidents))
        states = sorted({i["status"] for i in open_incidents})
        plural = "s" * (len(open_incidents) > 1)
        reason += f"; {len(open_incidents)} open incident{plural} ({', '.join(states)})"
    return score, reason


def _column_fqns(entity_fqn: str, columns: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    for col in columns:
        col_fqn = f"{entity_fqn}.{quote_name(col['name'])}"
        yield col_fqn
        yield from _column_fqns(col_fqn, col["children"])


def _broken_mappings(genes: Mapping[str, Any]) -> list[str]:
    """Column FQNs of this entity named by a mapping but missing from its schema."""
    entity_fqn = genes["entity"]["fqn"]
    columns = genes["schema"]["columns"]
    if not columns:
        return []
    known = set(_column_fqns(entity_fqn, columns))
    prefix = entity_fqn + "."
    named = [m["to"] for e in genes["lineage"]["upstream"] for m in e["columns"]]
    named += [c for e in genes["lineage"]["downstream"] for m in e["columns"] for c in m["from"]]
    return sorted({c for c in named if c.startswith(prefix) and c not in known})


def _lineage(genes: Mapping[str, Any]) -> tuple[float, str]:
    up, down = genes["lineage"]["upstream"], genes["lineage"]["downstream"]
    if not up and not down:
        if genes["entity"]["type"] == "pipeline":
            return 0.5, "no lineage recorded on this pipeline"
        return 0.0, "no lineage: neither upstream nor downstream known"
    has_columns = bool(genes["schema"]["columns"])
    parts = ["has upstream" if up else "a source (downstream only)"]
    score = 0.4
    if up and has_columns:
        mapped = sum(1 for e in up if e["columns"])
        score += 0.3 * mapped / len(up)
        parts.append(f"{mapped} of {len(up)} upstream edges with column-level lineage")
    else:
        score += 0.3
    broken = _broken_mappings(genes)
    if broken:
        names = [c[len(genes["entity"]["fqn"]) + 1 :] for c in broken]
        parts.append(f"{len(broken)} broken column mapping{'s' * (len(broken) > 1)}: {_listing(names)}")
    else:
        score += 0.3
    return score, "; ".join(parts)


def _usage(genes: Mapping[str, Any]) -> tuple[float, str]:
    usage = genes["usage"]
    if usage is None:
        return 0.5, "no usage data"
    if not (usage["monthly"] or usage["weekly"] or usage["daily"]):
        return 0.0, "not used in the last month"
    percentile = usage["percentile"]
    if percentile is None:
        return 0.5, f"used {usage['monthly']} times in the last month"
    score = 0.2 + 0.8 * min(max(percentile, 0.0), 100.0) / 100
    return score, f"used {_count(usage['weekly'], 'time')} in the last week ({_ordinal(round(percentile))} percentile)"


def _run_label(run: Mapping[str, Any]) -> str:
    tasks = run["failed_tasks"]
    return f"{run['fqn']} (failed tasks: {', '.join(tasks)})" if tasks else run["fqn"]


def _freshness(genes: Mapping[str, Any]) -> tuple[float, str]:
    runs = [r for r in genes["pipeline"]["runs"] if r["status"]]
    if not runs:
        return 0.7, "no pipeline information"
    failed = [r for r in runs if r["status"] == "Failed"]
    if failed:
        labels = [_run_label(r) for r in failed]
        return 0.0, f"last run failed: {_listing(labels)}"
    others = [f"{r['fqn']} is {r['status']}" for r in runs if r["status"] != "Successful"]
    if others:
        return 0.7, _listing(others)
    return 1.0, f"last run successful: {_listing([r['fqn'] for r in runs])}"


SCORERS = {
    "ownership": _ownership,
    "documentation": _documentation,
    "quality": _quality,
    "lineage": _lineage,
    "usage": _usage,
    "freshness": _freshness,
}


def trust_score(genes: Mapping[str, Any], *, now: datetime | None = None) -> TrustScore:
    """The trust score of an entity from its genes (formula in the module docstring).

    `now` is accepted for callers with a clock; genes hold no timestamps, so freshness is last-run status.
    """
    del now
    if genes["entity"]["deleted"]:
        return TrustScore(0, [TrustFactor("deleted", 100, 0.0, "the entity is deleted in OpenMetadata")])
    factors = []
    for name, scorer in SCORERS.items():
        score, reason = scorer(genes)
        factors.append(TrustFactor(name, WEIGHTS[name], round(score, 4), reason))
    total = round(sum(f.weight * f.score for f in factors))
    return TrustScore(max(0, min(100, total)), factors)


def trust_dropped(old: TrustScore | None, new: TrustScore, threshold: int = 15) -> bool:
    """Whether the score fell by at least `threshold` points since the last snapshot."""
    return old is not None and old.score - new.score >= threshold


@dataclass(frozen=True, slots=True)
class TrustNow:
    """The trust score shown now: the snapshot's, less the points of the open incidents on the asset."""

    score: int | None
    stored: int | None
    penalty: int
    open_incidents: tuple[int, ...]

    def note(self) -> str:
        """How the shown score came about, e.g. "100 in the last snapshot, −30 for 1 open incident"."""
        if not self.open_incidents or self.stored is None:
            return ""
        n = len(self.open_incidents)
        return f"{self.stored} in the last snapshot, −{self.penalty} for {_count(n, 'open incident')}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "open_incidents": list(self.open_incidents), "note": self.note()}


def trust_now(stored: int | None, open_incidents: Iterable[tuple[int, str]]) -> TrustNow:
    """The score shown now from the stored one and the (id, severity) of the open incidents on the asset."""
    found = sorted(set(open_incidents))
    penalty = sum(INCIDENT_PENALTY.get(severity, 0) for _, severity in found)
    if stored is None:
        return TrustNow(None, None, 0, tuple(i for i, _ in found))
    taken = min(stored, penalty)
    return TrustNow(stored - taken, stored, taken, tuple(i for i, _ in found))
