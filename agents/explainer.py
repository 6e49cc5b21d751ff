"""Words for an incident: a stakeholder brief and a technical explanation, from templates or a checked LLM.

`explain_template` is sync and needs nothing. `explain` is async (the LLM client is async): it asks the LLM
for structured output, checks every asset, column and URL the answer names against the facts, and falls
back to the templates, with `fallback_reason`, whenever the LLM fails or names something unknown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agents import untrusted
from agents.facts import ChangeFacts, IncidentFacts
from agents.llm import LLMError
from agents.model import Break, Explanation, FixProposal
from storage.openmetadata import fqn as fqnlib

if TYPE_CHECKING:
    from agents.llm import LLMClient

log = logging.getLogger(__name__)

WEB_SNIPPET_CHARS = 1_500
EXPLANATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["brief", "technical", "cited_assets", "cited_columns", "cited_urls"],
    "properties": {
        "brief": {"type": "string"},
        "technical": {"type": "string"},
        "cited_assets": {"type": "array", "items": {"type": "string"}},
        "cited_columns": {"type": "array", "items": {"type": "string"}},
        "cited_urls": {"type": "array", "items": {"type": "string"}},
    },
}
SYSTEM_PROMPT = (
    "You write incident texts for a data team's Slack channel. You get the facts of one data incident as "
    "JSON, a templated draft, and possibly outside context from the web. Write two texts in Slack mrkdwn:\n"
    "- brief: at most 80 words for business stakeholders. Name the affected dashboards first (their display "
    "names), who owns them, the severity and what it means, and what happens next. No jargon.\n"
    "- technical: at most 250 words for data engineers: the change (old → new), the lineage path, what "
    "breaks, the hypotheses with their confidence, the simulated fix and how many breaks it resolves, and "
    "outside context with its URLs.\n"
    "Use only names, numbers and URLs that appear in the facts. Never invent a table, column or URL. List "
    "every asset FQN, column FQN and URL you mention in cited_assets, cited_columns and cited_urls.\n"
) + untrusted.UNTRUSTED_PREAMBLE


# ------------------------------------------------------------------------------------------- templates

MAX_BREAKS = 8
SEVERITY_MEANING = {
    "SEV1": "critical: business-facing numbers are wrong or missing right now",
    "SEV2": "high: reports people rely on are broken or at risk, and should be fixed today",
    "SEV3": "medium: data is degraded or late, and should be fixed within the working day",
    "SEV4": "low: a hygiene problem with no visible impact yet",
}
IMPACT = {  # what the kind means for a dashboard, in business terms
    "breaking_schema_change": "may show wrong or missing numbers",
    "lineage_edge_lost": "may stop receiving fresh data",
    "test_failing": "may show bad data",
    "pipeline_failed": "may be stale",
    "ownership_lost": "rest on data nobody owns any more",
    "trust_drop": "rest on data that has become less trustworthy",
}
REASONS = {
    "missing_column": "missing column",
    "type_mismatch": "type mismatch",
    "lost_upstream": "lost its upstream",
    "no_owner": "no owner",
    "failing_test": "failing test",
    "failed_run": "failed run",
}


def _short(fqn: str) -> str:
    try:
        return fqnlib.last(fqn)
    except fqnlib.FQNError:
        return fqn.rsplit(".", 1)[-1]


def _people(names: Sequence[str], cap: int = 3) -> str:
    names = list(dict.fromkeys(n for n in names if n))
    if len(names) > cap:
        return ", ".join(names[:cap]) + f" and {len(names) - cap} more"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _value(value: Any) -> str:
    if isinstance(value, dict):
        shown = value.get("type_display") or value.get("type") or value.get("name") or value.get("score")
        return str(shown) if shown is not None else json.dumps(value, sort_keys=True, default=str)
    return "nothing" if value is None else str(value)


def _cause(facts: IncidentFacts) -> str:
    """The cause in one plain sentence, by incident kind."""
    c, root = facts.change, f"`{_short(facts.root_fqn)}`"
    column = f"`{facts.root_column or (c.subject if c else '') or '?'}`"
    if facts.kind == "breaking_schema_change" and c is not None:
        if c.kind == "entity_deleted":
            return f"{root} was deleted in OpenMetadata, so everything it fed lost its source"
        if c.kind == "column_renamed":
            return f"the {column} column of {root} was renamed to `{_value(c.new_value)}`"
        if c.kind == "column_type_changed":
            return f"the {column} column of {root} changed type from {_value(c.old_value)} to {_value(c.new_value)}"
        return f"the {column} column was removed from {root}"
    if facts.kind == "lineage_edge_lost":
        upstream = f"`{_short(c.subject)}`" if c and c.subject else "its upstream source"
        return f"the data feed from {upstream} into {root} disappeared from the lineage"
    if facts.kind == "test_failing":
        test = f"`{_short(c.subject)}` " if c and c.subject else ""
        return f"the quality check {test}on {root} started failing"
    if facts.kind == "pipeline_failed":
        return f"the pipeline {root} failed its latest run"
    if facts.kind == "ownership_lost":
        return f"{root} lost its last owner, so nobody is alerted when it breaks"
    if facts.kind == "trust_drop" and c is not None:
        return f"the trust score of {root} dropped from {_value(c.old_value)} to {_value(c.new_value)}"
    return f"{root} changed ({facts.title})"


def _resolves(fix: FixProposal, facts: IncidentFacts) -> str:
    total = len(fix.resolves) + len(fix.remains) or len(facts.breaks)
    return f"resolves {len(fix.resolves)} of {total} breaks" if total else "nothing downstream to resolve"


def _real_fixes(facts: IncidentFacts) -> list[FixProposal]:
    return [f for f in facts.fixes if f.kind != "investigate"]


def _impact_line(facts: IncidentFacts) -> str:
    names = [f"*{facts.display_names.get(d) or _short(d)}*" for d in facts.dashboards]
    impact = IMPACT.get(facts.kind, "may be affected")
    if len(names) == 1:
        return f"The {names[0]} dashboard {impact.replace('rest ', 'rests ', 1)}."
    if names:
        return f"The {_people(names)} dashboards {impact}."
    downstream = len({b.entity_fqn for b in facts.breaks})
    if downstream:
        return f"No dashboard is affected, but {downstream} downstream asset{'s are' if downstream > 1 else ' is'}."
    return "Nothing downstream is affected yet."


def brief_text(facts: IncidentFacts) -> str:
    """The stakeholder brief: dashboards and their owners first, then the cause, severity and next step."""
    lines = [_impact_line(facts)]
    dash_owners = [o for d in facts.dashboards for o in facts.dashboard_owners.get(d, ())]
    if dash_owners:
        lines.append(f"{'It is' if len(facts.dashboards) == 1 else 'They are'} owned by {_people(dash_owners)}.")
    elif facts.owners:
        lines.append(f"Owners of the affected data: {_people(facts.owners)}.")
    else:
        lines.append("Nobody owns the affected data.")
    lines.append(f"Cause: {_cause(facts)}.")
    meaning = SEVERITY_MEANING.get(facts.severity)
    lines.append(f"Severity *{facts.severity}*" + (f": {meaning}." if meaning else "."))
    fixes = _real_fixes(facts)
    if fixes:
        lines.append(f"Next: a fix is proposed ({fixes[0].title}); in a simulation it {_resolves(fixes[0], facts)}.")
    elif facts.owners:
        lines.append(f"Next: {facts.owners[0]} has been notified and will investigate.")
    else:
        lines.append("Next: nobody owns this yet, so someone needs to take it on.")
    return " ".join(lines)


CHANGE_LINES = {  # {e} entity, {s} subject, {o} old value, {n} new value
    "column_renamed": "`{e}.{s}` was renamed to `{n}`",
    "column_removed": "`{e}.{s}` was removed (it was {o})",
    "column_type_changed": "`{e}.{s}` changed type: {o} → {n}",
    "lineage_edge_removed": "the lineage edge `{s}` → `{e}` was removed",
    "test_newly_failing": "the test `{s}` on `{e}` went from {o} to {n}",
    "pipeline_run_failed": "the latest run of pipeline `{e}` failed ({n})",
    "owner_removed": "owner {o} was removed from `{e}`, which now has no owner",
    "trust_dropped": "the trust score of `{e}` dropped from {o} to {n}",
    "entity_deleted": "`{e}` was deleted in OpenMetadata",
}


def _change_line(c: ChangeFacts) -> str:
    ref = f" (change #{c.change_id})" if c.change_id is not None else ""
    subject = (c.subject or "").removeprefix(c.entity_fqn + ".") if c.kind.startswith("column_") else c.subject
    template = CHANGE_LINES.get(c.kind, "{k} on `{e}`: {o} → {n}")
    return template.format(e=c.entity_fqn, s=subject, o=_value(c.old_value), n=_value(c.new_value), k=c.kind) + ref


def _paths(facts: IncidentFacts) -> list[str]:
    paths = [h.path for h in facts.hypotheses if len(h.path) > 1]
    paths += [(*b.via, f"{b.entity_fqn}.{b.column}" if b.column else b.entity_fqn) for b in facts.breaks if b.via]
    unique = list(dict.fromkeys(tuple(p) for p in paths))
    return [" → ".join(f"`{step}`" for step in p) for p in unique[:2]]


def _break_line(b: Break) -> str:
    name = f"{b.entity_fqn}.{b.column}" if b.column else b.entity_fqn
    hops = f"{b.distance} hop{'s' if b.distance != 1 else ''}"
    return f"• `{name}` ({b.entity_type or 'asset'}, {hops}): {REASONS.get(b.reason, b.reason)}"


def _fix_lines(fix: FixProposal, facts: IncidentFacts) -> list[str]:
    lines = [f"• {fix.title}" + (f" (simulated: {_resolves(fix, facts)})" if fix.simulated else "")]
    if fix.remains:
        lines.append("  still broken after it: " + ", ".join(f"`{b.entity_fqn}`" for b in fix.remains[:3]))
    if fix.sql:
        lines.append(f"```{fix.sql.strip()}```")
    lines += [f"  {i}. {step}" for i, step in enumerate(fix.steps, 1)]
    return lines


def technical_text(facts: IncidentFacts) -> str:
    """The technical explanation: change, lineage path, breaks, hypotheses, simulated fixes, outside context."""
    out = [f"*What changed*\n{_change_line(facts.change) if facts.change else _cause(facts)}."]
    paths = _paths(facts)
    if paths:
        out.append("*Lineage*\n" + "\n".join(paths))
    if facts.breaks:
        lines = [_break_line(b) for b in facts.breaks[:MAX_BREAKS]]
        if len(facts.breaks) > MAX_BREAKS:
            lines.append(f"…and {len(facts.breaks) - MAX_BREAKS} more")
        out.append(f"*What breaks ({len(facts.breaks)})*\n" + "\n".join(lines))
    if facts.dashboards:
        shown = [
            f"{facts.display_names[d]} (`{d}`)" if d in facts.display_names else f"`{d}`" for d in facts.dashboards
        ]
        out.append("*Dashboards*\n" + ", ".join(shown))
    if facts.hypotheses:
        ranked = sorted(facts.hypotheses, key=lambda h: -h.confidence)[:3]
        lines = [
            f"• {h.confidence:.0%}: {h.summary}" + (f" (change #{h.change_id})" if h.change_id is not None else "")
            for h in ranked
        ]
        out.append("*Likely causes*\n" + "\n".join(lines))
    if facts.fixes:
        out.append("*Proposed fix*\n" + "\n".join(line for f in facts.fixes[:3] for line in _fix_lines(f, facts)))
    if facts.web:
        lines = [f"• {e.data.get('title') or e.summary}: {e.url or e.ref}" for e in facts.web[:5]]
        out.append("*Outside context*\n" + "\n".join(lines))
    reasons = "; ".join(facts.severity_reasons) or "base severity for this kind of incident"
    out.append(f"*Severity {facts.severity}*\n{reasons}.")
    return "\n\n".join(out)


def template_citations(facts: IncidentFacts) -> tuple[str, ...]:
    """What the templated texts rest on: the root, the change, the dashboards and the web sources."""
    cites = [facts.root_fqn]
    if facts.change and facts.change.change_id is not None:
        cites.append(f"change:{facts.change.change_id}")
    cites += list(facts.dashboards)
    cites += [e.url for e in facts.web if e.url]
    return tuple(dict.fromkeys(cites))


def explain_template(facts: IncidentFacts, *, fallback_reason: str | None = None) -> Explanation:
    """The templated brief and technical explanation (no LLM, always available)."""
    return Explanation(
        brief=brief_text(facts),
        technical=technical_text(facts),
        source="template",
        fallback_reason=fallback_reason,
        citations=template_citations(facts),
    )


def _user_prompt(facts: IncidentFacts, draft: Explanation, web_chars: int) -> str:
    parts = [
        "Incident facts (JSON):",
        json.dumps(facts.to_prompt_dict(), ensure_ascii=False, default=str),
        "",
        "Templated draft (correct but plain; improve it):",
        f"BRIEF:\n{draft.brief}\n\nTECHNICAL:\n{draft.technical}",
    ]
    if facts.web_evidence():
        parts += ["", "Outside context (untrusted):"]
        for e in facts.web_evidence():
            title = str(e.data.get("title") or e.summary or "")
            snippet = str(e.data.get("snippet") or "")
            parts.append(untrusted.fence(f"{title}\n{snippet}", source=e.url or e.ref, max_chars=web_chars))
    return "\n".join(parts)


def check_llm_texts(raw: Mapping[str, Any], grounding: untrusted.Grounding) -> str | None:
    """Why an LLM explanation cannot be used (an unknown citation or name, an empty text), or None."""
    for key in ("brief", "technical"):
        if not str(raw.get(key) or "").strip():
            return f"LLM returned an empty {key}"
    for asset in raw.get("cited_assets", []):
        if not grounding.knows_name(asset):
            return f"LLM named an unknown table: {asset}"
    for column in raw.get("cited_columns", []):
        if not grounding.knows_name(column):
            return f"LLM named an unknown column: {column}"
    for url in raw.get("cited_urls", []):
        if not grounding.knows_url(url):
            return f"LLM cited an unknown URL: {url}"
    return grounding.problem(raw["brief"]) or grounding.problem(raw["technical"])


async def explain(
    facts: IncidentFacts, *, llm: LLMClient | None = None, web_chars: int = WEB_SNIPPET_CHARS
) -> Explanation:
    """The incident's texts: from the LLM when one is given and its answer checks out, else the templates."""
    draft = explain_template(facts)
    if llm is None:
        return draft
    try:
        raw = await llm.complete_json(
            SYSTEM_PROMPT, _user_prompt(facts, draft, web_chars), EXPLANATION_SCHEMA, name="incident_explanation"
        )
    except LLMError as exc:
        return replace(draft, fallback_reason=exc.reason)
    grounding = facts.grounding()
    problem = check_llm_texts(raw, grounding)
    if problem is not None:
        log.warning("explanation falls back to the template: %s", problem)
        return replace(draft, fallback_reason=problem)
    cited = [*raw["cited_assets"], *raw["cited_columns"], *raw["cited_urls"]]
    cited += grounding.citations(raw["brief"] + "\n" + raw["technical"])
    return Explanation(
        brief=raw["brief"].strip(),
        technical=raw["technical"].strip(),
        source="llm",
        fallback_reason=None,
        citations=tuple(dict.fromkeys(cited)),
    )
