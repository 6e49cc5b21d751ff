"""`@DNA Bot why did orders break?`: a placeholder in the thread at once, then the why-agent's answer in its place."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import App
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot import freshness, services
from bot.blocks import render_why
from bot.blocks_kit import clip, message, with_note
from bot.listeners.errors import UsageError, reply_for, reported
from bot.redact import scrub, secrets_of
from bot.settings import Settings
from storage import coordination, db
from storage.errors import DatasetNotFound

PLACEHOLDER = ":hourglass_flowing_sand: Looking into it…"
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
KEEP_THREADS = timedelta(days=7)  # a follow-up a week later starts afresh
PURGE_EVERY_SECONDS = 3600.0
Blocks = list[dict[str, Any]]

log = logging.getLogger(__name__)


class ThreadMemory:
    """(channel, thread_ts) → the dataset the last answer in that thread was about, so follow-ups keep it.

    Kept in the store (`mention_threads`), so a follow-up that lands on another replica, or after a restart,
    still knows the subject. Threads untouched for `keep` are purged by whichever replica remembers next,
    at most once per `purge_every` per process. A store that cannot be read or written only costs the context.
    """

    def __init__(
        self, settings: Settings, *, keep: timedelta = KEEP_THREADS, purge_every: float = PURGE_EVERY_SECONDS
    ) -> None:
        self.settings = settings
        self.keep = keep
        self.purge_every = purge_every
        self._engine: Engine | None = None
        self._next_purge = 0.0
        self._lock = threading.Lock()

    def _sessions(self) -> sessionmaker[Session]:
        with self._lock:
            if self._engine is None:
                self._engine = db.make_engine(self.settings.database_url)
            return db.session_factory(self._engine)

    def _purge_due(self) -> bool:
        with self._lock:
            if time.monotonic() < self._next_purge:
                return False
            self._next_purge = time.monotonic() + self.purge_every
            return True

    def get(self, channel: str, thread_ts: str) -> str | None:
        try:
            with self._sessions()() as session:
                return coordination.thread_subject(session, channel, thread_ts)
        except Exception as exc:
            log.warning("cannot read the subject of thread %s/%s: %s", channel, thread_ts, _safe(self.settings, exc))
            return None

    def remember(self, channel: str, thread_ts: str, fqn: str) -> None:
        now = datetime.now(UTC)
        try:
            with self._sessions().begin() as session:
                coordination.remember_thread(session, channel, thread_ts, fqn, now=now)
                if self._purge_due():
                    purged = coordination.purge_threads(session, now - self.keep)
                    if purged:
                        log.info("forgot %d mention thread(s) untouched for %s", purged, self.keep)
        except Exception as exc:
            log.warning(
                "cannot remember the subject of thread %s/%s: %s", channel, thread_ts, _safe(self.settings, exc)
            )


def _safe(settings: Settings, exc: BaseException) -> str:
    return scrub(repr(exc), secrets_of(settings))


def question_of(text: str) -> str:
    """The mention's text without the `<@BOT>` tokens."""
    return " ".join(_MENTION.sub(" ", text or "").split())


MAX_QUESTION = 500  # characters: a question, not a document (the LLM prompt and the store search stay small)


def answer_question(settings: Settings, question: str, earlier_fqn: str | None) -> Any:
    """The why-answer; a question that names no dataset falls back on the thread's earlier one."""
    if len(question) > MAX_QUESTION:
        raise UsageError(
            f"That question is {len(question)} characters; I take at most {MAX_QUESTION}. "
            "Ask about one dataset, e.g. `@DNA Bot why did stg_orders break?`"
        )
    if not question:
        question = "Why did it break?"
    try:
        return asyncio.run(services.why(settings, question, None))
    except DatasetNotFound:
        if earlier_fqn is None:
            raise
        return asyncio.run(services.why(settings, earlier_fqn, question))


def _finish(client: Any, channel: str, placeholder: str, thread_ts: str, text: str, blocks: Blocks) -> None:
    """Turn the placeholder into the answer; when it cannot be edited (deleted), answer in a new reply."""
    reply = message(text, blocks)
    try:
        client.chat_update(channel=channel, ts=placeholder, **reply)
    except SlackApiError as exc:
        log.warning(
            "cannot edit the placeholder %s in %s (%s); replying anew", placeholder, channel, exc.response.get("error")
        )
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, **reply)


def register(app: App, settings: Settings, memory: ThreadMemory | None = None) -> ThreadMemory:
    """Register `app_mention`; returns the thread memory it uses."""
    memory = memory or ThreadMemory(settings)

    @app.event("app_mention")
    @reported
    def on_mention(event: dict[str, Any], body: dict[str, Any], client: Any) -> None:
        channel = event["channel"]
        thread_ts = event.get("thread_ts") or event["ts"]
        placeholder = client.chat_postMessage(channel=channel, thread_ts=thread_ts, **message(PLACEHOLDER))["ts"]
        try:
            earlier = memory.get(channel, thread_ts)
            answer = answer_question(settings, question_of(event.get("text", "")), earlier)
        except Exception as exc:  # the placeholder must not be left hanging: it becomes the error message
            text, blocks = reply_for(exc)
            _finish(client, channel, placeholder, thread_ts, text, blocks)
            return
        memory.remember(channel, thread_ts, answer.fqn)
        text = clip(answer.answer, 300) or "Here is what I found."
        blocks = with_note(render_why(answer), freshness.answer_note(settings))
        _finish(client, channel, placeholder, thread_ts, text, blocks)

    return memory
