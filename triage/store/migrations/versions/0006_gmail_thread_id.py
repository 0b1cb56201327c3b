"""Gmail's thread id (X-GM-THRID) on messages, where the server offers it: proof a message joins a thread.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # In place, not a batch copy: a copy would drop the review triggers on `messages`.
    op.add_column("messages", sa.Column("gmail_thread_id", sa.BigInteger()))
    op.create_index("ix_messages_gmail_thread_id", "messages", ["account", "gmail_thread_id"])
