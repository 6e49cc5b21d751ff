"""The public face of DNA Bot's pure Block Kit renderers: data in, `list[dict]` (or a view dict) out."""

from __future__ import annotations

from bot.blocks.dna import render_blast, render_dna_card, render_timeline, render_why
from bot.blocks.home import (
    HELP,
    render_ambiguous,
    render_app_home,
    render_error,
    render_help,
    render_incidents,
    render_not_found,
    render_status,
)
from bot.blocks.incident import (
    card_fallback_text,
    incident_value,
    render_incident_card,
    render_resolve_modal,
    render_status_change,
)
from bot.blocks.thread import render_incident_thread, render_simulation

__all__ = [
    "HELP",
    "card_fallback_text",
    "incident_value",
    "render_ambiguous",
    "render_app_home",
    "render_blast",
    "render_dna_card",
    "render_error",
    "render_help",
    "render_incident_card",
    "render_incident_thread",
    "render_incidents",
    "render_not_found",
    "render_resolve_modal",
    "render_simulation",
    "render_status",
    "render_status_change",
    "render_timeline",
    "render_why",
]
