"""Incident card buttons and the resolve modal: ack, check who may act, change the incident, update the card."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from bot import freshness, services
from bot.actions import SNOOZE_CHOICES, ActionId, ActionValue, decode_value, read_resolve_submission
from bot.blocks import (
    card_fallback_text,
    incident_value,
    render_dna_card,
    render_incident_card,
    render_resolve_modal,
    render_simulation,
)
from bot.blocks_incident import incident_pointer
from bot.blocks_kit import message, with_note
from bot.listeners.errors import NotAllowed, UsageError, reported
from bot.settings import Settings
from bot.timeparse import parse_span
from storage.errors import DnaBotError
from storage.incident_views import IncidentView

Blocks = list[dict[str, Any]]


log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------ permissions


GROUP_TTL_SECONDS = 300
_groups: dict[str, tuple[float, frozenset[str]]] = {}


def admins(settings: Settings) -> set[str]:
    """The Slack user ids in DNABOT_ADMINS, with user groups (ids starting with S) expanded to their members.

    Group members are read with `usergroups.users.list` and cached for five minutes; a group Slack cannot
    answer for counts as empty (nobody gains rights by an error).
    """
    entries = {a.strip() for a in settings.admins.split(",") if a.strip()}
    users = {e for e in entries if not e.startswith("S")}
    for group in sorted(entries - users):
        users |= _group_members(settings, group)
    return users


def _group_members(settings: Settings, group: str) -> frozenset[str]:
    cached = _groups.get(group)
    if cached and time.monotonic() - cached[0] < GROUP_TTL_SECONDS:
        return cached[1]
    from bot.app import build_client  # here, not at import time: bot.app registers these listeners

    try:
        members = frozenset(build_client(settings).usergroups_users_list(usergroup=group).get("users") or [])
    except (SlackApiError, DnaBotError) as exc:
        log.warning("cannot read the members of admin group %s: %s", group, exc)
        return frozenset()
    _groups[group] = (time.monotonic(), members)
    return members


def require_admin(settings: Settings, user_id: str, why: str) -> None:
    if user_id not in admins(settings):
        raise NotAllowed(why)


def _owner_names(incident: IncidentView) -> set[str]:
    names: set[str] = set()
    for owner in (incident.details or {}).get("owners") or []:
        raw = owner if isinstance(owner, str) else (owner.get("name") or owner.get("email") or "")
        names.add(str(raw).lower())
        names.add(str(raw).split("@")[0].lower())
    return names - {""}


def require_admin_or_owner(settings: Settings, user: dict[str, Any], incident: IncidentView, what: str) -> None:
    """Admins, and the asset's owners: an OpenMetadata owner name matching the Slack user id or handle."""
    if user.get("id") in admins(settings):
        return
    handles = {str(user.get(k) or "").lower() for k in ("id", "username", "name")} - {""}
    if handles & _owner_names(incident):
        return
    raise NotAllowed(f"only DNA Bot admins and the owners of {incident.root_fqn} can {what} incident #{incident.id}")


# ------------------------------------------------------------------------------------------- services


# ---------------------------------------------------------------------------------------------- helpers


def _target(body: dict[str, Any]) -> ActionValue:
    action = body["actions"][0]
    raw = action.get("value") or (action.get("selected_option") or {}).get("value") or action.get("block_id")
    try:
        value = decode_value(raw)
    except ValueError as exc:
        raise UsageError(f"this button is from an older DNA Bot card ({exc}); use `/dna incidents`") from None
    if value.id is None:
        raise UsageError("this button does not point at an incident; use `/dna incidents`")
    return value


def _where(body: dict[str, Any]) -> tuple[str | None, str | None]:
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    ts = (body.get("message") or {}).get("ts") or (body.get("container") or {}).get("message_ts")
    return channel, ts or None


def refresh_card(settings: Settings, client: Any, incident_id: int) -> None:
    """Deliver what the change owes now: the card updated in place, the history entry as a thread reply, the
    write-back to OpenMetadata (all owed in the outbox by the change's own transaction)."""
    from bot import delivery  # late: bot.delivery builds on the app's modules

    delivery.drain_incident(settings, client, incident_id)


def adopt(settings: Settings, body: dict[str, Any], incident_id: int) -> None:
    from bot import delivery

    if not (body.get("container") or {}).get("is_ephemeral"):
        delivery.adopt_card(settings, incident_id, *_where(body))


# --------------------------------------------------------------------------------------------- listeners


def register(app: App, settings: Settings) -> None:
    """Register every incident action and the resolve modal's submission."""

    def change(body: dict[str, Any], client: Any, status: str, **kw: Any) -> None:
        target = _target(body)
        adopt(settings, body, target.id)
        services.set_incident_status(settings, target.id, status, actor=body["user"]["id"], **kw)
        refresh_card(settings, client, target.id)

    def guarded(body: dict[str, Any], what: str) -> ActionValue:
        target = _target(body)
        incident = services.incident_detail(settings, target.id).incident
        require_admin_or_owner(settings, body["user"], incident, what)
        return target

    @app.action(ActionId.ACK.pattern)
    @reported
    def acknowledge(ack: Any, body: dict[str, Any], client: Any, respond: Any) -> None:
        ack()
        change(body, client, "acknowledged")

    @app.action(ActionId.REOPEN.pattern)
    @reported
    def reopen(ack: Any, body: dict[str, Any], client: Any, respond: Any) -> None:
        ack()
        change(body, client, "open")

    @app.action(ActionId.ASSIGN.pattern)
    @reported
    def assign(ack: Any, body: dict[str, Any], client: Any, respond: Any) -> None:
        ack()
        target = _target(body)
        assignee = body["actions"][0].get("selected_user")
        adopt(settings, body, target.id)
        services.assign_incident(settings, target.id, assignee, actor=body["user"]["id"])
        refresh_card(settings, client, target.id)

    @app.action(ActionId.SNOOZE.pattern)
    @reported
    def snooze(ack: Any, body: dict[str, Any], client: Any, respond: Any) -> None:
        ack()
        target = guarded(body, "snooze")
        span = target.get("d")
        if span not in SNOOZE_CHOICES:
            raise UsageError(f"snooze for one of {', '.join(SNOOZE_CHOICES)}")
        until = datetime.now(UTC) + parse_span(span)
        change(body, client, "snoozed", snoozed_until=until)

    @app.action(ActionId.RESOLVE.pattern)
    @reported
    def resolve(ack: Any, body: dict[str, Any], client: Any, respond: Any) -> None:
        ack()
        target = guarded(body, "resolve")
        incident = services.incident_detail(settings, target.id).incident
        view = render_resolve_modal(incident)
        channel, ts = _where(body)
        view["private_metadata"] = incident_value(incident, ch=channel, ts=ts)  # so the submission finds the card
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.view(ActionId.RESOLVE_MODAL)
    @reported
    def resolve_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], client: Any) -> None:
        ack()
        submission = read_resolve_submission(view)
        target = submission.target
        incident = services.incident_detail(settings, target.id).incident
        require_admin_or_owner(settings, body["user"], incident, "resolve")
        if target.get("ch") and target.get("ts"):
            from bot import delivery

            delivery.adopt_card(settings, target.id, target.get("ch"), target.get("ts"))
        services.set_incident_status(
            settings, target.id, "resolved", actor=body["user"]["id"], reason=submission.reason, note=submission.comment
        )
        refresh_card(settings, client, target.id)

    @app.action(ActionId.SIMULATE_FIX.pattern)
    @reported
    def simulate(ack: Any, body: dict[str, Any], respond: Any, client: Any) -> None:
        ack()
        detail = services.incident_detail(settings, _target(body).id)
        fixes = (detail.incident.details or {}).get("fixes") or []
        blocks = render_simulation(fixes, pointer=incident_pointer(detail.incident.id))
        respond(**message("Fix simulation", blocks), response_type="ephemeral", replace_original=False)

    @app.action(ActionId.SHOW_INCIDENT.pattern)
    @reported
    def show_incident(ack: Any, body: dict[str, Any], respond: Any, client: Any) -> None:
        ack()
        incident = services.incident_detail(settings, _target(body).id).incident
        blocks = render_incident_card(incident, om_url=settings.openmetadata_ui_url)
        reply = message(card_fallback_text(incident), blocks)
        respond(**reply, response_type="ephemeral", replace_original=False)

    @app.action(ActionId.SHOW_DNA.pattern)
    @reported
    def show_dna(ack: Any, body: dict[str, Any], respond: Any, client: Any) -> None:
        ack()
        fqn = decode_value(body["actions"][0].get("value")).get("fqn")
        view = services.dna(settings, str(fqn), None)
        blocks = with_note(render_dna_card(view), freshness.answer_note(settings))
        respond(**message(f"DNA of {view.entity_fqn}", blocks), response_type="ephemeral", replace_original=False)

    @app.action(ActionId.OPEN_IN_OM.pattern)
    @reported
    def open_in_om(ack: Any) -> None:
        ack()  # a link button: Slack opens the URL, the bot only has to acknowledge the click
