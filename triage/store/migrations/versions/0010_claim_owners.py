"""Claims name their owner, and owners are processes with a heartbeat.

Before, a `pending` decision was any process's to take: a second triage process on the store took
over messages a live one was still running, and ran them again. Now a claim (of a message's run,
or of its routing) names the process holding it, and is free only once that process is gone.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "processes",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("command", sa.String(40), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("decisions", sa.Column("claimed_by", sa.String(100)))
    op.add_column("decisions", sa.Column("routing_claimed_by", sa.String(100)))
