"""Incident status changes, and their write-back to OpenMetadata's Incident Manager (`testCaseIncidentStatus`).

`set_incident_status` and `assign_incident` (behind the CLI and the card buttons) make the change and owe the
write-back in one transaction, then try it at once by draining its outbox lane (`deliver_now`): they live here,
above the service layer, because that drain is the outbox drainer's (`bot.delivery.notifier`).

Only incidents opened from an OpenMetadata test case (`kind == "test_failing"` with `details.test_fqn` and
`details.om_incident`) are written back. The write-back is an outbox row (`om_status`) written in the transaction
of the status change, delivered at once by the process that made the change and retried by any replica while
OpenMetadata is down. A failure never raises: it is recorded as a note in the incident's history (so whoever
clicked sees that OpenMetadata was not updated yet), and a refusal or the last failed attempt parks the row.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.core import authz, services
from bot.core.redact import scrub, secrets_of
from bot.core.settings import Settings
from bot.delivery.notifier import Notifier, Permanent, Retryable
from storage.errors import OMAuthError, OMNotFound, OMUnavailable, OpenMetadataError
from storage.openmetadata.quality import IncidentWrite
from storage.persistence import db, incidents, outbox
from storage.persistence.incident_views import IncidentView
from storage.persistence.outbox import OutboxRow
from storage.persistence.people import user_for_email

log = logging.getLogger(__name__)

T = TypeVar("T")

# our status → OpenMetadata's testCaseResolutionStatusType ("assigned" is a pseudo-status: an assignee was set)
OM_STATES = {"acknowledged": "Ack", "assigned": "Assigned", "resolved": "Resolved"}
NOTE_ACTOR = incidents.BOT


def om_target(incident: IncidentView) -> str | None:
    """The test case FQN to write back to, or None when the incident did not come from an OM test incident."""
    details = incident.details or {}
    test_fqn = details.get("test_fqn")
    if incident.kind != "test_failing" or not isinstance(test_fqn, str) or not test_fqn:
        return None
    if not isinstance(details.get("om_incident"), dict):
        return None
    return test_fqn


def om_state(status: str, assignee: str | None = None) -> str | None:
    """The OpenMetadata state for one of our statuses, or None when there is nothing to write."""
    state = OM_STATES.get(status)
    if state == "Assigned" and not assignee:
        return None
    return state


def owe(
    session: Session,
    incident_view: IncidentView,
    status: str,
    *,
    actor: str,
    now: datetime,
    assignee: str | None = None,
    reason: str | None = None,
    comment: str | None = None,
) -> str | None:
    """Owe OpenMetadata this status change, in the caller's transaction; the outbox lane, or None if nothing is owed."""
    test_fqn = om_target(incident_view)
    state = om_state(status, assignee)
    if test_fqn is None or state is None:
        return None
    detail = incidents.get_incident(session, incident_view.id)
    last_event = max((e.id for e in detail.events), default=0)
    lane = outbox.incident_lane(incident_view.id, "om")
    payload = {
        "test_fqn": test_fqn,
        "state": state,
        "actor": actor,
        "assignee": assignee if state == "Assigned" else None,
        "reason": reason if state == "Resolved" else None,
        "comment": comment if state == "Resolved" else None,
    }
    key = f"om:{incident_view.id}:{last_event}:{state}"
    outbox.enqueue(session, key, "om_status", lane=lane, now=now, incident_id=incident_view.id, payload=payload)
    return lane


def set_incident_status(
    settings: Settings, incident_id: int, status: str, *, actor: str, reason: str | None = None, **kw: Any
) -> IncidentView:
    """Change the status; the card update, the thread reply and any OpenMetadata write-back are owed in the same
    transaction (the outbox), and the write-back is tried at once."""
    engine = services.ready_engine(settings)
    now = datetime.now(UTC)
    lanes: list[str] = []
    with db.session_factory(engine).begin() as session:
        before = incidents.get_incident(session, incident_id).incident
        view = incidents.set_status(session, incident_id, status, actor=actor, now=now, reason=reason, **kw)
        if view.status != before.status:
            lane = owe(session, view, view.status, actor=actor, now=now, reason=reason, comment=kw.get("note"))
            lanes += [lane] if lane else []
        assignee = kw.get("assignee")
        if assignee and assignee != before.assignee and view.assignee == assignee:
            lane = owe(session, view, "assigned", actor=actor, now=now, assignee=assignee)
            lanes += [lane] if lane and lane not in lanes else []
    for lane in lanes:  # committed: now tell OpenMetadata (a failure is a note and a retry, never an exception)
        deliver_now(settings, engine, lane)
    return view


def assign_incident(settings: Settings, incident_id: int, assignee: str | None, *, actor: str) -> IncidentView:
    """Give the incident to a Slack user without changing its status (recorded as a note; written back to
    OpenMetadata for data-quality incidents)."""
    engine = services.ready_engine(settings)
    now = datetime.now(UTC)
    with db.session_factory(engine).begin() as session:
        before = incidents.get_incident(session, incident_id).incident.assignee
        view = incidents.assign(session, incident_id, assignee, actor=actor, now=now)
        lane = (
            owe(session, view, "assigned", actor=actor, now=now, assignee=assignee)
            if assignee and assignee != before
            else None
        )
    if lane:
        deliver_now(settings, engine, lane)
    return view


SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")


class OMUsers:
    """Slack user id → OpenMetadata user name: the Slack profile's verified email (`users.info`, read through
    `bot.core.authz`, the same rule that decides who owns an asset), matched against the OpenMetadata users synced into
    `people`. Anything that is not a Slack user id is already an OpenMetadata name (the CLI's `--actor`) and
    passes through. Answers are cached for the life of the instance."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._cache: dict[str, str | None] = {}

    def __call__(self, user: str | None) -> str | None:
        if not user or not SLACK_USER_ID.match(user):
            return user
        if user not in self._cache:
            self._cache[user] = self._lookup(user)
        return self._cache[user]

    def _lookup(self, slack_id: str) -> str | None:
        email = authz.verified_email(self.settings, slack_id)
        if not email:
            log.warning("no verified email for Slack user %s: not named in OpenMetadata", slack_id)
            return None
        with db.session_factory(services.engine_for(self.settings))() as session:
            return user_for_email(session, email)


def writer(settings: Settings) -> Callable[[OutboxRow], None]:
    """The outbox's OpenMetadata deliverer: posts the state, naming people as OpenMetadata users; a failure says
    whether a retry can help."""
    om_user = OMUsers(settings)

    def deliver(row: OutboxRow) -> None:
        payload = row.payload
        assignee = payload.get("assignee")
        if assignee and om_user(assignee) is None:
            raise Permanent(
                f"no OpenMetadata user has the email of Slack user <@{assignee}>: assign the incident in OpenMetadata"
            )
        try:
            outcome = _run(
                _post(
                    settings,
                    str(payload["test_fqn"]),
                    str(payload["state"]),
                    actor=om_user(str(payload.get("actor") or "")),
                    assignee=om_user(assignee),
                    reason=payload.get("reason"),
                    comment=payload.get("comment"),
                )
            )
        except Exception as exc:
            why = _redact(settings, _reason(exc))
            what = f"{payload.get('state')} on {payload.get('test_fqn')}"
            log.warning("write-back of incident %s (%s) failed: %s", row.incident_id, what, why)
            if isinstance(exc, OMUnavailable) or not isinstance(exc, OpenMetadataError):
                if row.attempts == 1 and row.incident_id is not None:  # tell whoever clicked at once
                    _note(settings, row.incident_id, f"Could not update OpenMetadata ({what}): {why}; retrying")
                raise Retryable(why) from None
            raise Permanent(why) from None
        if outcome.skipped:  # written nothing on purpose (e.g. an Ack would open a new incident there): say why
            log.info("incident %s not written back (%s): %s", row.incident_id, payload["state"], outcome.skipped)
            if row.incident_id is not None and not outcome.already:
                _note(settings, row.incident_id, f"OpenMetadata not updated ({payload['state']}): {outcome.skipped}")
            return
        log.info(
            "incident %s written back to OpenMetadata: %s on %s", row.incident_id, payload["state"], payload["test_fqn"]
        )

    return deliver


def write_back(
    settings: Settings,
    incident_view: IncidentView,
    status: str,
    *,
    actor: str,
    assignee: str | None = None,
    reason: str | None = None,
    comment: str | None = None,
) -> str | None:
    """Owe OpenMetadata `status` and try to deliver it now: None when done (or nothing to do), else why not.

    Never raises. A transient failure stays in the outbox and is retried; any failure is noted on the incident.
    """
    engine = services.engine_for(settings)
    with db.session_factory(engine).begin() as session:
        lane = owe(
            session,
            incident_view,
            status,
            actor=actor,
            now=datetime.now(UTC),
            assignee=assignee,
            reason=reason,
            comment=comment,
        )
    if lane is None:
        return None
    return deliver_now(settings, engine, lane)


def deliver_now(settings: Settings, engine: Engine, lane: str) -> str | None:
    """Drain one write-back lane in this thread; the failure reason of its newest row, if it failed."""
    drainer = Notifier(None, om_writer=writer(settings), max_attempts=settings.outbox_max_attempts)
    drainer.publish(engine, lanes=[lane])
    with db.session_factory(engine)() as session:
        newest = next(iter(outbox.rows(session, lane=lane, limit=1)), None)
    if newest is None or newest.status in (outbox.DELIVERED, outbox.SKIPPED):
        return None
    return newest.last_error or "not delivered yet"


async def _post(
    settings: Settings,
    test_fqn: str,
    state: str,
    *,
    actor: str | None,
    assignee: str | None,
    reason: str | None,
    comment: str | None,
) -> IncidentWrite:
    async with services.client_for(settings) as client:
        return await client.post_incident_status(
            test_fqn,
            state,
            assignee=assignee if state == "Assigned" else None,
            reason=reason if state == "Resolved" else None,
            comment=comment if state == "Resolved" else None,
            resolved_by=actor if state == "Resolved" else None,
        )


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`, in a worker thread when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _reason(exc: Exception) -> str:
    if isinstance(exc, OMUnavailable):
        status = f" (HTTP {exc.status})" if getattr(exc, "status", None) else ""
        return f"OpenMetadata is unavailable{status}"
    if isinstance(exc, OMAuthError):
        return f"OpenMetadata refused the bot's token (HTTP {exc.status})"
    if isinstance(exc, OMNotFound):
        said = f": {exc.message}" if getattr(exc, "message", None) else ""
        return f"OpenMetadata answered 404{said}"
    if isinstance(exc, OpenMetadataError):
        code = getattr(exc, "status", None)
        message = getattr(exc, "message", None)
        if code and message:
            return f"OpenMetadata answered {code}: {message}"
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _redact(settings: Settings, text: str) -> str:
    """A failure reason fit for the incident's history (and so its Slack thread): every secret masked."""
    return scrub(text, secrets_of(settings))[:300]


def _note(settings: Settings, incident_id: int, note: str) -> None:
    try:
        engine = services.engine_for(settings)
        with db.session_factory(engine).begin() as session:
            incidents.add_note(session, incident_id, actor=NOTE_ACTOR, note=note, now=datetime.now(UTC))
    except Exception:  # the note is best effort too
        log.exception("could not record the failed write-back on incident %s", incident_id)
