"""How fresh the DNA store is: read it, call it stale or not, and say so in one short line an answer can carry."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from bot.core.redact import hide_internal, scrub, secrets_of
from bot.core.settings import Settings
from bot.core.slack_text import ago, clip, esc
from storage.persistence import coordination, db, incidents, outbox, store
from storage.persistence.coordination import LeaseView
from storage.persistence.outbox import OutboxStats
from storage.persistence.store import FreshnessView, RunView

log = logging.getLogger(__name__)

ERROR_CHARS = 120  # the error in a note: enough to say what broke, short enough for one line
STORED_ERROR_CHARS = 500

_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Z]\w*: ")  # "OMUnavailable: …" → "…"
_CALL_AT = re.compile(
    r"^(?P<head>.+?) at (?:[a-z][a-z0-9+.-]*://\S+?|\[internal address\]):\s+(?P<rest>.*)$", re.IGNORECASE
)
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")
_EXC_NAME = re.compile(r"\b([A-Z][A-Za-z]*(?:Error|Timeout))\b")


@dataclass(frozen=True, slots=True)
class StatusView:
    """What `/dna status` shows: freshness, open incidents, the outbox and who leads the scheduler."""

    freshness: FreshnessView
    open_by_severity: dict[str, int]
    outbox: OutboxStats
    leader: LeaseView | None
    mcp: dict[str, dict[str, Any]] = field(default_factory=dict)  # outside-context servers: state, last error


# ------------------------------------------------------------------------------------------------ reading


def _open(settings: Settings) -> Engine | None:
    """The store's shared engine, or None while the store is empty (never synced, never migrated)."""
    from bot.core import services  # late: services pulls in the agents

    return services.store_engine(settings)


def _clean_run(run: RunView | None, secrets: list[str]) -> RunView | None:
    if run is None or not run.error:
        return run
    return replace(run, error=clip(scrub(run.error, secrets), STORED_ERROR_CHARS))


def _clean(view: FreshnessView, secrets: list[str]) -> FreshnessView:
    """The view with every stored error text scrubbed of secrets (renderers then show it as is)."""
    failures = tuple(r for r in (_clean_run(f, secrets) for f in view.recent_failures) if r is not None)
    return replace(
        view,
        last_run=_clean_run(view.last_run, secrets),
        last_good=_clean_run(view.last_good, secrets),
        recent_failures=failures,
        last_error=failures[0].error if failures else None,
    )


def freshness(settings: Settings, now: datetime | None = None) -> FreshnessView | None:
    """The store's freshness now (None while the store is empty); error texts come scrubbed of secrets."""
    engine = _open(settings)
    if engine is None:
        return None
    with db.session_factory(engine)() as session:
        view = store.freshness(session, now or datetime.now(UTC))
    return _clean(view, secrets_of(settings))


def status(settings: Settings, now: datetime | None = None) -> StatusView | None:
    """Everything `/dna status` shows, read in one session (None while the store is empty)."""
    engine = _open(settings)
    if engine is None:
        return None
    now = now or datetime.now(UTC)
    with db.session_factory(engine)() as session:
        view = store.freshness(session, now)
        counts = Counter(i.severity for i in incidents.open_incidents(session))
        depth = outbox.stats(session, now)
        leader = coordination.lease_of(session, coordination.SCHEDULER_LEASE)
    return StatusView(_clean(view, secrets_of(settings)), dict(counts), depth, leader, mcp_health(settings))


def mcp_health(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each MCP server's state in this process, its error texts scrubbed of every secret."""
    from agents import mcp_runtime  # late: the agents are not needed to read the store

    secrets = secrets_of(settings)
    out = {}
    for name, state in mcp_runtime.health().items():
        state = dict(state)
        if state.get("error"):
            state["error"] = clip(scrub(str(state["error"]), secrets), 200)
        out[name] = state
    return out


def _hide_run(run: RunView | None) -> RunView | None:
    return replace(run, error=hide_internal(run.error)) if run is not None and run.error else run


def for_everyone(view: StatusView) -> StatusView:
    """The status as anyone may see it: no internal address (OpenMetadata, the database, MCP endpoints, the
    leader's host) in any error or name; admins get the view as it is."""
    fresh = view.freshness
    failures = tuple(r for r in (_hide_run(f) for f in fresh.recent_failures) if r is not None)
    fresh = replace(
        fresh,
        last_run=_hide_run(fresh.last_run),
        last_good=_hide_run(fresh.last_good),
        recent_failures=failures,
        last_error=hide_internal(fresh.last_error) if fresh.last_error else fresh.last_error,
    )
    mcp = {}
    for name, state in view.mcp.items():
        state = dict(state)
        if state.get("error"):
            state["error"] = hide_internal(str(state["error"]))
        mcp[name] = state
    leader = replace(view.leader, holder=hide_internal(view.leader.holder)) if view.leader is not None else None
    return replace(view, freshness=fresh, mcp=mcp, leader=leader)


def internal_endpoints(settings: Settings) -> list[str]:
    """Where this bot reads from, for admins: the OpenMetadata URL and the store (its password hidden)."""
    out = []
    if settings.openmetadata_url:
        out.append(f"OpenMetadata {settings.openmetadata_url}")
    if settings.database_url:
        try:
            shown = db.normalise_url(settings.database_url).render_as_string(hide_password=True)
        except Exception:  # an unparsable URL: say there is one, not what it is
            shown = "(unparsable URL)"
        out.append(f"store {shown}")
    return out


def answer_note(settings: Settings) -> str | None:
    """The stale note for an answer read from the store, or None when fresh (a failure to tell is only logged)."""
    try:
        return stale_note(freshness(settings), settings)
    except Exception as exc:  # the note is a courtesy: it must never cost the user the answer itself
        log.warning("could not read the store's freshness: %s", scrub(repr(exc), secrets_of(settings)))
        return None


# ------------------------------------------------------------------------------------------------- words


def stale(view: FreshnessView | None, stale_after: float) -> bool:
    """Older than `stale_after` seconds, or never synced successfully although syncs have failed."""
    if view is None:
        return False
    if view.age_seconds is None:
        return view.failures > 0
    return view.age_seconds > stale_after


def is_stale(view: FreshnessView | None, settings: Settings) -> bool:
    """`stale` with DNABOT_STALE_AFTER_SECONDS (default: three sync intervals)."""
    return stale(view, settings.stale_after)


def short_error(text: str | None) -> str:
    """A sync error cut to what a reader needs: "OpenMetadata is unavailable (HTTP 503)", one line, no URL."""
    lines = (text or "").strip().splitlines()
    line = _CLASS_PREFIX.sub("", lines[0].strip()) if lines else ""
    call = _CALL_AT.match(line)
    if call is not None:  # "X is unavailable at http://…: GET … last: HTTP 503 …" → "X is unavailable (HTTP 503)"
        rest = call.group("rest")
        statuses = _HTTP_STATUS.findall(rest)
        names = _EXC_NAME.findall(rest)
        cause = f"HTTP {statuses[-1]}" if statuses else names[-1] if names else ""
        line = f"{call.group('head')} ({cause})" if cause else call.group("head")
    return clip(scrub(line), ERROR_CHARS)


def _failed(view: FreshnessView) -> str:
    what = "the last sync failed" if view.failures == 1 else f"the last {view.failures} syncs failed"
    error = short_error(view.last_error)
    return f"{what} ({esc(error)})" if error else what


def note(view: FreshnessView | None, stale_after: float) -> str | None:
    """One mrkdwn line saying how stale the data is and why; None when it is fresh."""
    if view is None or not stale(view, stale_after):
        return None
    if view.age_seconds is None:
        return f":warning: No sync has succeeded yet: {_failed(view)}."
    if view.failures:
        why = _failed(view)
    elif view.last_run is not None and view.last_run.status == "running":
        why = "a sync is running"
    else:
        why = "no sync has run since (is the scheduler running?)"
    return f":warning: Data is {ago(view.age_seconds)} old — {why}. Showing the last good data."


def stale_note(view: FreshnessView | None, settings: Settings) -> str | None:
    """`note` with the configured staleness threshold."""
    return note(view, settings.stale_after)


def summary(view: FreshnessView | None, stale_after: float) -> str:
    """The one-line freshness summary of App Home and `/dna status` (the stale note when stale)."""
    if view is None or view.last_run is None:
        return "No sync has run yet."
    stale_line = note(view, stale_after)
    if stale_line is not None:
        return stale_line
    running = view.last_run.status == "running"
    if view.last_good is None or view.age_seconds is None:
        return ":hourglass: The first sync is running." if running else "No sync has finished yet."
    good = view.last_good
    line = f"Last good sync {ago(view.age_seconds)} ago ({esc(good.mode)}, run #{good.id})"
    if view.failures:
        error = short_error(view.last_error)
        line = f":warning: {line}; {view.failures} failed since" + (f" ({esc(error)})" if error else "")
    else:
        line = f":white_check_mark: {line}"
    return line + (" · a sync is running" if running else "") + "."
