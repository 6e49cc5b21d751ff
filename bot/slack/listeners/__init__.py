"""Slack listeners, one module per concern; `register_listeners` wires them all onto a Bolt `App`."""

from __future__ import annotations

from slack_bolt import App

from bot.core.answers import AnswerPool
from bot.core.settings import Settings
from bot.slack.listeners import actions, commands, home, mentions
from bot.slack.listeners.errors import handle_listener_error
from bot.slack.listeners.mentions import ThreadMemory


def register_listeners(
    app: App, settings: Settings, *, memory: ThreadMemory | None = None, answers: AnswerPool | None = None
) -> AnswerPool:
    """`/dna`, mentions, incident buttons and the resolve modal, App Home, and the one error handler; the slow
    answers of `/dna` and mentions share one answer pool (`answers`, else one from the settings), returned."""
    answers = answers or AnswerPool.from_settings(settings)
    commands.register(app, settings, answers)
    mentions.register(app, settings, memory, answers)
    actions.register(app, settings)
    home.register(app, settings)
    app.error(handle_listener_error)
    return answers


__all__ = ["ThreadMemory", "register_listeners"]
