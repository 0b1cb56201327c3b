"""Watchers: one row per watched mailbox, both its lease (one daemon at a time) and its heartbeat.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "watchers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account", sa.String(320), nullable=False),
        sa.Column("mailbox", sa.String(1000), nullable=False),
        sa.Column("owner", sa.String(300)),
        sa.Column("state", sa.String(40), nullable=False),
        sa.Column("connected", sa.Boolean, nullable=False),
        sa.Column("idle_since", _WHEN),
        sa.Column("last_seen_uid", sa.Integer),
        sa.Column("last_decision_at", _WHEN),
        sa.Column("backlog", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("started_at", _WHEN),
        sa.Column("heartbeat_at", _WHEN, nullable=False),
        sa.UniqueConstraint("account", "mailbox"),
    )
