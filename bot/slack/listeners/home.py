"""App Home: the lowest-trust assets, the open incidents by severity and the last sync, published per user."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from slack_bolt import App

from bot.blocks import render_app_home
from bot.blocks.dna import trust_factors
from bot.core import freshness, services, visibility
from bot.core.actions import ActionId
from bot.core.redact import scrub, secrets_of
from bot.core.settings import Settings
from bot.slack.listeners.errors import reported
from storage.errors import DnaBotError
from storage.persistence import db
from storage.persistence.incident_views import IncidentView
from storage.persistence.models import Entity, Snapshot
from storage.persistence.store import FreshnessView

LOWEST_TRUST = 10
STORE_DOWN = "The DNA store cannot be read right now, so this tab is empty; Refresh in a minute."

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HomeData:
    """What the Home tab shows; `problem` says what could not be read (the rest still shows)."""

    lowest_trust: list[tuple[str, int, str]]
    open_incidents: list[IncidentView]
    freshness: FreshnessView | None
    problem: str | None = None


def _weakest_reason(raw: Any) -> str:
    factors = trust_factors(raw)
    if not factors:
        return ""
    weakest = min(factors, key=lambda f: float(f.get("score") or 0) * float(f.get("weight") or 1))
    return str(weakest.get("reason") or "")


def lowest_trust(settings: Settings, limit: int = LOWEST_TRUST) -> list[tuple[str, int, str]]:
    """(fqn, trust score, the weakest factor's reason) of the live assets with the lowest current trust."""
    engine = services.engine_for(settings)
    if db.current_revision(engine) is None:
        return []
    stmt = (
        sa.select(Entity.fqn, Snapshot.trust_score, Snapshot.trust_factors)
        .join(Snapshot, Entity.current_snapshot_id == Snapshot.id)
        .where(Entity.deleted_at.is_(None), Snapshot.trust_score.is_not(None))
        .order_by(Snapshot.trust_score, Entity.fqn)
        .limit(limit)
    )
    with db.session_factory(engine)() as session:
        return [(fqn, int(score), _weakest_reason(factors)) for fqn, score, factors in session.execute(stmt)]


def home_data(settings: Settings) -> HomeData:
    """Everything the Home tab needs; an empty store gives an empty tab, a broken one a tab that says so."""
    try:
        view = freshness.freshness(settings)
        if view is None:
            return HomeData([], [], None)
        return HomeData(lowest_trust(settings), services.incidents_list(settings, "open"), view)
    except DnaBotError as exc:
        return HomeData([], [], None, scrub(str(exc), secrets_of(settings)))
    except Exception as exc:  # the store is down or broken: say so on the tab instead of leaving it blank
        log.warning("App Home could not read the DNA store: %s", scrub(repr(exc), secrets_of(settings)))
        return HomeData([], [], None, STORE_DOWN)


def publish_home(settings: Settings, client: Any, user_id: str) -> None:
    data = home_data(settings)
    seen = visibility.visible_to(settings, user_id, data.open_incidents, client=client)  # routing decides
    view = render_app_home(
        lowest_trust=data.lowest_trust,
        open_incidents=seen.incidents,
        freshness=data.freshness,
        stale_after=settings.stale_after,
        problem=data.problem,
        hidden_note=seen.note,
    )
    client.views_publish(user_id=user_id, view=view)


def register(app: App, settings: Settings) -> None:
    """Register the Home tab: published when opened, and again on Refresh."""

    @app.event("app_home_opened")
    @reported
    def on_home_opened(event: dict[str, Any], body: dict[str, Any], client: Any) -> None:
        if event.get("tab", "home") == "home":
            publish_home(settings, client, event["user"])

    @app.action(ActionId.HOME_REFRESH.pattern)
    @reported
    def on_refresh(ack: Any, body: dict[str, Any], client: Any) -> None:
        ack()
        publish_home(settings, client, body["user"]["id"])
