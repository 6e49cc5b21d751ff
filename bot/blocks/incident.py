"""The incident's stakeholder card, its status-change replies and the resolve modal, as Block Kit JSON."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from slack_sdk.models.blocks import (
    InputBlock,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    StaticSelectElement,
    UserSelectElement,
)
from slack_sdk.models.views import View

from agents.observer_quality import results_of
from bot.blocks.kit import (
    MESSAGE_BLOCKS,
    STATUS_EMOJI,
    actions,
    button,
    cap_blocks,
    capped,
    clip,
    code,
    content_id,
    context,
    esc,
    fit_text,
    header,
    join_capped,
    mention,
    section,
    severity_emoji,
    short_name,
    stamp_block_ids,
    utc,
    when,
)
from bot.core.actions import RESOLVE_REASONS, SNOOZE_CHOICES, ActionId, encode_value
from storage.persistence.incident_views import EventView, IncidentView

IMPACT_LINES = 8
RESULT_LINES = 5
RESULT_TEXT = 200
NO_MENTIONS: Mapping[str, str] = {}


def incident_value(incident: IncidentView, **extra: Any) -> str:
    """The value every incident button carries: id and fingerprint, versioned."""
    return encode_value("incident", id=incident.id, fp=incident.fingerprint[:64], **extra)


def root_label(incident: IncidentView) -> str:
    return incident.root_fqn + (f".{incident.root_column}" if incident.root_column else "")


def om_entity_url(om_url: str, incident: IncidentView) -> str:
    kind = "pipeline" if incident.kind == "pipeline_failed" else "table"
    return f"{om_url.rstrip('/')}/{kind}/{quote(incident.root_fqn, safe='.')}"


def _display(fqn: str, names: Mapping[str, str]) -> str:
    name = names.get(fqn)
    return f"*{esc(name)}* ({code(fqn)})" if name else code(fqn)


def impacted_lines(details: Mapping[str, Any]) -> list[str]:
    """Dashboards first, then charts, then the other broken assets, each once."""
    names = details.get("display_names") or {}
    dashboards = list(details.get("dashboards") or [])
    charts = list(details.get("charts") or [])
    seen = set(dashboards) | set(charts)
    others: list[str] = []
    for b in details.get("breaks") or []:
        fqn = b.get("entity_fqn")
        if fqn and fqn not in seen:
            seen.add(fqn)
            others.append(fqn)
    return [
        *(f":bar_chart: {_display(d, names)}" for d in dashboards),
        *(f":chart_with_upwards_trend: {_display(c, names)}" for c in charts),
        *(f":card_file_box: {_display(o, names)}" for o in others),
    ]


def _result_when(entry: Mapping[str, Any]) -> str:
    if measured := utc(entry.get("measured_at")):
        return f"measured {measured}"
    seen = utc(entry.get("seen_at"))
    return f"seen by the sync {seen}" if seen else ""


def result_line(entry: Mapping[str, Any], text_chars: int = RESULT_TEXT) -> str:
    """One failing test's latest result: the test and where it runs, its text and short values as inert code
    (OpenMetadata's text is data, never markup), and when it was measured."""
    entity = short_name(str(entry.get("entity_fqn") or ""))
    where = ".".join(p for p in (entity, entry.get("column")) if p)
    line = f"• {code(short_name(str(entry.get('test_fqn') or '?')))}" + (f" ({code(where)})" if where else "")
    shown = [code(clip(str(entry["text"]), text_chars))] if entry.get("text") else []
    values = [f"{v.get('name')}={v.get('value')}" for v in entry.get("values") or () if isinstance(v, Mapping)]
    if values:
        shown.append(code(clip(", ".join(values), 120)))
    stamp = _result_when(entry)
    return line + ": " + " ".join(shown) + (f" · _{stamp}_" if stamp else "")


def results_section(entries: list[dict[str, Any]], *, max_lines: int = RESULT_LINES) -> dict[str, Any] | None:
    """A section with each failing test's latest result, bounded; None when there is none to show."""
    if not entries:
        return None
    title = "*Test result*" if len(entries) == 1 else f"*Test results ({len(entries)})*"
    lines = [result_line(e) for e in entries]
    return section(title + "\n" + join_capped(lines, 2900, max_lines=max_lines))


def actor_text(actor: str | None, mentions: Mapping[str, str] = NO_MENTIONS) -> str:
    if actor in (None, "", "dnabot"):
        return "DNA Bot"
    return mention(actor, mentions)


def status_text(incident: IncidentView, event: EventView | None = None) -> str:
    """The status with who and when, when the latest status event is known."""
    by = f" by {actor_text(event.actor)}" if event and event.status_to == incident.status else ""
    emoji = STATUS_EMOJI.get(incident.status, ":grey_question:")
    if incident.status == "open":
        return f"{emoji} Open since {when(incident.opened_at)}"
    if incident.status == "acknowledged":
        return f"{emoji} Acknowledged{by} {when(event.at if by and event else incident.updated_at)}"
    if incident.status == "snoozed":
        return f"{emoji} Snoozed{by} until {when(incident.snoozed_until)}"
    if incident.status == "resolved":
        reason = f" ({reason_label(event.reason)})" if by and event and event.reason else ""
        return f"{emoji} Resolved{by} {when(incident.resolved_at or incident.updated_at)}{reason}"
    return f"{emoji} {esc(incident.status)}"


def reason_label(reason: str | None) -> str:
    return RESOLVE_REASONS.get(reason or "", esc(reason or "no reason given"))


def _owners(details: Mapping[str, Any], mentions: Mapping[str, str]) -> str:
    owners = [mention(o, mentions, raw_ids=False) for o in details.get("owners") or []]
    return ", ".join(capped(owners, 6)) if owners else "_no owner in OpenMetadata_"


def _card_actions(incident: IncidentView, om_url: str | None) -> dict[str, Any] | None:
    value = incident_value(incident)
    om = (
        [button("Open in OpenMetadata", ActionId.OPEN_IN_OM, url=om_entity_url(om_url, incident), value=value)]
        if om_url
        else []
    )
    if incident.status == "resolved":
        return actions([button("Reopen", ActionId.REOPEN, value=value), *om])
    elements: list[Any] = []
    if incident.status in ("open", "snoozed"):
        elements.append(button("Acknowledge", ActionId.ACK, value=value, style="primary"))
    assignee = incident.assignee if incident.assignee and mention(incident.assignee).startswith("<@") else None
    elements.append(UserSelectElement(action_id=ActionId.ASSIGN, placeholder="Assign…", initial_user=assignee))
    elements.append(
        StaticSelectElement(
            action_id=ActionId.SNOOZE,
            placeholder="Snooze…",
            options=[Option(value=incident_value(incident, d=k), text=label) for k, label in SNOOZE_CHOICES.items()],
        )
    )
    elements.append(button("Resolve", ActionId.RESOLVE, value=value))
    if incident.details.get("fixes"):
        elements.append(button("Simulate fix", ActionId.SIMULATE_FIX, value=value))
    return actions([*elements, *om])


def _stamped_actions(block: dict[str, Any], incident: IncidentView) -> dict[str, Any]:
    """The card's buttons under a block_id that carries the incident (a users_select sends no value of its own)
    and changes with every card version: a client then forgets a half-made choice in the Assign or Snooze menu
    even when the menus look the same as before (open and snoozed cards show the same buttons)."""
    return {**block, "block_id": incident_value(incident, b=content_id(block, f"v{incident.version}"))}


def render_incident_card(
    incident: IncidentView,
    *,
    owner_mentions: Mapping[str, str] = NO_MENTIONS,
    om_url: str | None = None,
    status_event: EventView | None = None,
) -> list[dict[str, Any]]:
    """The parent stakeholder card: what is hurt, who owns it, its status, and what to do; resolved keeps Reopen."""
    d = incident.details or {}
    resolved = incident.status == "resolved"
    emoji = ":white_check_mark:" if resolved else severity_emoji(incident.severity)
    prefix = "Resolved · " if resolved else ""
    blocks = [header(f"{emoji} {prefix}{incident.severity} · {incident.title}")]
    brief = (d.get("explanation") or {}).get("brief") or incident.title
    blocks.append(section(esc(brief)))
    fields = [
        f"*Status*\n{status_text(incident, status_event)}",
        f"*Severity*\n{severity_emoji(incident.severity)} {esc(incident.severity)}",
        f"*Where it started*\n{code(root_label(incident))}",
        f"*Owners*\n{_owners(d, owner_mentions)}",
    ]
    if incident.assignee:
        fields.append(f"*Assignee*\n{mention(incident.assignee, owner_mentions)}")
    blocks.append(section(fields=fields))
    results = results_section(results_of(d))
    if results is not None:
        blocks.append(results)
    impacted = impacted_lines(d)
    if impacted:
        text = join_capped(impacted, 2900, max_lines=IMPACT_LINES)
        blocks.append(section(f"*Impacted ({len(impacted)})*\n" + text))
    om = d.get("om_incident") or {}
    om_note = f"OpenMetadata incident: {esc(om.get('status'))}" if om.get("status") else None
    reasons = " · ".join(esc(r) for r in d.get("severity_reasons") or [])
    blocks.append(context(f"Incident #{incident.id} · {esc(incident.kind)}", clip(reasons, 1000) or None, om_note))
    bar = _card_actions(incident, om_url)
    if bar is not None:
        blocks.append(_stamped_actions(bar, incident))
    blocks = fit_text(cap_blocks(blocks, MESSAGE_BLOCKS, keep_tail=1), pointer=incident_pointer(incident.id))
    return stamp_block_ids(blocks)


def incident_pointer(incident_id: int) -> str:
    """Where the whole incident can be read when a Slack message had to leave some of it out."""
    return f"`dnabot incident {incident_id}`"


def card_fallback_text(incident: IncidentView) -> str:
    """The notification text sent alongside the card's blocks, in plain words (`message` escapes it)."""
    return clip(f"{incident.severity} {incident.status}: {incident.title}", 300)


# ------------------------------------------------------------------------------------------ status replies


def _change_text(event: EventView, incident: IncidentView) -> str:
    who = actor_text(event.actor)
    to = event.status_to
    if event.kind == "auto_resolved":
        return f":white_check_mark: Resolved automatically: {esc(event.reason or 'the cause went away')}."
    if event.kind == "reopened" or (to == "open" and event.status_from):
        return f":arrows_counterclockwise: {who} reopened the incident."
    if to == "acknowledged":
        return f":eyes: {who} acknowledged the incident."
    if to == "snoozed":
        return f":zzz: {who} snoozed the incident until {when(_snoozed_until(event) or incident.snoozed_until)}."
    if to == "resolved":
        return f":white_check_mark: {who} resolved the incident: {reason_label(event.reason)}."
    if event.kind == "symptom_attached":
        ids = [f"#{i}" for i in event.data.get("change_ids") or []]
        return f":link: {len(ids)} more symptom(s) joined this incident (change {', '.join(capped(ids, 10))})."
    if event.kind == "note" and "assignee" in event.data:
        target = event.data.get("assignee")
        return f":bust_in_silhouette: {who} assigned the incident to {mention(target) if target else 'nobody'}."
    if event.kind == "opened":
        return f"{severity_emoji(incident.severity)} Incident opened ({esc(incident.severity)})."
    if event.kind == "analysis_updated" and _new_results(event):
        return ":test_tube: A failing test has a new result."
    if event.kind == "analysis_updated":
        return ":mag: The analysis was updated."
    if event.kind == "note":
        return f":memo: {who} added a note."
    return f"{esc(event.kind)}: {esc(event.status_from or '-')} → {esc(to or '-')}"


def _snoozed_until(event: EventView) -> datetime | None:
    try:
        return datetime.fromisoformat(str(event.data["snoozed_until"]))
    except (KeyError, ValueError):
        return None


def _new_results(event: EventView) -> bool:
    return "test_results" in ((event.data or {}).get("keys") or ())


def render_status_change(event: EventView, incident: IncidentView) -> list[dict[str, Any]]:
    """A thread reply for one history entry: a status change, a symptom joining, an assignment or an auto-resolve;
    a reopening or a new test result also shows the latest test results."""
    blocks = [section(_change_text(event, incident))]
    if event.kind == "reopened" or (event.kind == "analysis_updated" and _new_results(event)):
        results = results_section(results_of(incident.details))
        if results is not None:
            blocks.append(results)
    if event.note:
        quoted = "\n".join("> " + line for line in esc(event.note).splitlines() or [""])
        blocks.append(section(quoted))
    blocks.append(context(f"Incident #{incident.id} is now *{esc(incident.status)}* · {when(event.at)}"))
    return blocks


# ------------------------------------------------------------------------------------------------ modal


def render_resolve_modal(incident: IncidentView) -> dict[str, Any]:
    """The resolve modal: a reason (required) and a comment (optional); the incident rides in private_metadata."""
    reasons = [Option(value=k, text=label) for k, label in RESOLVE_REASONS.items()]
    view = View(
        type="modal",
        callback_id=ActionId.RESOLVE_MODAL,
        title=PlainTextObject(text="Resolve incident"),
        submit=PlainTextObject(text="Resolve"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=incident_value(incident),
        blocks=[
            section(f"{severity_emoji(incident.severity)} *#{incident.id}* {esc(clip(incident.title, 2900))}"),
            InputBlock(
                block_id=ActionId.RESOLVE_REASON,
                label="Reason",
                element=StaticSelectElement(
                    action_id=ActionId.RESOLVE_REASON, options=reasons, initial_option=reasons[0]
                ),
            ),
            InputBlock(
                block_id=ActionId.RESOLVE_COMMENT,
                label="Comment",
                optional=True,
                element=PlainTextInputElement(
                    action_id=ActionId.RESOLVE_COMMENT, multiline=True, max_length=2000, placeholder="What was done?"
                ),
            ),
        ],
    )
    return view.to_dict()
