"""SQLAlchemy 2 models of the DNA store: sync runs, entities, snapshots, lineage edges and changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

FQN_LENGTH = 1024

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (compact, comparable); plain JSON text elsewhere.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


class RawJSON(str):
    """JSON text that is already serialized (e.g. canonical genes): the engine writes it as is."""


def json_serializer(value: Any) -> str:
    """The engines' JSON serializer: RawJSON passes through, anything else is encoded (UTF-8 kept)."""
    if isinstance(value, RawJSON):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC that is always read back as an aware UTC datetime."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime refused (store timezone-aware UTC): {value!r}")
        value = value.astimezone(UTC)
        # SQLite keeps text without an offset: write it as naive UTC, re-tagged on read.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base whose metadata names every constraint (Alembic batch mode needs the names)."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - read once by SQLAlchemy at class creation
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[Any]: JSONType,
    }


class SyncRun(Base):
    """One sync of OpenMetadata into the store (full or incremental)."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(sa.String(16), default="running")  # running|succeeded|failed
    mode: Mapped[str] = mapped_column(sa.String(16), default="full")  # full|incremental
    error: Mapped[str | None] = mapped_column(sa.Text)
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    events_cursor: Mapped[int | None] = mapped_column(sa.BigInteger)  # /v1/events high-water mark, ms
    om_version: Mapped[str | None] = mapped_column(sa.String(64))
    lineage_refreshed: Mapped[bool] = mapped_column(default=False)

    __table_args__ = (sa.Index("ix_sync_runs_status_started", "status", "started_at"),)


class Entity(Base):
    """A data asset known to the store; its current DNA is `current_snapshot_id`."""

    __tablename__ = "entities"

    id: Mapped[int] = mapped_column(primary_key=True)
    fqn: Mapped[str] = mapped_column(sa.String(FQN_LENGTH), unique=True)
    entity_type: Mapped[str] = mapped_column(sa.String(64))
    om_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    name: Mapped[str] = mapped_column(sa.String(FQN_LENGTH))
    service: Mapped[str | None] = mapped_column(sa.String(256))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
    fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    # A real FK, added after `snapshots` exists (use_alter): the pointer can never dangle, and deleting a
    # snapshot clears it instead of failing. The cycle is cheap because the sync always writes the entity,
    # then its snapshot, then this pointer, in one transaction.
    current_snapshot_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("snapshots.id", use_alter=True, ondelete="SET NULL"), index=True
    )
    om_version: Mapped[float | None] = mapped_column(sa.Float)
    om_updated_at: Mapped[int | None] = mapped_column(sa.BigInteger)  # OM updatedAt, epoch ms


class Snapshot(Base):
    """The genes of one entity as of `taken_at`; written only when the fingerprint changes."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_id: Mapped[int] = mapped_column(sa.ForeignKey("entities.id"))
    sync_run_id: Mapped[int] = mapped_column(sa.ForeignKey("sync_runs.id"), index=True)
    taken_at: Mapped[datetime]
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    genes: Mapped[dict[str, Any]]
    trust_score: Mapped[int | None]
    trust_factors: Mapped[dict[str, Any] | None]

    __table_args__ = (sa.Index("ix_snapshots_entity_taken", "entity_id", "taken_at"),)


class LineageEdge(Base):
    """One lineage edge with its lifetime; a removed edge that reappears gets a new row."""

    __tablename__ = "lineage_edges"

    id: Mapped[int] = mapped_column(primary_key=True)
    from_fqn: Mapped[str] = mapped_column(sa.String(FQN_LENGTH), index=True)
    from_type: Mapped[str] = mapped_column(sa.String(64))
    to_fqn: Mapped[str] = mapped_column(sa.String(FQN_LENGTH), index=True)
    to_type: Mapped[str] = mapped_column(sa.String(64))
    pipeline_fqn: Mapped[str | None] = mapped_column(sa.String(FQN_LENGTH))
    columns: Mapped[list[Any]] = mapped_column(default=list)  # genes EDGE["columns"]
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    removed_at: Mapped[datetime | None] = mapped_column(index=True)
    first_run_id: Mapped[int] = mapped_column(sa.ForeignKey("sync_runs.id"))
    removed_run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sync_runs.id"))

    __table_args__ = (
        # At most one live row per (from, to): a partial unique index, understood by both engines.
        sa.Index(
            "uq_lineage_edges_live",
            "from_fqn",
            "to_fqn",
            unique=True,
            sqlite_where=sa.text("removed_at IS NULL"),
            postgresql_where=sa.text("removed_at IS NULL"),
        ),
    )


class Change(Base):
    """One detected change of one entity (a column renamed, a test newly failing, …)."""

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    sync_run_id: Mapped[int] = mapped_column(sa.ForeignKey("sync_runs.id"), index=True)
    entity_id: Mapped[int | None] = mapped_column(sa.ForeignKey("entities.id", ondelete="SET NULL"))
    entity_fqn: Mapped[str] = mapped_column(sa.String(FQN_LENGTH))
    entity_type: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(64), index=True)
    subject: Mapped[str | None] = mapped_column(sa.String(FQN_LENGTH))
    old_value: Mapped[Any | None] = mapped_column(JSONType)
    new_value: Mapped[Any | None] = mapped_column(JSONType)
    confidence: Mapped[float | None] = mapped_column(sa.Float)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    detected_at: Mapped[datetime] = mapped_column(index=True)

    __table_args__ = (sa.Index("ix_changes_entity_detected", "entity_fqn", "detected_at"),)


class Incident(Base):
    """A data incident: one cause (by fingerprint), its status, and the analysis in `details`."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    severity: Mapped[str] = mapped_column(sa.String(8))  # SEV1 … SEV4
    status: Mapped[str] = mapped_column(sa.String(16), default="open", index=True)  # open|acknowledged|…
    title: Mapped[str] = mapped_column(sa.Text)
    root_fqn: Mapped[str] = mapped_column(sa.String(FQN_LENGTH), index=True)
    root_column: Mapped[str | None] = mapped_column(sa.String(FQN_LENGTH))
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    snoozed_until: Mapped[datetime | None]
    assignee: Mapped[str | None] = mapped_column(sa.String(256))
    # Plain ids of sync runs, not foreign keys: an incident's record must never block deleting old runs.
    opened_run_id: Mapped[int | None]
    last_run_id: Mapped[int | None]
    version: Mapped[int] = mapped_column(default=1)  # +1 on every change (Slack cards compare it)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class IncidentEvent(Base):
    """One entry of an incident's history: opened, status changed, symptom attached, note, …"""

    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(sa.String(32))
    status_from: Mapped[str | None] = mapped_column(sa.String(16))
    status_to: Mapped[str | None] = mapped_column(sa.String(16))
    actor: Mapped[str] = mapped_column(sa.String(256))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    note: Mapped[str | None] = mapped_column(sa.Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class IncidentLink(Base):
    """A change that caused an incident (`cause`) or showed up downstream of it (`symptom`)."""

    __tablename__ = "incident_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"))
    change_id: Mapped[int] = mapped_column(sa.ForeignKey("changes.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(sa.String(16))  # cause|symptom

    __table_args__ = (sa.UniqueConstraint("incident_id", "change_id", name="uq_incident_links_incident_id_change_id"),)


class IncidentEvidence(Base):
    """One fact an incident rests on (a change, an edge, a test result, a web page), unique by kind and ref."""

    __tablename__ = "incident_evidence"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    ref: Mapped[str] = mapped_column(sa.Text)
    summary: Mapped[str] = mapped_column(sa.Text)
    url: Mapped[str | None] = mapped_column(sa.Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime]


class IncidentThread(Base):
    """Where an incident lives in Slack: its parent card and how much of its history the thread already shows."""

    __tablename__ = "incident_threads"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), unique=True)
    channel: Mapped[str] = mapped_column(sa.String(64))
    ts: Mapped[str] = mapped_column(sa.String(32))  # the parent message's ts
    posted_version: Mapped[int]  # the incident version the card last showed
    last_event_id: Mapped[int | None]  # the last incident event posted as a thread reply
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Person(Base):
    """An OpenMetadata user or team as far as the bot needs it: its email (for Slack @-mentions) and display name."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(256), unique=True)  # the OpenMetadata name (owner refs use it)
    kind: Mapped[str] = mapped_column(sa.String(16))  # user | team
    email: Mapped[str | None] = mapped_column(sa.String(320))
    display_name: Mapped[str | None] = mapped_column(sa.String(256))
    updated_at: Mapped[datetime]


class Subscription(Base):
    """A Slack channel (or user) that wants to hear about incidents touching an asset, a service or a domain."""

    __tablename__ = "subscriptions"
    __table_args__ = (sa.UniqueConstraint("channel", "kind", "target"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(64), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # fqn | service | domain
    target: Mapped[str] = mapped_column(sa.String(1024))  # an FQN (glob allowed), a service or a domain name
    created_by: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]


class OutboxMessage(Base):
    """One side effect owed to Slack or OpenMetadata, written in the transaction of the change that causes it.

    `lane` orders delivery (rows of one lane go out one at a time, oldest first); `key` makes enqueueing
    idempotent; `result` keeps what the delivery returned (the Slack channel and `ts`)."""

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_status_available_at", "status", "available_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(255), unique=True)
    lane: Mapped[str] = mapped_column(sa.String(128), index=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    incident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(sa.String(16))  # pending | delivered | skipped | dead
    attempts: Mapped[int] = mapped_column(default=0)
    available_at: Mapped[datetime]  # not tried before this time (backoff, Retry-After)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(255))
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    result: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class InboundEvent(Base):
    """A request already accepted (Slack `event_id`, an OpenMetadata change event id): seen twice, done once."""

    __tablename__ = "inbound_events"

    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    source: Mapped[str] = mapped_column(sa.String(32))
    received_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Lease(Base):
    """A named lease (e.g. the scheduler's leader): one holder until `expires_at`, renewed while it lives."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(255))
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class SyncRequest(Base):
    """An entity OpenMetadata told us changed (webhook): re-synced by the next targeted sync, then removed."""

    __tablename__ = "sync_requests"
    __table_args__ = (sa.UniqueConstraint("entity_type", "fqn"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(sa.String(64))
    fqn: Mapped[str] = mapped_column(sa.String(FQN_LENGTH))
    requested_at: Mapped[datetime]


class MentionThread(Base):
    """The dataset a Slack thread is about, so a follow-up mention in it (on any replica) keeps the subject."""

    __tablename__ = "mention_threads"

    channel: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    thread_ts: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    fqn: Mapped[str] = mapped_column(sa.String(FQN_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(index=True)
