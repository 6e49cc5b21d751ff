"""Channel subscriptions: which Slack channels also hear about incidents touching an FQN (glob), service or domain."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from storage.errors import DatasetNotFound
from storage.persistence.incident_views import IncidentView
from storage.persistence.models import Entity, Subscription
from storage.persistence.names import resolve_fqn

KINDS = ("fqn", "service", "domain")
DOMAIN_PREFIX = "domain:"
GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    """One subscription of a channel."""

    id: int
    channel: str
    kind: str
    target: str
    created_by: str | None
    created_at: datetime


def _view(row: Subscription) -> SubscriptionView:
    return SubscriptionView(row.id, row.channel, row.kind, row.target, row.created_by, row.created_at)


def _clean(text: str) -> str:
    text = text.strip().strip("`").strip()
    return text.replace("\u201c", '"').replace("\u201d", '"')


def _services(session: Session) -> dict[str, str]:
    """Known service names, casefolded → as stored."""
    names = session.scalars(sa.select(Entity.service).where(Entity.service.is_not(None)).distinct())
    return {name.casefold(): name for name in names if name}


def is_glob(text: str) -> bool:
    return any(c in text for c in GLOB_CHARS)


def parse_target(session: Session, text: str) -> tuple[str, str]:
    """(kind, target) meant by `text`: `domain:X`, a known service, a glob, else a dataset (DatasetNotFound if none)."""
    query = _clean(text)
    if not query:
        raise DatasetNotFound(text, [])
    if query.casefold().startswith(DOMAIN_PREFIX):
        domain = query[len(DOMAIN_PREFIX) :].strip()
        if not domain:
            raise DatasetNotFound(text, [])
        return "domain", domain
    service = _services(session).get(query.casefold())
    if service is not None:
        return "service", service
    if is_glob(query):
        return "fqn", query
    return "fqn", resolve_fqn(session, query)


def _find(session: Session, channel: str, kind: str, target: str) -> Subscription | None:
    return session.scalar(
        sa.select(Subscription).where(
            Subscription.channel == channel, Subscription.kind == kind, Subscription.target == target
        )
    )


def subscribe(session: Session, channel: str, target_text: str, *, user: str | None, now: datetime) -> SubscriptionView:
    """Subscribe `channel` to `target_text`; subscribing twice returns the existing subscription."""
    kind, target = parse_target(session, target_text)
    row = _find(session, channel, kind, target)
    if row is None:
        row = Subscription(channel=channel, kind=kind, target=target, created_by=user, created_at=now)
        session.add(row)
        session.flush()
    return _view(row)


def unsubscribe(session: Session, channel: str, target_text: str) -> bool:
    """Remove `channel`'s subscription to `target_text`; False when it had none."""
    query = _clean(target_text)
    try:
        kind, target = parse_target(session, query)
    except DatasetNotFound:
        # A dataset gone from the catalog can still be unsubscribed by its exact stored name.
        if not any(s.target == query for s in list_for(session, channel)):
            raise
        kind, target = "fqn", query
    row = _find(session, channel, kind, target)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def list_for(session: Session, channel: str) -> list[SubscriptionView]:
    """The channel's subscriptions, by kind then target."""
    rows = session.scalars(
        sa.select(Subscription)
        .where(Subscription.channel == channel)
        .order_by(Subscription.kind, Subscription.target, Subscription.id)
    )
    return [_view(r) for r in rows]


def _names(items: Any, *keys: str) -> list[str]:
    """Strings out of a details list whose items are strings or dicts (first of `keys` present)."""
    if items is None:
        return []
    if isinstance(items, (str, dict)):
        items = [items]
    found: list[str] = []
    for item in items:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            value = next((item[k] for k in keys if item.get(k)), None)
            if value:
                found.append(str(value))
    return found


def _service_of(fqn: str) -> str:
    return fqn.split(".", 1)[0].strip('"')


def incident_facts(incident: IncidentView) -> tuple[set[str], set[str], set[str]]:
    """(FQNs, services, domains) an incident touches: its root, its dashboards and its breaks."""
    details = incident.details or {}
    fqns = {incident.root_fqn}
    fqns.update(_names(details.get("dashboards"), "fqn", "fullyQualifiedName"))
    fqns.update(_names(details.get("breaks"), "entity_fqn", "fqn"))
    fqns.discard("")
    services = {_service_of(f) for f in fqns}
    domains = set(_names(details.get("domains"), "name", "fullyQualifiedName", "fqn"))
    return fqns, services, domains


def _fqn_match(fqns: Iterable[str], target: str) -> bool:
    pattern = target.casefold()
    return any(f.casefold() == pattern or fnmatchcase(f.casefold(), pattern) for f in fqns)


def channels_for(session: Session, incident: IncidentView) -> set[str]:
    """Every channel subscribed to something this incident touches."""
    fqns, services, domains = incident_facts(incident)
    folded_services = {s.casefold() for s in services}
    folded_domains = {d.casefold() for d in domains}
    channels: set[str] = set()
    for sub in session.scalars(sa.select(Subscription)):
        if sub.kind == "fqn":
            hit = _fqn_match(fqns, sub.target)
        elif sub.kind == "service":
            hit = sub.target.casefold() in folded_services
        elif sub.kind == "domain":
            hit = sub.target.casefold() in folded_domains
        else:
            hit = False
        if hit:
            channels.add(sub.channel)
    return channels
