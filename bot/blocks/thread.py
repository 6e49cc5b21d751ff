"""The technical thread under an incident card (diff, lineage, breaks, causes, sources, fixes) and fix simulations."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from agents.observer_quality import results_of
from bot.blocks.incident import results_section
from bot.blocks.kit import (
    clip,
    code,
    code_block,
    context,
    divider,
    esc,
    fit_text,
    hops,
    join_capped,
    link,
    section,
    split_text,
)
from storage.persistence.incident_views import IncidentDetailView, LinkView

BREAK_LINES = 25
RESULT_LINES = 10
HYPOTHESES = 5
EVIDENCE_PER_HYPOTHESIS = 5
WEB_SOURCES = 8
FIXES = 5


def _words(kind: Any) -> str:
    return esc(str(kind or "").replace("_", " "))


def _value(value: Any) -> str:
    """A changed value, short: scalars as code, structures as compact JSON."""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, separators=(",", ":"), default=str, sort_keys=True)
    return code(clip("∅" if value is None else str(value), 200))


def _change_line(kind: Any, entity: str, subject: Any, old: Any, new: Any) -> str:
    what = f"{code(entity)}" + (f" · {code(subject)}" if subject else "")
    return f"• {what}: {_words(kind)}: {_value(old)} → {_value(new)}"


def _diff_lines(detail: IncidentDetailView, role: str) -> list[str]:
    links: list[LinkView] = [lk for lk in detail.links if lk.role == role]
    return [_change_line(lk.kind, lk.entity_fqn, lk.subject, lk.old_value, lk.new_value) for lk in links]


def _break_line(b: Mapping[str, Any]) -> str:
    target = b.get("entity_fqn", "?") + (f".{b['column']}" if b.get("column") else "")
    n = b.get("distance")
    where = ", ".join(x for x in (esc(b.get("entity_type") or ""), hops(n) if n is not None else "") if x)
    return f"• {code(target)}" + (f" ({where})" if where else "") + f": {_words(b.get('reason'))}"


def _lineage_path(details: Mapping[str, Any]) -> list[str]:
    paths = [h.get("path") for h in details.get("hypotheses") or [] if h.get("path")]
    if paths:
        return [" → ".join(code(p) for p in paths[0])]
    vias = {(*(b.get("via") or ()), b.get("entity_fqn")) for b in details.get("breaks") or [] if b.get("via")}
    return [" → ".join(code(p) for p in chain) for chain in sorted(vias, key=len, reverse=True)[:3]]


def _what_changed(detail: IncidentDetailView) -> list[dict[str, Any]]:
    d = detail.incident.details or {}
    blocks = [section(":mag: *What changed*")]
    diff = _diff_lines(detail, "cause")
    cause = d.get("cause") or {}
    if not diff and cause:
        diff = [_change_line(cause.get("kind"), cause.get("entity_fqn", "?"), cause.get("subject"),
                             cause.get("old_value"), cause.get("new_value"))]  # fmt: skip
    blocks.append(section(join_capped(diff, max_lines=10) if diff else "_No recorded change; see the evidence below._"))
    why = (cause.get("details") or {}).get("why")
    if why:
        blocks.append(context(f"Matched because: {esc(why)}"))
    results = results_section(results_of(d, detail.links), max_lines=RESULT_LINES)
    if results is not None:
        blocks.append(results)
    symptoms = _diff_lines(detail, "symptom")
    if symptoms:
        blocks.append(section("*Symptoms in the same incident*\n" + join_capped(symptoms, 2900, max_lines=10)))
    path = _lineage_path(d)
    if path:
        blocks.append(section("*Lineage*\n" + join_capped(path, 2900)))
    breaks = d.get("breaks") or []
    if breaks:
        lines = [_break_line(b) for b in breaks]
        blocks.append(section(f"*What breaks ({len(breaks)})*\n" + join_capped(lines, 2900, max_lines=BREAK_LINES)))
    return blocks


def _evidence_line(e: Mapping[str, Any]) -> str:
    text = clip(str(e.get("summary") or e.get("ref") or ""), 300)
    label = link(e.get("url"), text) if e.get("url") else esc(text)
    return f"  ◦ {label}"


def _web_sources(detail: IncidentDetailView) -> list[Mapping[str, Any]]:
    d = detail.incident.details or {}
    found: dict[str, Mapping[str, Any]] = {}
    items = [*(d.get("web") or []), *({"url": e.url, "summary": e.summary, "data": e.data, "ref": e.ref}
                                      for e in detail.evidence if e.kind == "web")]  # fmt: skip
    for item in items:
        url = item.get("url") or item.get("ref")
        if url and url not in found:
            found[url] = {**item, "url": url}
    return list(found.values())


def _why(detail: IncidentDetailView) -> list[dict[str, Any]]:
    d = detail.incident.details or {}
    hypotheses = d.get("hypotheses") or []
    web = _web_sources(detail)
    if not hypotheses and not web:
        return []
    blocks = [section(":brain: *Likely causes*")]
    for h in hypotheses[:HYPOTHESES]:
        pct = round(float(h.get("confidence") or 0) * 100)
        evidence = [_evidence_line(e) for e in h.get("evidence") or []]
        title = f"*{pct}%* {esc(h.get('summary') or h.get('cause_fqn') or '?')}"
        blocks.append(section(title + "\n" + join_capped(evidence, 2500, max_lines=EVIDENCE_PER_HYPOTHESIS)))
    if len(hypotheses) > HYPOTHESES:
        blocks.append(context(f"…and {len(hypotheses) - HYPOTHESES} more hypotheses"))
    if web:
        lines = []
        for w in web:
            title = (w.get("data") or {}).get("title") or w.get("summary") or w["url"]
            snippet = (w.get("data") or {}).get("snippet")
            lines.append(
                f"• {link(w['url'], clip(str(title), 150))}" + (f": _{esc(clip(snippet, 200))}_" if snippet else "")
            )
        blocks.append(
            section(":globe_with_meridians: *Outside context*\n" + join_capped(lines, 2900, max_lines=WEB_SOURCES))
        )
    explanation = d.get("explanation") or {}
    source = explanation.get("source")
    if source:
        note = f" ({esc(explanation['fallback_reason'])})" if explanation.get("fallback_reason") else ""
        blocks.append(context(f"Explanation written by: {esc(source)}{note}"))
    return blocks


def fix_blocks(fix: Mapping[str, Any], total: int | None = None) -> list[dict[str, Any]]:
    """One proposed fix: title, "resolves X of Y breaks", its SQL in a code block and its steps."""
    resolves = len(fix.get("resolves") or [])
    remains = fix.get("remains") or []
    total = total if total is not None else resolves + len(remains)
    tag = "simulated" if fix.get("simulated") else "not simulated"
    title = esc(fix.get("title") or fix.get("kind") or "Fix")
    blocks = [section(f":wrench: *{title}*\n_{tag}: resolves {resolves} of {total} breaks_")]
    if fix.get("sql"):
        blocks.append(section(code_block(str(fix["sql"]))))
    steps = [f"{i}. {esc(s)}" for i, s in enumerate(fix.get("steps") or [], 1)]
    if steps:
        blocks.append(section(join_capped(steps, max_lines=10)))
    if remains:
        left = [_break_line(b) for b in remains]
        blocks.append(section("*Still broken after this fix*\n" + join_capped(left, 2900, max_lines=10)))
    return blocks


def _fixes(details: Mapping[str, Any]) -> list[dict[str, Any]]:
    fixes = details.get("fixes") or []
    if not fixes:
        return []
    total = len(details.get("breaks") or []) or None
    blocks = [section(":hammer_and_wrench: *Proposed fixes*")]
    for i, fix in enumerate(fixes[:FIXES]):
        if i:
            blocks.append(divider())
        blocks.extend(fix_blocks(fix, total))
    if len(fixes) > FIXES:
        blocks.append(context(f"…and {len(fixes) - FIXES} more fixes"))
    blocks.append(context("Proposals only: DNA Bot has not run or changed anything."))
    return blocks


def render_incident_thread(detail: IncidentDetailView) -> list[list[dict[str, Any]]]:
    """The technical replies under the card: what changed, likely causes, proposed fixes — each part as many
    consecutive replies as Slack's total-text cap per message needs (a wide incident's fixes carry ~20k
    characters), so nothing is cut; `dnabot incident N` shows the same in one piece."""
    parts = [_what_changed(detail), _why(detail), _fixes(detail.incident.details or {})]
    return [message for part in parts if part for message in split_text(part)]


def render_simulation(fixes: Sequence[Mapping[str, Any]], *, pointer: str | None = None) -> list[dict[str, Any]]:
    """The ephemeral answer to "Simulate fix": each fix with what it would resolve, and what would remain; within
    one message (`pointer` says where the rest is, when some had to be left out)."""
    if not fixes:
        return [section(":test_tube: No fix to simulate for this incident yet.")]
    blocks = [section(":test_tube: *Fix simulation*")]
    for i, fix in enumerate(fixes[:FIXES]):
        if i:
            blocks.append(divider())
        blocks.extend(fix_blocks(fix))
    if len(fixes) > FIXES:
        blocks.append(context(f"…and {len(fixes) - FIXES} more fixes"))
    blocks.append(context("A simulation on the stored lineage: nothing was run or changed."))
    return fit_text(blocks, pointer=pointer)
