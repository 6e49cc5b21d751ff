"""Incident severity SEV1..SEV4: a base by incident kind, then the modifiers of docs/agents.md."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agents.model import Break

LEVELS = ("SEV1", "SEV2", "SEV3", "SEV4")
TIER1 = "Tier.Tier1"
MANY_COLUMNS = 10
MANY_ASSETS = 5
HOT_PERCENTILE = 80.0

BASE_SEVERITY: dict[str, str] = {
    "breaking_schema_change": "SEV2",
    "lineage_edge_lost": "SEV2",
    "test_failing": "SEV3",
    "pipeline_failed": "SEV3",
    "ownership_lost": "SEV4",
    "trust_drop": "SEV4",
}

# The whole rule set as data, so the README (and the bot's help) can show exactly what the code applies.
SEVERITY_TABLE: dict[str, Any] = {
    "levels": LEVELS,
    "base": BASE_SEVERITY,
    "modifiers": (
        ("≥ 1 dashboard impacted", "one level up"),
        (f"≥ {MANY_COLUMNS} impacted columns or ≥ {MANY_ASSETS} impacted assets", "one level up"),
        (
            f"root or any impacted asset is {TIER1} (or the root's usage percentile ≥ {HOT_PERCENTILE:g})",
            "one level up",
        ),
        ("nothing downstream, unused and untiered", "one level down"),
    ),
}


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _tier(genes: Mapping[str, Any] | None) -> str | None:
    if not genes:
        return None
    ownership = genes.get("ownership") or {}
    if ownership.get("tier"):
        return str(ownership["tier"])
    return next((t for t in ownership.get("tags") or () if str(t).startswith("Tier.")), None)


def _fqn(genes: Mapping[str, Any]) -> str:
    return str((genes.get("entity") or {}).get("fqn") or "?")


def is_used(genes: Mapping[str, Any] | None) -> bool:
    """Whether the entity was used at all recently (any daily, weekly or monthly usage count above 0)."""
    usage = (genes or {}).get("usage") or {}
    return any((usage.get(k) or 0) > 0 for k in ("daily", "weekly", "monthly"))


def _percentile(genes: Mapping[str, Any] | None) -> float | None:
    usage = (genes or {}).get("usage") or {}
    value = usage.get("percentile")
    return float(value) if isinstance(value, (int, float)) else None


def _tier1_reason(root_genes: Mapping[str, Any] | None, impacted: Iterable[Mapping[str, Any] | None]) -> str | None:
    if _tier(root_genes) == TIER1:
        return f"{TIER1} asset impacted: {_fqn(root_genes or {})} (the root)"
    for genes in impacted:
        if genes and _tier(genes) == TIER1:
            return f"{TIER1} asset impacted: {_fqn(genes)}"
    percentile = _percentile(root_genes)
    if percentile is not None and percentile >= HOT_PERCENTILE:
        return f"heavily used root: {percentile:g}th usage percentile"
    return None


def impacted_breaks(breaks: Iterable[Break]) -> list[Break]:
    """The breaks downstream of the root (distance > 0); the root's own break (no owner, failing test) is not."""
    return [b for b in breaks if b.distance > 0]


def severity(
    kind: str,
    *,
    breaks: Sequence[Break],
    dashboards: Sequence[str],
    root_genes: Mapping[str, Any] | None,
    impacted_genes: Iterable[Mapping[str, Any] | None] = (),
) -> tuple[str, tuple[str, ...]]:
    """The severity of an incident and the human reasons of the modifiers that applied."""
    if kind not in BASE_SEVERITY:
        raise ValueError(f"unknown incident kind {kind!r}")
    level = LEVELS.index(BASE_SEVERITY[kind])
    reasons: list[str] = []
    downstream = impacted_breaks(breaks)
    if dashboards:
        level -= 1
        reasons.append(f"{_plural(len(dashboards), 'dashboard')} impacted")
    columns = {(b.entity_fqn, b.column) for b in downstream if b.column is not None}
    assets = {b.entity_fqn for b in downstream if b.entity_type != "chart"}
    if len(columns) >= MANY_COLUMNS or len(assets) >= MANY_ASSETS:
        level -= 1
        reasons.append(f"{_plural(len(columns), 'column')} in {_plural(len(assets), 'asset')} impacted")
    tier1 = _tier1_reason(root_genes, impacted_genes)
    if tier1:
        level -= 1
        reasons.append(tier1)
    if not downstream and not dashboards and not is_used(root_genes) and _tier(root_genes) is None:
        level += 1
        reasons.append("nothing downstream, unused and untiered")
    return LEVELS[max(0, min(len(LEVELS) - 1, level))], tuple(reasons)
