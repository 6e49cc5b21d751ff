"""Incident card buttons and the resolve modal: ack, check who may act, change the incident, update the card."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App

from bot.blocks import (
    card_fallback_text,
    incident_value,
    render_dna_card,
    render_incident_card,
    render_resolve_modal,
    render_simulation,
)
from bot.blocks.incident import incident_pointer
from bot.blocks.kit import message, with_note
from bot.core import freshness, services
from bot.core.actions import SNOOZE_CHOICES, ActionId, ActionValue, decode_value, read_resolve_submission
from bot.core.authz import NotAllowed, require_incident_rights
from bot.core.settings import Settings
from bot.core.timeparse import parse_span
from bot.delivery import writeback
from bot.slack.listeners.errors import UsageError, reported

Blocks = list[dict[str, Any]]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------- helpers


NO_INCIDENT = "this button does not point at an incident; use `/dna incidents`"


def _target(body: dict[str, Any]) -> tuple[ActionValue, int]:
    """The clicked element's value and the incident it points at."""
    action = body["actions"][0]
    raw = action.get("value") or (action.get("selected_option") or {}).get("value") or action.get("block_id")
    try:
        value = decode_value(raw)
    except ValueError as exc:
        raise UsageError(f"this button is from an older DNA Bot card ({exc}); use `/dna incidents`") from None
    return value, _id(value)


def _id(target: ActionValue) -> int:
    """The incident id a value points at; a usage error when it points at none."""
    incident_id = target.id
    if incident_id is None:
        raise UsageError(NO_INCIDENT)
    return incident_id


def _where(body: dict[str, Any]) -> tuple[str | None, str | None]:
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    ts = (body.get("message") or {}).get("ts") or (body.get("container") or {}).get("message_ts")
    return channel, ts or None


def refresh_card(settings: Settings, client: Any, incident_id: int) -> None:
    """Deliver what the change owes now: the card updated in place, the history entry as a thread reply, the
    write-back to OpenMetadata (all owed in the outbox by the change's own transaction)."""
    from bot.delivery import wiring as delivery  # late: bot.delivery.wiring builds on the app's modules

    delivery.drain_incident(settings, client, incident_id)


def adopt(settings: Settings, body: dict[str, Any], incident_id: int) -> None:
    from bot.delivery import wiring as delivery

    if not (body.get("container") or {}).get("is_ephemeral"):
        delivery.adopt_card(settings, incident_id, *_where(body))


# --------------------------------------------------------------------------------------------- listeners


def register(app: App, settings: Settings) -> None:
    """Register every incident action and the resolve modal's submission."""

    def allowed(body: dict[str, Any], what: str) -> tuple[ActionValue, int]:
        """The click's value and incident, once the rule allows this user: before anything (the card's place
        included) is recorded, so a refusal changes nothing."""
        target, incident_id = _target(body)
        incident = services.incident_detail(settings, incident_id).incident
        require_incident_rights(settings, str(body["user"]["id"]), incident, what)
        return target, incident_id

    def change(body: dict[str, Any], client: Any, incident_id: int, status: str, **kw: Any) -> None:
        adopt(settings, body, incident_id)
        writeback.set_incident_status(settings, incident_id, status, actor=body["user"]["id"], **kw)
        refresh_card(settings, client, incident_id)

    @app.action(ActionId.ACK.pattern)
    @reported
    def acknowledge(ack: Any, body: dict[str, Any], client: Any, respond: Any) -> None:
        ack()
        change(body, client, allowed(body, "acknowledge")[1], "acknowledged")

    @app.action(ActionId.REOPEN.pattern)
    @reported
    def reopen(ack: Any, body: dict[str, Any], client: Any, respond: Any) -> None:
        ack()
        change(body, client, allowed(body, "reopen")[1], "open")

    @app.action(ActionId.ASSIGN.pattern)
    @reported
    def assign(ack: Any, body: dict[str, Any], client: Any, respond: Any) -> None:
        ack()
        _, incident_id = allowed(body, "assign")
        assignee = body["actions"][0].get("selected_user")
        adopt(settings, body, incident_id)
        writeback.assign_incident(settings, incident_id, assignee, actor=body["user"]["id"])
        refresh_card(settings, client, incident_id)

    @app.action(ActionId.SNOOZE.pattern)
    @reported
    def snooze(ack: Any, body: dict[str, Any], client: Any, respond: Any) -> None:
        ack()
        target, incident_id = allowed(body, "snooze")
        span = target.get("d")
        if span not in SNOOZE_CHOICES:
            raise UsageError(f"snooze for one of {', '.join(SNOOZE_CHOICES)}")
        until = datetime.now(UTC) + parse_span(span)
        change(body, client, incident_id, "snoozed", snoozed_until=until)

    @app.action(ActionId.RESOLVE.pattern)
    @reported
    def resolve(ack: Any, body: dict[str, Any], client: Any, respond: Any) -> None:
        ack()
        _, incident_id = allowed(body, "resolve")
        incident = services.incident_detail(settings, incident_id).incident
        view = render_resolve_modal(incident)
        channel, ts = _where(body)
        view["private_metadata"] = incident_value(incident, ch=channel, ts=ts)  # so the submission finds the card
        client.views_open(trigger_id=body["trigger_id"], view=view)

    @app.view(ActionId.RESOLVE_MODAL)
    @reported
    def resolve_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], client: Any) -> None:
        # checked again here, before the ack: a submission can be forged, and a refusal belongs in the modal
        try:
            submission = read_resolve_submission(view)
            incident_id = _id(submission.target)
            incident = services.incident_detail(settings, incident_id).incident
            require_incident_rights(settings, str(body["user"]["id"]), incident, "resolve")
        except NotAllowed as exc:
            ack(response_action="errors", errors={ActionId.RESOLVE_REASON: f"Sorry, {exc}. Nothing was changed."})
            return
        except Exception:
            ack()  # the report below tells the user; Slack must not wait for it
            raise
        ack()
        target = submission.target
        if target.get("ch") and target.get("ts"):
            from bot.delivery import wiring as delivery

            delivery.adopt_card(settings, incident_id, target.get("ch"), target.get("ts"))
        writeback.set_incident_status(
            settings,
            incident_id,
            "resolved",
            actor=body["user"]["id"],
            reason=submission.reason,
            note=submission.comment,
        )
        refresh_card(settings, client, incident_id)

    @app.action(ActionId.SIMULATE_FIX.pattern)
    @reported
    def simulate(ack: Any, body: dict[str, Any], respond: Any, client: Any) -> None:
        ack()
        detail = services.incident_detail(settings, _target(body)[1])
        fixes = (detail.incident.details or {}).get("fixes") or []
        blocks = render_simulation(fixes, pointer=incident_pointer(detail.incident.id))
        respond(**message("Fix simulation", blocks), response_type="ephemeral", replace_original=False)

    @app.action(ActionId.SHOW_INCIDENT.pattern)
    @reported
    def show_incident(ack: Any, body: dict[str, Any], respond: Any, client: Any) -> None:
        ack()
        incident = services.incident_detail(settings, _target(body)[1]).incident
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
