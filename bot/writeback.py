"""Write incident status changes back to OpenMetadata's Incident Manager (`testCaseIncidentStatus`).

Only incidents opened from an OpenMetadata test case (`kind == "test_failing"` with `details.test_fqn` and
`details.om_incident`) are written back. A failure never raises: it is returned as a short reason and recorded
as a note in the incident's history, so whoever clicked sees that OpenMetadata was not updated.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from bot.settings import Settings
from storage import db, incidents
from storage.errors import OMAuthError, OMNotFound, OMUnavailable, OpenMetadataError
from storage.incident_views import IncidentView

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
    """Post `status` to OpenMetadata for a test incident: None when done (or nothing to do), else why not.

    Never raises. A failure is also written as a note on the incident.
    """
    test_fqn = om_target(incident_view)
    state = om_state(status, assignee)
    if test_fqn is None or state is None:
        return None
    try:
        _run(_post(settings, test_fqn, state, actor=actor, assignee=assignee, reason=reason, comment=comment))
    except Exception as exc:  # a write-back must never break the Slack listener
        why = _redact(settings, _reason(exc))
        log.warning("write-back of incident %s (%s → %s) failed: %s", incident_view.id, test_fqn, state, why)
        _note(settings, incident_view.id, f"Could not update OpenMetadata ({state} on {test_fqn}): {why}")
        return why
    log.info("incident %s written back to OpenMetadata: %s on %s", incident_view.id, state, test_fqn)
    return None


async def _post(
    settings: Settings,
    test_fqn: str,
    state: str,
    *,
    actor: str,
    assignee: str | None,
    reason: str | None,
    comment: str | None,
) -> Any:
    from bot import services  # services imports this module: import late

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
        status = getattr(exc, "status", None)
        message = getattr(exc, "message", None)
        if status and message:
            return f"OpenMetadata answered {status}: {message}"
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _redact(settings: Settings, text: str) -> str:
    token = settings.openmetadata_token.get_secret_value() if settings.openmetadata_token else None
    if token:
        text = text.replace(token, "***")
    return text[:300]


def _note(settings: Settings, incident_id: int, note: str) -> None:
    try:
        engine = db.make_engine(settings.database_url)
        with db.session_factory(engine).begin() as session:
            incidents.add_note(session, incident_id, actor=NOTE_ACTOR, note=note, now=datetime.now(UTC))
    except Exception:  # the note is best effort too
        log.exception("could not record the failed write-back on incident %s", incident_id)
