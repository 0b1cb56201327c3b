"""The first schema: mailboxes, messages, decisions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mailboxes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account", sa.String(320), nullable=False),
        sa.Column("name", sa.String(1000), nullable=False),
        sa.Column("uidvalidity", sa.Integer, nullable=False),
        sa.Column("highest_recorded_uid", sa.Integer, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.UniqueConstraint("account", "name"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account", sa.String(320), nullable=False),
        sa.Column("mailbox", sa.String(1000), nullable=False),
        sa.Column("uidvalidity", sa.Integer, nullable=False),
        sa.Column("uid", sa.Integer, nullable=False),
        sa.Column("message_id", sa.String(1000)),
        sa.Column("subject", sa.Text),
        sa.Column("sender", sa.Text),
        sa.Column("recipients", sa.Text),
        sa.Column("sent_at", _WHEN),
        sa.Column("in_reply_to", sa.Text),
        sa.Column("references", sa.JSON),
        sa.Column("list_id", sa.Text),
        sa.Column("auto_submitted", sa.String(200)),
        sa.Column("precedence", sa.String(200)),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("body_excerpt", sa.Text),
        sa.Column("parse_warnings", sa.JSON),
        sa.Column("first_seen_at", _WHEN, nullable=False),
        sa.UniqueConstraint("account", "mailbox", "uidvalidity", "uid"),
    )
    op.create_index("ix_messages_message_id", "messages", ["message_id"])
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_pk", sa.Integer, sa.ForeignKey("messages.id"), nullable=False, unique=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("decision", sa.String(20)),
        sa.Column("thread_id", sa.String(200)),
        sa.Column("title", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("confidence", sa.Float),
        sa.Column("problem", sa.Text),
        sa.Column("decided_by", sa.String(100), nullable=False),
        sa.Column("assistant_id", sa.String(200)),
        sa.Column("template_hash", sa.String(64)),
        sa.Column("prompt", sa.Text),
        sa.Column("request_metadata", sa.JSON),
        sa.Column("raw_response", sa.JSON),
        sa.Column("run_id", sa.String(100)),
        sa.Column("error_kind", sa.String(40)),
        sa.Column("error_text", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Integer),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
    )
    op.create_index("ix_decisions_status", "decisions", ["status"])
