"""Incident threads: where each incident's Slack card lives and how much of its history was posted.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

Written out by hand like 0001 and 0002 (no import of `storage.persistence.models`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create `incident_threads`, one row per incident posted to Slack."""
    op.create_table(
        "incident_threads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("posted_version", sa.Integer(), nullable=False),
        sa.Column("last_event_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_threads_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_threads")),
        sa.UniqueConstraint("incident_id", name=op.f("uq_incident_threads_incident_id")),
    )


def downgrade() -> None:
    """Drop `incident_threads`."""
    op.drop_table("incident_threads")
