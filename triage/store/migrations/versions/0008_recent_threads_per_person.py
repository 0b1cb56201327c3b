"""Each participant row carries its thread's last activity, so "this person's most recent threads"
and "the most recent threads with this subject" are each one ordered index range.

Before, both were found by collecting every matching thread and sorting: a sender with thousands of
threads (a colleague, a notification robot) made each of their messages' candidate lookup scan
them all.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("thread_participants", sa.Column("last_activity_at", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE thread_participants SET last_activity_at ="
        " (SELECT t.last_activity_at FROM threads t WHERE t.id = thread_participants.thread_id)"
    )
    op.drop_index("ix_thread_participants_address", table_name="thread_participants")
    op.create_index("ix_thread_participants_recent", "thread_participants", ["address", "last_activity_at"])
    op.drop_index("ix_threads_subject_key", table_name="threads")
    op.create_index("ix_threads_subject_recent", "threads", ["subject_key", "last_activity_at"])
