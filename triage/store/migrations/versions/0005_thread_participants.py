"""Thread participants as indexed rows, so candidate ranking finds a sender's threads without a scan.

Revision ID: 0005
Revises: 0004
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "thread_participants",
        sa.Column("thread_id", sa.String(64), sa.ForeignKey("threads.id"), primary_key=True),
        sa.Column("address", sa.String(320), primary_key=True),
    )
    op.create_index("ix_thread_participants_address", "thread_participants", ["address"])
    existing = op.get_bind().execute(sa.text("SELECT id, participants FROM threads")).all()
    rows = [
        {"thread_id": thread_id, "address": address}
        for thread_id, participants in existing
        for address in (json.loads(participants) if isinstance(participants, str) else participants or [])
    ]
    if rows:
        op.bulk_insert(table, rows)
