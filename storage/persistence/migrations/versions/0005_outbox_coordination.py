"""Production coordination: the transactional outbox, inbound dedup, leases, webhook sync requests, mention threads.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

Written out by hand like the earlier revisions (no import of `storage.persistence.models`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create `outbox`, `inbound_events`, `leases`, `sync_requests` and `mention_threads`."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("lane", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", _ts(), nullable=False),
        sa.Column("claimed_by", sa.String(length=255), nullable=True),
        sa.Column("claimed_until", _ts(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("delivered_at", _ts(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_outbox_incident_id_incidents"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("key", name=op.f("uq_outbox_key")),
    )
    op.create_index(op.f("ix_outbox_incident_id"), "outbox", ["incident_id"], unique=False)
    op.create_index(op.f("ix_outbox_lane"), "outbox", ["lane"], unique=False)
    op.create_index("ix_outbox_status_available_at", "outbox", ["status", "available_at"], unique=False)
    op.create_table(
        "inbound_events",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("received_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_inbound_events")),
    )
    op.create_index(op.f("ix_inbound_events_expires_at"), "inbound_events", ["expires_at"], unique=False)
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("acquired_at", _ts(), nullable=False),
        sa.Column("renewed_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "sync_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_type", sa.String(length=64), nullable=False),
        sa.Column("fqn", sa.String(length=1024), nullable=False),
        sa.Column("requested_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_requests")),
        sa.UniqueConstraint("entity_type", "fqn", name=op.f("uq_sync_requests_entity_type")),
    )
    op.create_table(
        "mention_threads",
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("thread_ts", sa.String(length=32), nullable=False),
        sa.Column("fqn", sa.String(length=1024), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "thread_ts", name=op.f("pk_mention_threads")),
    )
    op.create_index(op.f("ix_mention_threads_updated_at"), "mention_threads", ["updated_at"], unique=False)


def downgrade() -> None:
    """Drop the five tables."""
    op.drop_index(op.f("ix_mention_threads_updated_at"), table_name="mention_threads")
    op.drop_table("mention_threads")
    op.drop_table("sync_requests")
    op.drop_table("leases")
    op.drop_index(op.f("ix_inbound_events_expires_at"), table_name="inbound_events")
    op.drop_table("inbound_events")
    op.drop_index("ix_outbox_status_available_at", table_name="outbox")
    op.drop_index(op.f("ix_outbox_lane"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_incident_id"), table_name="outbox")
    op.drop_table("outbox")
