"""Threads indexed by last activity alone, not by (status, last activity).

With the status in that index, SQLite's planner (no statistics) chose it for every candidate query
and walked every open thread testing the subject and participants: 5 ms a message with 20,000 open
threads. Without it, same-subject and same-people lookups use their own indexes (0.02 ms), and the
most-recent list walks the activity index.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_threads_status_activity", table_name="threads")
    op.create_index("ix_threads_last_activity", "threads", ["last_activity_at"])
