"""`@DNA Bot why did orders break?`: a placeholder in the thread at once, then (from the answer pool) the answer."""

from __future__ import annotations

import asyncio
import functools
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

from bot.blocks import render_why
from bot.blocks.kit import clip, message, with_note
from bot.core import freshness, services, visibility
from bot.core.answers import AnswerPool, Refused
from bot.core.redact import scrub, secrets_of
from bot.core.settings import Settings
from bot.slack.listeners.errors import UsageError, reply_for, reported
from storage.errors import AmbiguousDataset, DatasetNotFound
from storage.persistence import coordination, db

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


def _check_length(question: str) -> None:
    if len(question) > MAX_QUESTION:
        raise UsageError(
            f"That question is {len(question)} characters; I take at most {MAX_QUESTION}. "
            "Ask about one dataset, e.g. `@DNA Bot why did stg_orders break?`"
        )


def answer_question(settings: Settings, question: str, earlier_fqn: str | None, channel: str = "") -> Any:
    """The why-answer; a question that names no dataset falls back on the thread's earlier one. Everyone in
    `channel` reads it, so it names only the incidents that may be named there."""
    _check_length(question)
    if not question:
        question = "Why did it break?"

    def named_here(items: list[Any]) -> list[Any]:
        return visibility.visible_in(settings, channel, items).incidents

    try:
        return asyncio.run(services.why(settings, question, None, visible=named_here))
    except AmbiguousDataset as exc:  # "which one?", unless the thread is already about one of them
        if earlier_fqn not in exc.candidates:
            raise
        return asyncio.run(services.why(settings, earlier_fqn, question, visible=named_here))
    except DatasetNotFound:
        if earlier_fqn is None:
            raise
        return asyncio.run(services.why(settings, earlier_fqn, question, visible=named_here))


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


@reported
def _answer_in_thread(
    settings: Settings,
    memory: ThreadMemory,
    question: str,
    channel: str,
    thread_ts: str,
    placeholder: str,
    body: dict[str, Any],
    client: Any,
) -> None:
    """The slow part of a mention, on the answer pool: the why-agent, then its answer in the placeholder's place."""
    try:
        earlier = memory.get(channel, thread_ts)
        answer = answer_question(settings, question, earlier, channel)
    except Exception as exc:  # the placeholder must not be left hanging: it becomes the error message
        text, blocks = reply_for(exc)
        _finish(client, channel, placeholder, thread_ts, text, blocks)
        return
    memory.remember(channel, thread_ts, answer.fqn)
    text = clip(answer.answer, 300) or "Here is what I found."
    blocks = with_note(render_why(answer), freshness.answer_note(settings))
    _finish(client, channel, placeholder, thread_ts, text, blocks)


def register(
    app: App, settings: Settings, memory: ThreadMemory | None = None, answers: AnswerPool | None = None
) -> ThreadMemory:
    """Register `app_mention` (its answers run on `answers`, the app's answer pool); returns the thread memory."""
    memory = memory or ThreadMemory(settings)
    pool = answers or AnswerPool.from_settings(settings)

    @app.event("app_mention")
    @reported
    def on_mention(event: dict[str, Any], body: dict[str, Any], client: Any) -> None:
        channel = event["channel"]
        thread_ts = event.get("thread_ts") or event["ts"]
        question = question_of(event.get("text", ""))
        _check_length(question)  # told in the thread at once, like every UsageError
        slot = pool.reserve(user=event.get("user") or "", channel=channel)
        if isinstance(slot, Refused):  # nothing starts: no placeholder, no agent
            client.chat_postMessage(channel=channel, thread_ts=thread_ts, **message(slot.text))
            return
        try:
            placeholder = client.chat_postMessage(channel=channel, thread_ts=thread_ts, **message(PLACEHOLDER))["ts"]
        except BaseException:
            slot.release()
            raise
        slot.start(
            functools.partial(
                _answer_in_thread,
                settings=settings,
                memory=memory,
                question=question,
                channel=channel,
                thread_ts=thread_ts,
                placeholder=placeholder,
                body=body,
                client=client,
            )
        )

    return memory
