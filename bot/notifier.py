"""The incident notifier: one Slack thread per incident, its card kept current, its history added as replies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.blocks import card_fallback_text, render_incident_card, render_incident_thread, render_status_change
from bot.lineage_png import incident_png
from bot.routing import Router
from storage import incidents, subscriptions, threads
from storage.db import session_factory
from storage.incident_views import EventView, IncidentDetailView, IncidentView

log = logging.getLogger(__name__)

EVENT_TYPE = "dnabot_incident"  # message metadata: lets a replica find the card of an incident again
Mentions = Callable[[list[str]], Mapping[str, str]]


@dataclass
class PublishResult:
    """What one publish did: incidents posted (new threads) and updated, replies added, incidents that failed."""

    posted: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    replies: int = 0
    failed: list[int] = field(default_factory=list)


def make_client(token: str, *, base_url: str | None = None, max_retries: int = 3) -> WebClient:
    """A WebClient that waits out 429s (`Retry-After`) and retries connection errors."""
    kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
    return WebClient(
        token=token,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=max_retries),
            ConnectionErrorRetryHandler(max_retry_count=max_retries),
        ],
        **kwargs,
    )


def _status_event(events: list[EventView]) -> EventView | None:
    """The latest event that set the status (the card shows who and when)."""
    return next((e for e in reversed(events) if e.status_to), None)


def _last_event_id(events: list[EventView]) -> int | None:
    return max((e.id for e in events), default=None)


class Notifier:
    """Publishes pending incidents to Slack through `client`, in the channels `router` picks."""

    def __init__(
        self,
        client: WebClient,
        router: Router,
        *,
        om_ui_url: str | None = None,
        mentions: Mentions | None = None,
    ) -> None:
        self.client = client
        self.router = router
        self.om_ui_url = om_ui_url
        self.mentions = mentions

    def publish(self, engine: Engine, *, now: datetime | None = None) -> PublishResult:
        """Post a thread for each new incident and bring each changed one up to date; Slack errors wait a retry."""
        result = PublishResult()
        factory = session_factory(engine)
        with factory() as session:
            todo = threads.pending(session)
        for incident_id in todo:
            try:
                # One transaction per incident: a Slack failure leaves it pending, the others still go out.
                with factory.begin() as session:
                    self._publish_one(session, incident_id, result, now or datetime.now(UTC))
            except (SlackClientError, OSError) as exc:
                log.warning("Slack refused incident %s; it is retried on the next publish: %s", incident_id, exc)
                result.failed.append(incident_id)
        return result

    def owner_mentions(self, incident: IncidentView) -> dict[str, str]:
        """OpenMetadata owner name → Slack id: the routing file's `owners`, then the `mentions` lookup."""
        owners = [str(o) for o in incident.details.get("owners") or []]
        found = {name: self.router.owners[name] for name in owners if name in self.router.owners}
        missing = [name for name in owners if name not in found]
        if missing and self.mentions is not None:
            found.update({k: v for k, v in self.mentions(missing).items() if v})
        return found

    def _card(self, detail: IncidentDetailView) -> list[dict[str, Any]]:
        incident = detail.incident
        return render_incident_card(
            incident,
            owner_mentions=self.owner_mentions(incident),
            om_url=self.om_ui_url,
            status_event=_status_event(detail.events),
        )

    def _publish_one(self, session: Session, incident_id: int, result: PublishResult, now: datetime) -> None:
        detail = incidents.get_incident(session, incident_id)
        thread = threads.thread_of(session, incident_id)
        if thread is None:
            if detail.incident.status != "resolved":
                self._open_thread(session, detail, result, now)
        elif detail.incident.version > thread.posted_version:
            self._update_thread(session, detail, thread, result, now)

    def _open_thread(self, session: Session, detail: IncidentDetailView, result: PublishResult, now: datetime) -> None:
        incident = detail.incident
        channel = self.router.route(incident)
        parent = self.client.chat_postMessage(
            channel=channel,
            text=card_fallback_text(incident),
            blocks=self._card(detail),
            metadata={
                "event_type": EVENT_TYPE,
                "event_payload": {"fingerprint": incident.fingerprint, "incident_id": incident.id},
            },
        )
        channel, ts = parent.get("channel") or channel, parent["ts"]
        for blocks in render_incident_thread(detail):
            self._reply(channel, ts, blocks, f"Incident #{incident.id}: the details")
            result.replies += 1
        self.client.files_upload_v2(
            channel=channel,
            thread_ts=ts,
            content=incident_png(incident),
            filename=f"incident-{incident.id}-lineage.png",
            title=f"Lineage of incident #{incident.id}: cause → broken columns → dashboards",
        )
        threads.record_thread(
            session,
            incident.id,
            channel,
            ts,
            version=incident.version,
            last_event_id=_last_event_id(detail.events),
            now=now,
        )
        result.posted.append(incident.id)
        self._notify_subscribers(session, incident, channel, ts)

    def _notify_subscribers(self, session: Session, incident: IncidentView, channel: str, ts: str) -> None:
        """A short notice linking to the new thread in every subscribed channel but the routed one (best effort)."""
        others = sorted(subscriptions.channels_for(session, incident) - {channel})
        if not others:
            return
        try:
            link = self.client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
        except (SlackClientError, OSError) as exc:
            log.warning("no permalink for incident %s; subscribers are not told: %s", incident.id, exc)
            return
        text = f":rotating_light: {card_fallback_text(incident)} — <{link}|open the thread>"
        for other in others:
            try:
                self.client.chat_postMessage(channel=other, text=text, unfurl_links=False)
            except (SlackClientError, OSError) as exc:
                # The thread is already posted: a failed notice must not re-post it on the next publish.
                log.warning("could not tell %s about incident %s: %s", other, incident.id, exc)

    def _update_thread(
        self,
        session: Session,
        detail: IncidentDetailView,
        thread: threads.ThreadView,
        result: PublishResult,
        now: datetime,
    ) -> None:
        incident = detail.incident
        self.client.chat_update(
            channel=thread.channel, ts=thread.ts, text=card_fallback_text(incident), blocks=self._card(detail)
        )
        seen = thread.last_event_id if thread.last_event_id is not None else 0
        for event in (e for e in detail.events if e.id > seen):
            self._reply(thread.channel, thread.ts, render_status_change(event, incident), card_fallback_text(incident))
            result.replies += 1
        threads.mark_posted(
            session,
            incident.id,
            version=incident.version,
            last_event_id=_last_event_id(detail.events) or thread.last_event_id,
            now=now,
        )
        result.updated.append(incident.id)

    def _reply(self, channel: str, ts: str, blocks: list[dict[str, Any]], text: str) -> None:
        self.client.chat_postMessage(channel=channel, thread_ts=ts, text=text, blocks=blocks)
