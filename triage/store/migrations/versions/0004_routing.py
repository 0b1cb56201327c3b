"""Routing: the thread registry, which message belongs to which thread, and routing outcomes.

- `threads`: one row per LangGraph thread a new task started (id = the deterministic thread id),
  registered when the decision is recorded, so candidates exist even before execution is enabled.
- `thread_messages`: each message assigned to a thread, by Message-ID too, so a reply's
  In-Reply-To / References prove its thread.
- `decisions` gains the candidate threads offered in the prompt (so a decision can be explained and
  replayed with the same offer) and the routing outcome, recorded beside the decision and never in
  place of it.
  Columns are added in place (no batch copy), which keeps the review triggers on `decisions`.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "threads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("account", sa.String(320), nullable=False),
        sa.Column("mailbox", sa.String(1000), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("subject_key", sa.Text, nullable=False),
        sa.Column("participants", sa.JSON, nullable=False),
        sa.Column("started_by", sa.Integer, sa.ForeignKey("messages.id"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("last_activity_at", _WHEN, nullable=False),
    )
    op.create_index("ix_threads_status_activity", "threads", ["status", "last_activity_at"])
    op.create_index("ix_threads_subject_key", "threads", ["subject_key"])
    op.create_table(
        "thread_messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("thread_id", sa.String(64), sa.ForeignKey("threads.id"), nullable=False),
        sa.Column("message_pk", sa.Integer, sa.ForeignKey("messages.id"), nullable=False, unique=True),
        sa.Column("message_id", sa.String(1000)),
    )
    op.create_index("ix_thread_messages_message_id", "thread_messages", ["message_id"])
    op.create_index("ix_thread_messages_thread_id", "thread_messages", ["thread_id"])
    for column in (
        sa.Column("candidates", sa.JSON),
        sa.Column("routing_status", sa.String(20)),
        sa.Column("routing_thread_id", sa.String(64)),
        sa.Column("routing_run_id", sa.String(100)),
        sa.Column("routing_actions", sa.JSON),
        sa.Column("routing_error", sa.Text),
        sa.Column("routing_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("routed_at", _WHEN),
    ):
        op.add_column("decisions", column)
    op.create_index("ix_decisions_routing_status", "decisions", ["routing_status"])
