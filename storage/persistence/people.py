"""OpenMetadata users and teams in `people`: written by full syncs, read to @-mention owners in Slack."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.persistence.models import Person

BATCH = 500


def upsert_people(session: Session, people: Iterable[Any], now: datetime) -> int:
    """Insert or update each person (`name`, `kind`, `email`, `display_name`) by name; returns rows changed.

    People no longer listed are kept: an owner reference may outlive its user, and its email is still useful.
    """
    wanted: dict[str, Any] = {}
    for p in people:
        if p.name:
            wanted[p.name] = p  # a later duplicate (a team named like a user) wins, as the listing order says
    changed = 0
    names = list(wanted)
    existing: dict[str, Person] = {}
    for i in range(0, len(names), BATCH):
        rows = session.scalars(select(Person).where(Person.name.in_(names[i : i + BATCH])))
        existing.update({row.name: row for row in rows})
    for name, p in wanted.items():
        row = existing.get(name)
        if row is None:
            session.add(Person(name=name, kind=p.kind, email=p.email, display_name=p.display_name, updated_at=now))
            changed += 1
        elif (row.kind, row.email, row.display_name) != (p.kind, p.email, p.display_name):
            row.kind, row.email, row.display_name, row.updated_at = p.kind, p.email, p.display_name, now
            changed += 1
    session.flush()
    return changed


def emails_of(session: Session, names: Iterable[str]) -> dict[str, str]:
    """OpenMetadata name → email, for the names known with an email (unknown names are left out)."""
    wanted = list(dict.fromkeys(n for n in names if n))
    out: dict[str, str] = {}
    for i in range(0, len(wanted), BATCH):
        rows = session.execute(
            select(Person.name, Person.email).where(Person.name.in_(wanted[i : i + BATCH]), Person.email.is_not(None))
        )
        out.update({name: email for name, email in rows if email})
    return out


def user_for_email(session: Session, email: str) -> str | None:
    """The OpenMetadata user (not team) whose email this is, case-insensitively, or None."""
    stmt = select(Person.name).where(func.lower(Person.email) == email.strip().lower(), Person.kind == "user")
    return session.scalars(stmt.limit(1)).first()
