"""The why-agent's engine: "why did X break?" answered from the rules, or by an LLM tool loop checked against facts.

`answer` is async. Without an LLM it renders `tools.rules_answer` (open incidents, upstream changes, the top
hypothesis). With one it runs an OpenAI tool-calling loop over the internal tools (and allow-listed MCP tools)
inside the budgets of `AgentConfig`; every tool result enters the conversation fenced as untrusted data, every
web-tool call is checked against the question's provenance first (`agents.provenance`: no URL, query or name taken
from metadata or web text), and the final text must cite only names, ids and URLs the tools returned, or the
rules answer is used instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from agents import metrics, untrusted
from agents.config import AgentConfig
from agents.llm import LLMClient, LLMError, ToolCall
from agents.provenance import Provenance
from storage.errors import AmbiguousDataset, DatasetNotFound, DnaBotError

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

TOOL_RESULT_CHARS = 8_000
TURN_MAX_TOKENS = 1_024
INTERNAL_TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "dna": ("The current DNA of a dataset: type, columns, owners, tier, usage, tests, trust score.", {}),
    "timeline": (
        "The changes detected on a dataset in the last `since_days` days (change ids, kinds, old and new values).",
        {"since_days": {"type": "integer", "minimum": 1, "maximum": 90}},
    ),
    "blast": ("Everything downstream of a dataset, or of one of its columns.", {"column": {"type": "string"}}),
    "upstream": (
        "Everything that feeds a dataset, or one of its columns, with lineage paths.",
        {"column": {"type": "string"}},
    ),
    "incidents": ("Incidents rooted at a dataset or breaking it, with their status and severity.", {}),
    "trust": ("The trust score of a dataset, its factors, and its recent history.", {}),
}
SYSTEM_PROMPT = (
    "You answer 'why did this dataset break?' for a data team, over the DNA store of an OpenMetadata catalog. "
    "Call the tools to check lineage, changes, incidents and trust before answering; use web tools only for "
    "outside context about a change: search with words of the question, and extract or scrape only URLs that "
    "a search returned (other calls are refused). Then answer in at most 150 words of Slack mrkdwn: the most "
    "likely cause first, then the evidence. Cite every dataset by its FQN, every change as change #ID, every "
    "incident as incident #ID and every web page by its URL. Never name a table, column, id or URL the tools did not "
    "return.\n"
) + untrusted.UNTRUSTED_PREAMBLE
_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "why what when where who how did does do is are was were has have had the a an of on in to for from and or "
        "it its this that table dataset dashboard column data break broke broken breaking fail failed failing "
        "wrong stale empty missing today yesterday please tell me us you can could happened happen going",
    )
)


@dataclass(frozen=True)
class WhyAnswer:
    """An answer to a why-question: its text, the evidence it cites, where it came from and what was missing."""

    question: str
    fqn: str
    answer: str
    citations: tuple[str, ...]
    source: str  # "rules" | "llm"
    steps: int = 0
    degraded: tuple[str, ...] = ()
    fallback_reason: str | None = None
    # the facts behind the words, the same for the rules and the LLM answer (`answer_facts`)
    cause: dict[str, Any] | None = None  # the most likely cause: confidence, change, path, column path, fix
    incident: dict[str, Any] | None = None  # the open (or recently resolved) incident the answer follows
    resolution: dict[str, Any] | None = None  # how that incident healed: who, when, why, the healing changes
    trust: dict[str, Any] | None = None  # the trust score now (open incidents take points off)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class WhyTools(Protocol):
    """What the why-agent may ask of the store; every method returns a JSON-able dict (except `resolve`)."""

    def dna(self, fqn: str) -> dict[str, Any]: ...
    def timeline(self, fqn: str, since_days: int = 7) -> dict[str, Any]: ...
    def blast(self, fqn: str, column: str | None = None) -> dict[str, Any]: ...
    def upstream(self, fqn: str, column: str | None = None) -> dict[str, Any]: ...
    def incidents(self, fqn: str) -> dict[str, Any]: ...
    def trust(self, fqn: str) -> dict[str, Any]: ...
    def resolve(self, text: str) -> str: ...
    def rules_answer(self, fqn: str, question: str) -> dict[str, Any]: ...


class McpLike(Protocol):
    """The MCP toolbox as the why-agent uses it (see `agents.mcp`)."""

    async def list_tools(self) -> list[dict[str, Any]]: ...
    async def call(self, name: str, args: dict[str, Any]) -> Any: ...


# ------------------------------------------------------------------------------------------ resolution


def question_candidates(question: str) -> list[str]:
    """Dataset names a question may mean, most specific first: `quoted`, dotted, snake_case, other words."""
    quoted = re.findall(r"[`\"“”']([^`\"“”']{2,200})[`\"“”']", question)
    rest = re.sub(r"`[^`]*`", " ", question)
    dotted = [t.strip(".") for t in untrusted.DOTTED_RE.findall(rest)]
    words = [w.strip("-") for w in re.findall(r"[\w-]+", rest)]
    snake = [w for w in words if "_" in w]
    plain = [w for w in words if len(w) > 2 and not w.isdigit() and w.casefold() not in _STOPWORDS]
    return list(dict.fromkeys(c.strip() for c in (*quoted, *dotted, *snake, *plain) if c.strip()))


def resolve_question(question: str, tools: WhyTools) -> str:
    """The FQN a question is about; DatasetNotFound (with merged suggestions) when no candidate resolves, and
    AmbiguousDataset for the first candidate several datasets share: the answer asks which one, never guesses."""
    candidates = question_candidates(question)
    suggestions: list[str] = []
    for candidate in candidates:
        try:
            return tools.resolve(candidate)
        except AmbiguousDataset:
            raise
        except DatasetNotFound as exc:
            suggestions += exc.suggestions
    raise DatasetNotFound(candidates[0] if candidates else question, list(dict.fromkeys(suggestions))[:5])


# ------------------------------------------------------------------------------------------ rules path


def _short_ts(value: Any) -> str:
    return str(value or "")[:16].replace("T", " ")


def _pct(value: Any) -> str:
    return f"{float(value or 0):.0%}"


def _known(top: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    if not top:
        return False
    return top.get("cause_fqn") not in (None, "unknown") and float(top.get("confidence") or 0) > 0


def _cause_lines(top: dict[str, Any], label: str) -> tuple[list[str], list[str]]:
    """The cause, its lineage path (column-level when the lineage has one) and the incident's proposed fix."""
    ref = f" (change #{top['change_id']})" if top.get("change_id") is not None else ""
    source = f", from incident #{top['incident_id']}'s analysis" if top.get("incident_id") is not None else ""
    lines = [f"*{label} ({_pct(top.get('confidence'))})*: {top.get('summary', '')}{ref}{source}."]
    columns, path = top.get("column_path") or (), top.get("path") or ()
    if len(columns) > 1:
        lines.append("Column path: " + " → ".join(f"`{p}`" for p in columns) + ".")
    elif len(path) > 1:
        lines.append("Path: " + " → ".join(f"`{p}`" for p in path) + ".")
    fix = top.get("fix") or {}
    if fix.get("title"):
        sim = f" (simulated: resolves {fix['resolves']} of {fix['of']} breaks)" if fix.get("simulated") else ""
        lines.append(f"Proposed fix: {fix['title']}{sim}.")
    cites = [top["cause_fqn"]] + ([f"change:{top['change_id']}"] if ref else [])
    return lines, cites + ([f"incident:{top['incident_id']}"] if source else [])


def _resolution_lines(facts: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What broke, when, and what healed it (the revert and/or who resolved it), for a resolved incident."""
    inc, res = facts["incident"], facts["resolution"]
    lines = [
        f"*Resolved*: incident #{inc['id']} {inc.get('severity') or ''} {inc.get('title') or ''} "
        f"(broke {_short_ts(inc.get('opened_at'))}, resolved {_short_ts(res.get('resolved_at'))} UTC)."
    ]
    cites = [f"incident:{inc['id']}"]
    broke = facts.get("incident_cause")
    if _known(broke):
        more, refs = _cause_lines({**broke, "fix": None}, "What broke")
        lines += more
        cites += refs
    who = res.get("by") or "someone"
    how = f"{who} resolved it" + (" automatically" if res.get("automatic") else "")
    why = f": {res['reason']}" if res.get("reason") else ""
    healed = res.get("changes") or []
    if healed:
        what = "; ".join(f"change #{c['id']} {c['summary']} ({_short_ts(c.get('detected_at'))})" for c in healed[:3])
        lines.append(f"*What healed it*: {what}; then {how}{why}.")
        cites += [ref for c in healed[:3] for ref in (f"change:{c['id']}", c["entity_fqn"])]
    else:
        lines.append(f"*What healed it*: {how}{why}.")
    return lines, cites


def rules_text(fqn: str, facts: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The templated answer from `rules_answer` facts, and what it cites."""
    cites: list[str] = [fqn]
    lines: list[str] = []
    top = facts.get("hypothesis") or {}
    if _known(top):
        more, refs = _cause_lines(top, "Most likely cause")
        lines += more
        cites += refs
    if (facts.get("incident") or {}).get("status") == "resolved" and facts.get("resolution"):
        more, refs = _resolution_lines(facts)
        lines += more
        cites += refs
    open_incidents = facts.get("incidents") or []
    if open_incidents:
        lines.append("*Open incidents*")
        for inc in open_incidents[:5]:
            lines.append(
                f"• incident #{inc['id']} {inc.get('severity', '')} {inc.get('title', '')} "
                f"({inc.get('status', 'open')}, opened {_short_ts(inc.get('opened_at'))})"
            )
            cites.append(f"incident:{inc['id']}")
    changes = facts.get("changes") or []
    if changes:
        lines.append(f"*Recent changes on `{fqn}` and upstream*")
        for c in changes[:5]:
            where = "on it" if not c.get("distance") else f"{c['distance']} hop(s) upstream"
            subject = f" `{c['subject']}`" if c.get("subject") else ""
            role = f", {c['role']}" if c.get("role") else ""
            lines.append(
                f"• change #{c['id']} {c['kind'].replace('_', ' ')}{subject} on `{c['entity_fqn']}` ({where}, "
                f"{_short_ts(c.get('detected_at'))}{role})"
            )
            cites += [f"change:{c['id']}", c["entity_fqn"]]
        if len(changes) > 5:
            lines.append(f"…and {len(changes) - 5} more")
    if not lines:
        days = facts.get("since_days", 7)
        lines.append(f"I found no open incident and no change on `{fqn}` or upstream of it in the last {days} days.")
    if facts.get("trust_score") is not None:
        note = (facts.get("trust") or {}).get("note")
        lines.append(f"Trust score now: {facts['trust_score']}" + (f" ({note})" if note else "") + ".")
    return "\n".join(lines), tuple(dict.fromkeys(cites))


def answer_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """The facts every answer carries whatever its words (rules or LLM): cause, incident, resolution, trust."""
    top = facts.get("hypothesis")
    trust = facts.get("trust") or ({"score": facts["trust_score"]} if facts.get("trust_score") is not None else None)
    return {
        "cause": top if _known(top) else None,
        "incident": facts.get("incident"),
        "resolution": facts.get("resolution"),
        "trust": trust,
    }


def rules_why(question: str, fqn: str, facts: dict[str, Any], *, steps: int = 0) -> WhyAnswer:
    """The rules-only answer."""
    text, cites = rules_text(fqn, facts)
    degraded = tuple(facts.get("degraded") or ())
    return WhyAnswer(question, fqn, text, cites, "rules", steps, degraded, **answer_facts(facts))


# ------------------------------------------------------------------------------------------- LLM path


def tool_specs(extra: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """OpenAI function specs for the internal tools plus the given MCP tools."""
    specs = []
    for name, (description, params) in INTERNAL_TOOLS.items():
        props = {"fqn": {"type": "string", "description": "dataset FQN or name"}, **params}
        parameters = {"type": "object", "properties": props, "required": ["fqn"]}
        specs.append(
            {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}
        )
    for tool in extra:
        schema = tool.get("input_schema") or {"type": "object", "properties": {}}
        fn = {"name": tool["name"], "description": str(tool.get("description") or "")[:500], "parameters": schema}
        specs.append({"type": "function", "function": fn})
    return specs


class _Loop:
    """One tool-calling conversation and its budgets, degradations and grounding."""

    def __init__(
        self,
        question: str,
        fqn: str,
        facts: dict[str, Any],
        tools: WhyTools,
        llm: LLMClient,
        mcp: Any,
        config: AgentConfig,
    ) -> None:
        self.question, self.fqn, self.facts = question, fqn, facts
        self.tools, self.llm, self.mcp, self.config = tools, llm, mcp, config
        self.steps = 0
        self.tokens = 0
        self.degraded: list[str] = list(facts.get("degraded") or ())
        self.refused: list[str] = []
        self.grounding = untrusted.Grounding()
        self.grounding.add_name(fqn)
        self.grounding.add_json(facts)
        self.allowed = set(INTERNAL_TOOLS)
        self.schemas: dict[str, dict[str, Any]] = {}
        self.provenance = Provenance()
        self.provenance.trust_text(question)
        self.provenance.trust_identifier(fqn)
        self.provenance.observe_facts(facts)
        self.partial: str | None = None

    def degrade(self, note: str) -> None:
        if note not in self.degraded:
            self.degraded.append(note)

    async def _mcp_tools(self) -> list[dict[str, Any]]:
        if self.mcp is None:
            return []
        try:
            listed = await asyncio.wait_for(self.mcp.list_tools(), self.config.mcp_call_timeout_seconds)
        except Exception as exc:  # MCP is optional context: any failure only degrades the answer
            log.warning("MCP tools unavailable: %s", type(exc).__name__)
            self.degrade("outside context unavailable")
            return []
        if not listed:  # every configured server is down: say so, as the pipeline does
            self.degrade("outside context unavailable")
            return []
        # Only tools that are both allow-listed and actually offered can be called.
        allowed = self.config.mcp_allowed_tools
        usable = [t for t in listed if t.get("name") in allowed and t["name"] not in INTERNAL_TOOLS]
        self.allowed |= {t["name"] for t in usable}
        self.schemas.update({t["name"]: t.get("input_schema") or {} for t in usable})
        return usable

    def _first_messages(self) -> list[dict[str, Any]]:
        facts = untrusted.fence(
            json.dumps(self.facts, default=str), source="DNA store rules", max_chars=TOOL_RESULT_CHARS
        )
        user = f"Question: {self.question}\nDataset: {self.fqn}\n\nWhat the rules engine found:\n{facts}"
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    async def run(self) -> str | None:
        """The final text, or None when a budget ran out first (`self.degraded` says which)."""
        specs = tool_specs(await self._mcp_tools())
        messages = self._first_messages()
        while self.steps < self.config.why_max_steps:
            remaining = self.config.why_max_tokens - self.tokens
            turn = await self.llm.chat_with_tools(messages, specs, max_tokens=max(64, min(TURN_MAX_TOKENS, remaining)))
            self.steps += 1
            self.tokens += turn.usage.total
            if turn.is_final:
                return turn.text or ""
            self.partial = turn.text or self.partial
            messages.append(turn.message)
            for call in turn.tool_calls:
                messages.append({"role": "tool", "tool_call_id": call.id, "content": await self._call(call)})
            if self.tokens >= self.config.why_max_tokens:
                self.degrade(f"token budget reached ({self.tokens} of {self.config.why_max_tokens})")
                return None
        steps = self.config.why_max_steps
        self.degrade(f"step budget reached ({steps} step{'s' if steps != 1 else ''})")
        return None

    async def _call(self, call: ToolCall) -> str:
        if call.name not in self.allowed:
            self.refused.append(call.name)
            metrics.tool_refused("other", "not_allowed")
            log.warning("why-agent refused a call to a tool that is not allowed: %s", call.name[:80])
            allowed = ", ".join(sorted(self.allowed))
            return f"refused: the tool {call.name[:80]!r} is not allowed. Allowed tools: {allowed}."
        if call.arguments_error:
            return f"error: {call.arguments_error}"
        if call.name in INTERNAL_TOOLS:
            return self._internal(call)
        return await self._external(call)

    def _internal(self, call: ToolCall) -> str:
        args = call.arguments
        try:
            fqn = self.tools.resolve(str(args.get("fqn") or self.fqn))
            if call.name == "timeline":
                result = self.tools.timeline(fqn, since_days=max(1, min(90, int(args.get("since_days") or 7))))
            elif call.name in ("blast", "upstream"):
                result = getattr(self.tools, call.name)(fqn, column=args.get("column") or None)
            else:
                result = getattr(self.tools, call.name)(fqn)
        except (DnaBotError, ValueError, TypeError) as exc:
            return f"error: {exc}"
        self.grounding.add_name(fqn)
        self.grounding.add_json(result)
        self.provenance.observe_facts(result)
        text = json.dumps(result, default=str, ensure_ascii=False)
        return untrusted.fence(text, source=f"DNA store tool {call.name}", max_chars=TOOL_RESULT_CHARS)

    async def _external(self, call: ToolCall) -> str:
        refusal = self.provenance.check(call.name, call.arguments, self.schemas.get(call.name))
        if refusal is not None:
            self.refused.append(call.name)
            metrics.tool_refused(call.name, refusal.reason)
            log.warning("%s", refusal.log_line(call.name))
            return refusal.message(call.name)
        try:
            result = await asyncio.wait_for(
                self.mcp.call(call.name, call.arguments), self.config.mcp_call_timeout_seconds
            )
        except Exception as exc:  # a broken MCP server must never fail the answer
            log.warning("MCP tool %s failed: %s", call.name, type(exc).__name__)
            result = None
        if result is None or not getattr(result, "ok", False):
            if result is not None:
                log.warning("MCP tool %s failed: %s", call.name, str(getattr(result, "error", ""))[:200])
            self.degrade("outside context unavailable")
            return "error: outside context unavailable; answer from the internal tools."
        urls = [str(u) for u in (getattr(result, "urls", None) or ())]
        self.provenance.observe_result(call.name, str(getattr(result, "text", "") or ""), urls)
        for url in urls:
            self.grounding.add_url(url)
        body = untrusted.fence(
            str(getattr(result, "text", "") or ""),
            source=f"web tool {call.name}",
            max_chars=self.config.web_text_max_chars,
        )
        return body + ("\nSource URLs: " + " ".join(urls) if urls else "")

    def checked(self, text: str | None) -> tuple[str, tuple[str, ...]] | str:
        """(text, citations) when `text` is grounded and cites evidence, else the reason it is not."""
        text = (text or "").strip()
        if not text:
            return "LLM returned an empty answer"
        problem = self.grounding.problem(text)
        if problem is not None:
            return problem
        cites = self.grounding.citations(text)
        return (text, cites) if cites else "LLM answer cites no evidence"


async def answer(
    question: str,
    *,
    fqn: str | None = None,
    tools: WhyTools,
    llm: LLMClient | None = None,
    mcp: McpLike | None = None,
    config: AgentConfig,
) -> WhyAnswer:
    """Answer "why did X break?"; raises DatasetNotFound (with suggestions) when X cannot be resolved."""
    target = tools.resolve(fqn) if fqn else resolve_question(question, tools)
    facts = tools.rules_answer(target, question)
    rules = rules_why(question, target, facts)
    if llm is None:
        return rules
    loop = _Loop(question, target, facts, tools, llm, mcp, config)
    reason: str | None = None
    text: str | None = None
    try:
        async with asyncio.timeout(config.why_max_seconds):
            text = await loop.run()
    except TimeoutError:
        loop.degrade(f"time budget reached ({config.why_max_seconds:g} s)")
        reason = f"LLM took longer than {config.why_max_seconds:g} s"
    except LLMError as exc:
        reason = exc.reason
    budget = reason is None and text is None
    if budget:  # a budget ran out: answer from what the model already said, if it checks out
        text, reason = loop.partial, loop.degraded[-1]
    checked = loop.checked(text) if text is not None else reason
    if isinstance(checked, tuple):
        body = checked[0] + (f"\n_({reason}: this answer may be incomplete.)_" if budget else "")
        return WhyAnswer(
            question, target, body, checked[1], "llm", loop.steps, tuple(loop.degraded), **answer_facts(facts)
        )
    reason = reason or checked
    note = f"\n_(Answered from the rules: {reason}.)_"
    return replace(
        rules, answer=rules.answer + note, steps=loop.steps, degraded=tuple(loop.degraded), fallback_reason=reason
    )
