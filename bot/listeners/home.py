"""App Home: the lowest-trust assets, the open incidents by severity and the last sync, published per user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from slack_bolt import App

from bot import services
from bot.actions import ActionId
from bot.blocks import render_app_home
from bot.blocks_dna import trust_factors
from bot.settings import Settings
from storage import db
from storage.errors import DnaBotError
from storage.incident_views import IncidentView
from storage.models import Entity, Snapshot
from storage.store import RunView

LOWEST_TRUST = 10


@dataclass(frozen=True, slots=True)
class HomeData:
    """What the Home tab shows."""

    lowest_trust: list[tuple[str, int, str]]
    open_incidents: list[IncidentView]
    last_run: RunView | None


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
    """Everything the Home tab needs; an empty store gives an empty (not broken) tab."""
    try:
        runs = services.runs(settings, 1)
        open_items = services.incidents_list(settings, "open")
    except DnaBotError:
        return HomeData([], [], None)
    return HomeData(lowest_trust(settings), open_items, runs[0] if runs else None)


def publish_home(settings: Settings, client: Any, user_id: str) -> None:
    data = home_data(settings)
    view = render_app_home(
        lowest_trust=data.lowest_trust,
        open_incidents=data.open_incidents,
        last_run=data.last_run,
        now=datetime.now(UTC),
    )
    client.views_publish(user_id=user_id, view=view)


def register(app: App, settings: Settings) -> None:
    """Register the Home tab: published when opened, and again on Refresh."""

    @app.event("app_home_opened")
    def on_home_opened(event: dict[str, Any], client: Any) -> None:
        if event.get("tab", "home") == "home":
            publish_home(settings, client, event["user"])

    @app.action(ActionId.HOME_REFRESH)
    def on_refresh(ack: Any, body: dict[str, Any], client: Any) -> None:
        ack()
        publish_home(settings, client, body["user"]["id"])
