"""`@DNA Bot why did orders break?`: a placeholder in the thread at once, then the why-agent's answer in its place."""

from __future__ import annotations

import asyncio
import re
import threading
from collections import OrderedDict
from typing import Any

from slack_bolt import App

from bot import services
from bot.blocks import render_why
from bot.blocks_kit import clip
from bot.listeners.errors import reply_for
from bot.settings import Settings
from storage.errors import DatasetNotFound

PLACEHOLDER = ":hourglass_flowing_sand: Looking into it…"
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")


class ThreadMemory:
    """thread_ts → the dataset the last answer in that thread was about, so follow-ups keep their context.

    In memory and bounded (oldest forgotten first): a restart forgets it. Issue 5 may persist it in the store.
    """

    def __init__(self, limit: int = 2000) -> None:
        self._items: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def get(self, thread_ts: str) -> str | None:
        with self._lock:
            return self._items.get(thread_ts)

    def remember(self, thread_ts: str, fqn: str) -> None:
        with self._lock:
            self._items[thread_ts] = fqn
            self._items.move_to_end(thread_ts)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)


def question_of(text: str) -> str:
    """The mention's text without the `<@BOT>` tokens."""
    return " ".join(_MENTION.sub(" ", text or "").split())


def answer_question(settings: Settings, question: str, earlier_fqn: str | None) -> Any:
    """The why-answer; a question that names no dataset falls back on the thread's earlier one."""
    if not question:
        question = "Why did it break?"
    try:
        return asyncio.run(services.why(settings, question, None))
    except DatasetNotFound:
        if earlier_fqn is None:
            raise
        return asyncio.run(services.why(settings, earlier_fqn, question))


def register(app: App, settings: Settings, memory: ThreadMemory | None = None) -> ThreadMemory:
    """Register `app_mention`; returns the thread memory it uses."""
    memory = memory or ThreadMemory()

    @app.event("app_mention")
    def on_mention(event: dict[str, Any], client: Any) -> None:
        channel = event["channel"]
        thread_ts = event.get("thread_ts") or event["ts"]
        placeholder = client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=PLACEHOLDER)
        try:
            answer = answer_question(settings, question_of(event.get("text", "")), memory.get(thread_ts))
        except Exception as exc:  # the placeholder must not be left hanging: it becomes the error message
            text, blocks = reply_for(exc)
            client.chat_update(channel=channel, ts=placeholder["ts"], text=text, blocks=blocks)
            return
        memory.remember(thread_ts, answer.fqn)
        text = clip(answer.answer, 300) or "Here is what I found."
        client.chat_update(channel=channel, ts=placeholder["ts"], text=text, blocks=render_why(answer))

    return memory
