"""Answers to `/dna show`, `blast`, `timeline` and `why` (and mentions) as Block Kit JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agents.why import WhyAnswer
from bot.blocks.kit import (
    MESSAGE_BLOCKS,
    cap_blocks,
    clip,
    code,
    context,
    esc,
    fit_text,
    header,
    hops,
    join_capped,
    link,
    section,
    short_name,
    text_sections,
    trust_emoji,
    when,
)
from storage.domain.lineage import BlastRadius
from storage.persistence.store import ChangeView, SnapshotView

SCHEMA_LINES = 15
LINEAGE_LINES = 8
TEST_LINES = 10
BLAST_LINES = 20
TIMELINE_LINES = 30


def _words(kind: Any) -> str:
    return esc(str(kind or "").replace("_", " "))


def trust_factors(raw: Any) -> list[Mapping[str, Any]]:
    """The factor list whichever way it was stored: a list, `{"factors": [...]}` or `{name: {...}}`."""
    if isinstance(raw, Mapping):
        raw = raw.get("factors") if "factors" in raw else [{"name": k, **v} for k, v in raw.items()]
    return [f for f in raw or [] if isinstance(f, Mapping)]


def _factor_line(f: Mapping[str, Any]) -> str:
    weight = f.get("weight")
    score = f.get("score")
    points = f"{round(float(score) * float(weight))}/{weight}" if weight is not None and score is not None else "?"
    return f"• *{esc(f.get('name', '?'))}* {points}: {esc(f.get('reason') or '')}"


def _column_line(c: Mapping[str, Any]) -> str:
    kind = esc(c.get("type_display") or c.get("type") or "")
    desc = f": {esc(clip(c['description'], 120))}" if c.get("description") else ""
    return f"• {code(c.get('name', '?'))} {kind}{desc}"


def _test_line(t: Mapping[str, Any]) -> str:
    mark = {"Success": ":white_check_mark:", "Failed": ":x:", "Aborted": ":warning:"}.get(
        str(t.get("status")), ":grey_question:"
    )
    result = f": {esc(clip(str(t['result']), 150))}" if t.get("result") else ""
    return f"{mark} {code(t.get('name', '?'))}{result}"


def _edge_lines(edges: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"• {code(e.get('fqn', '?'))}" + (f" ({esc(e['type'])})" if e.get("type") else "") for e in edges]


def render_dna_card(view: SnapshotView) -> list[dict[str, Any]]:
    """One asset's DNA: trust score with the reasons behind it, owners, tier, schema, lineage and tests."""
    genes = view.genes or {}
    entity = genes.get("entity") or {}
    ownership = genes.get("ownership") or {}
    name = entity.get("display_name") or entity.get("name") or short_name(view.entity_fqn)
    blocks = [header(f":dna: {name}")]
    about = esc(clip(ownership["description"], 600)) + "\n" if ownership.get("description") else ""
    blocks.append(section(f"{about}{code(view.entity_fqn)}"))
    owners = [esc(o.get("display_name") or o.get("name")) for o in ownership.get("owners") or []]
    usage = genes.get("usage") or {}
    score = view.trust_score
    fields = [
        f"*Trust*\n{trust_emoji(score)} {score if score is not None else 'not scored'}"
        + ("/100" if score is not None else ""),
        f"*Type*\n{esc(view.entity_type)}",
        f"*Service*\n{esc(entity.get('service') or '?')}"
        + (f" ({esc(entity['service_type'])})" if entity.get("service_type") else ""),
        f"*Tier*\n{esc(ownership.get('tier') or 'none')}",
        f"*Owners*\n{', '.join(owners[:5]) or '_nobody_'}" + (f" +{len(owners) - 5}" if len(owners) > 5 else ""),
    ]
    if usage.get("weekly") is not None:
        fields.append(f"*Usage*\n{usage['weekly']} queries last week")
    blocks.append(section(fields=fields))
    factors = [_factor_line(f) for f in trust_factors(view.trust_factors)]
    if factors:
        blocks.append(section("*Why this trust score*\n" + join_capped(factors, 2900)))
    columns = (genes.get("schema") or {}).get("columns") or []
    if columns:
        lines = [_column_line(c) for c in columns]
        blocks.append(
            section(f"*Schema ({len(columns)} columns)*\n" + join_capped(lines, 2900, max_lines=SCHEMA_LINES))
        )
    lineage = genes.get("lineage") or {}
    up, down = lineage.get("upstream") or [], lineage.get("downstream") or []
    if up or down:
        blocks.append(
            section(
                fields=[
                    f"*Upstream ({len(up)})*\n"
                    + (join_capped(_edge_lines(up), 1900, max_lines=LINEAGE_LINES) or "none"),
                    f"*Downstream ({len(down)})*\n"
                    + (join_capped(_edge_lines(down), 1900, max_lines=LINEAGE_LINES) or "none"),
                ]
            )
        )
    tests = (genes.get("quality") or {}).get("tests") or []
    failing = sum(1 for t in tests if t.get("status") == "Failed")
    if tests:
        lines = [_test_line(t) for t in sorted(tests, key=lambda t: t.get("status") != "Failed")]
        title = f"*Tests ({len(tests)}, {failing} failing)*\n"
        blocks.append(section(title + join_capped(lines, 2900, max_lines=TEST_LINES)))
    else:
        blocks.append(section("*Tests*\n_no data-quality tests_"))
    notes = [f"Snapshot {when(view.taken_at)} · sync run #{view.sync_run_id}"]
    if view.deleted:
        notes.insert(0, ":warning: deleted in OpenMetadata")
    blocks.append(context(*notes))
    return fit_text(cap_blocks(blocks, MESSAGE_BLOCKS), pointer=code(f"dnabot dna {view.entity_fqn}"))


def render_blast(radius: BlastRadius) -> list[dict[str, Any]]:
    """What sits downstream of an asset or a column: dashboards and charts first, then every asset and column."""
    root = radius.root + (f".{radius.column}" if radius.column else "")
    blocks = [
        header(f":boom: Blast radius of {short_name(radius.root)}" + (f".{radius.column}" if radius.column else ""))
    ]
    if not (radius.entities or radius.columns or radius.dashboards or radius.charts):
        blocks.append(section(f"Nothing downstream of {code(root)}: a change here breaks nothing we know of."))
        return blocks
    counts = [
        f"{len(radius.entities)} assets",
        f"{len(radius.dashboards)} dashboards",
        f"{len(radius.charts)} charts",
        f"{len(radius.pipelines)} pipelines",
    ]
    if radius.column:
        counts.append(f"{len(radius.columns)} columns")
    blocks.append(section(f"{code(root)} feeds " + ", ".join(counts) + "."))
    for title, emoji, names in (
        ("Dashboards", ":bar_chart:", radius.dashboards),
        ("Charts", ":chart_with_upwards_trend:", radius.charts),
    ):
        if names:
            lines = [f"{emoji} {code(n)}" for n in names]
            blocks.append(section(f"*{title} ({len(names)})*\n" + join_capped(lines, 2900, max_lines=10)))
    if radius.entities:
        lines = [
            f"• {code(e.fqn)} ({esc(e.type or '?')}, {hops(e.distance)}"
            + (", table-level lineage only" if e.certainty == "table" else "")
            + ")"
            for e in radius.entities
        ]
        blocks.append(
            section(f"*Assets by distance ({len(lines)})*\n" + join_capped(lines, 2900, max_lines=BLAST_LINES))
        )
    if radius.columns:
        lines = [f"• {code(f'{c.entity_fqn}.{c.column}')} ({hops(c.distance)})" for c in radius.columns]
        blocks.append(section(f"*Columns ({len(lines)})*\n" + join_capped(lines, 2900, max_lines=BLAST_LINES)))
    if radius.pipelines:
        lines = [f"• {code(p)}" for p in radius.pipelines]
        blocks.append(section(f"*Pipelines ({len(lines)})*\n" + join_capped(lines, 2900, max_lines=10)))
    return fit_text(
        cap_blocks(blocks, MESSAGE_BLOCKS),
        pointer=code(f"dnabot blast {radius.root}" + (f" -c {radius.column}" if radius.column else "")),
    )


def _since_text(since: datetime | str | None) -> str:
    if since is None:
        return "the beginning"
    return when(since) if isinstance(since, datetime) else esc(since)


def _timeline_line(c: ChangeView, fqn: str) -> str:
    where = "" if c.entity_fqn == fqn else f" on {code(c.entity_fqn)}"
    subject = f" {code(c.subject)}" if c.subject else ""
    values = ""
    if c.old_value is not None or c.new_value is not None:
        values = f": {code(clip(str(c.old_value), 80))} → {code(clip(str(c.new_value), 80))}"
    sure = f" ({round(c.confidence * 100)}% sure)" if c.confidence is not None and c.confidence < 1 else ""
    return f"• {when(c.detected_at)} *{_words(c.kind)}*{subject}{where}{values}{sure}"


def render_timeline(fqn: str, changes: Sequence[ChangeView], since: datetime | str | None) -> list[dict[str, Any]]:
    """What changed on an asset since a moment, newest first."""
    blocks = [header(f":clock3: Timeline of {short_name(fqn)}"), context(f"{code(fqn)} · since {_since_text(since)}")]
    if not changes:
        blocks.append(section(f"No changes since {_since_text(since)}."))
        return blocks
    ordered = sorted(changes, key=lambda c: c.detected_at, reverse=True)
    lines = [_timeline_line(c, fqn) for c in ordered]
    blocks.append(section(f"*{len(lines)} change(s)*\n" + join_capped(lines, 2900, max_lines=TIMELINE_LINES)))
    return fit_text(blocks, pointer=code(f"dnabot timeline {fqn}"))


def _citation(ref: str) -> str:
    return link(ref, clip(ref, 80)) if ref.startswith(("http://", "https://")) else code(ref)


def render_why(answer: WhyAnswer) -> list[dict[str, Any]]:
    """A why-answer: the question, the answer, the evidence it cites, and what was unavailable (if anything)."""
    blocks = [context(f":thinking_face: {esc(clip(answer.question, 500))} · {code(answer.fqn)}")]
    blocks.extend(text_sections(esc(answer.answer) or "_No answer._", max_sections=4))
    if answer.citations:
        blocks.append(
            context(
                "*Evidence:* " + join_capped([_citation(c) for c in answer.citations], 2900, sep=", ", max_lines=20)
            )
        )
    how = "rules" if answer.source == "rules" else f"{esc(answer.source)}, {answer.steps} tool step(s)"
    fallback = f" · fell back: {esc(answer.fallback_reason)}" if answer.fallback_reason else ""
    blocks.append(context(f"Answered by {how}{fallback}"))
    if answer.degraded:
        blocks.append(context(*(f":warning: {esc(clip(d, 300))}" for d in answer.degraded)))
    return fit_text(blocks, pointer=code(f"dnabot why {answer.fqn}"))
