"""The answer pool: slow answers (why, blast, sync, …) on a few workers of their own, a bounded queue, and limits.

Slack gives a listener 3 seconds to acknowledge. When answers ran in the listener's own worker, 40 slow
questions took every worker and the next `/dna help` was never acknowledged. Listeners now only ack, parse and
`submit` the slow part here: a fixed number of workers, at most `queue` answers waiting for one, and at most
`per_user` / `per_channel` questions in progress (waiting or running) per user and per channel. A question over
a limit is refused at once with a polite `Refused`, and nothing of it runs.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bot.core import metrics, redact
from bot.core.settings import Settings

log = logging.getLogger(__name__)

_POOLS: weakref.WeakSet[AnswerPool] = weakref.WeakSet()
_POOLS_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a question was not taken (`user`, `channel`, `queue` or `closed`) and what to tell the asker."""

    reason: str
    text: str


class AnswerPool:
    """A bounded pool for slow answers, with per-user and per-channel limits on questions in progress."""

    def __init__(
        self,
        *,
        workers: int = 8,
        queue: int = 32,
        per_user: int = 2,
        per_channel: int = 4,
        secrets: Iterable[str] = (),
        name: str = "answers",
    ) -> None:
        if workers < 1 or queue < 0 or per_user < 1 or per_channel < 1:
            raise ValueError("an answer pool needs workers >= 1, queue >= 0, per_user >= 1 and per_channel >= 1")
        self.workers, self.queue, self.per_user, self.per_channel = workers, queue, per_user, per_channel
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"dnabot-{name}")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when the last question in progress is done
        self._by_user: Counter[str] = Counter()
        self._by_channel: Counter[str] = Counter()
        self._in_progress = 0
        self._running = 0
        self._closed = False
        self._secrets = tuple(secrets)
        with _POOLS_LOCK:
            _POOLS.add(self)

    @classmethod
    def from_settings(cls, settings: Settings) -> AnswerPool:
        """A pool sized by DNABOT_ANSWER_WORKERS, _QUEUE, _PER_USER and _PER_CHANNEL."""
        return cls(
            workers=settings.answer_workers,
            queue=settings.answer_queue,
            per_user=settings.answer_per_user,
            per_channel=settings.answer_per_channel,
            secrets=redact.secrets_of(settings),
        )

    @property
    def waiting(self) -> int:
        """Questions accepted but not yet started (the queue depth)."""
        with self._lock:
            return self._in_progress - self._running

    def submit(self, work: Callable[[], None], *, user: str, channel: str) -> Refused | None:
        """Run `work` on the pool, or say why not (None: taken); `reserve` then `Slot.start` in one step."""
        slot = self.reserve(user=user, channel=channel)
        if isinstance(slot, Refused):
            return slot
        slot.start(work)
        return None

    def reserve(self, *, user: str, channel: str) -> Slot | Refused:
        """Take a place for one question of `user` in `channel` (counted against the limits from now on), or say
        why not. The caller sends its "working on it" note, then `start`s the slot (or `release`s it)."""
        with self._lock:
            refused = self._refusal(user, channel)
            if refused is None:
                self._by_user[user] += 1
                self._by_channel[channel] += 1
                self._in_progress += 1
        if refused is not None:
            log.info("question from %s in %s not taken: %s", user or "?", channel or "?", refused.reason)
            metrics.observe_answer_refused(refused.reason)
            return refused
        return Slot(self, user, channel)

    def _start(self, slot: Slot, work: Callable[[], None]) -> None:
        try:
            self._executor.submit(self._run, work, slot.user, slot.channel)
        except RuntimeError:  # shut down since the reservation: the question is dropped, as queued ones are
            with self._lock:
                self._release(slot.user, slot.channel)
            log.warning("question from %s not answered: the answer pool is shut down", slot.user or "?")
        metrics.set_answers_waiting(self.waiting)

    def _refusal(self, user: str, channel: str) -> Refused | None:
        if self._closed:
            return _closed()
        if user and self._by_user[user] >= self.per_user:
            return Refused(
                "user",
                f":hourglass: You already have {_questions(self.per_user)} in progress; "
                "ask again when one is answered.",
            )
        if channel and self._by_channel[channel] >= self.per_channel:
            return Refused(
                "channel",
                f":hourglass: This channel already has {_questions(self.per_channel)} in progress; "
                "ask again when one is answered.",
            )
        if self._in_progress >= self.workers + self.queue:
            return Refused("queue", ":hourglass: I am answering a lot of questions right now; ask again in a minute.")
        return None

    def _run(self, work: Callable[[], None], user: str, channel: str) -> None:
        with self._lock:
            self._running += 1
        metrics.set_answers_waiting(self.waiting)
        try:
            work()
        except Exception as exc:  # a bug in a listener's error path: logged, masked, the worker lives on
            log.error("an answer failed outside its error report: %s", redact.scrub(repr(exc), self._secrets))
        finally:
            with self._lock:
                self._running -= 1
                self._release(user, channel)
            metrics.set_answers_waiting(self.waiting)

    def _release(self, user: str, channel: str) -> None:
        self._in_progress -= 1
        for counts, key in ((self._by_user, user), (self._by_channel, channel)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]
        if self._in_progress <= 0:
            self._idle.notify_all()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Take no more questions. With `wait`, let the accepted ones (running and queued) finish, for at most
        `timeout` seconds (None: as long as they take); without, drop the queued ones (running answers finish in
        their threads). True when nothing is left in progress."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=not wait)
        if not wait:  # (cancelled questions stay counted: they were accepted and will not be answered)
            with self._lock:
                return self._in_progress == 0
        with self._idle:
            return self._idle.wait_for(lambda: self._in_progress == 0, timeout)


class Slot:
    """One reserved place in the pool: `start(work)` runs the question's slow part, `release()` gives it up."""

    def __init__(self, pool: AnswerPool, user: str, channel: str) -> None:
        self._pool, self.user, self.channel = pool, user, channel
        self._used = False

    def start(self, work: Callable[[], None]) -> None:
        """Queue `work` (it must tell the user of its own failures); at most once."""
        if self._used:
            raise RuntimeError("this answer slot was already used")
        self._used = True
        self._pool._start(self, work)

    def release(self) -> None:
        """Give the place up without running anything (the note before the work could not be sent)."""
        if not self._used:
            self._used = True
            with self._pool._lock:
                self._pool._release(self.user, self.channel)


def _questions(n: int) -> str:
    return f"{n} question" if n == 1 else f"{n} questions"


def _closed() -> Refused:
    return Refused("closed", ":hourglass: I am restarting; ask again in a minute.")


def shutdown(wait: bool = True, timeout: float | None = None) -> bool:
    """Close every answer pool in this process (SIGTERM, `dnabot serve` ending); see `AnswerPool.shutdown`.
    The `timeout` bounds the whole wait; True when every pool finished what it had accepted."""
    with _POOLS_LOCK:
        pools = list(_POOLS)
    deadline = None if timeout is None else time.monotonic() + timeout
    done = True
    for pool in pools:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        done = pool.shutdown(wait=wait, timeout=left) and done
    return done
