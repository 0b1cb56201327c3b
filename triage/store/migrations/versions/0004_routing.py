"""Routing: the thread registry, which message belongs to which thread, and routing outcomes.

- `threads`: one row per LangGraph thread a new task started (id = the deterministic thread id),
  registered when the decision is recorded, so candidates exist even before execution is enabled.
- `thread_messages`: each message assigned to a thread, by Message-ID too, so a reply's
  In-Reply-To / References prove its thread.
- `decisions_view` and `threads_view`: the log with readable columns (routing included, and a new
  task in the thread it started), for `sqlite3 triage.db` or `datasette triage.db`.
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

DECISIONS_VIEW = """
CREATE VIEW decisions_view AS
SELECT d.id AS id,
       d.created_at AS decided_at,
       m.account AS account,
       m.mailbox AS mailbox,
       m.uid AS uid,
       m.message_id AS message_id,
       m.sent_at AS sent_at,
       m.sender AS sender,
       m.recipients AS recipients,
       m.subject AS subject,
       d.status AS status,
       d.decision AS decision,
       d.thread_id AS thread_id,
       d.title AS title,
       d.reason AS reason,
       d.confidence AS confidence,
       d.problem AS problem,
       d.decided_by AS decided_by,
       d.assistant_id AS assistant_id,
       d.template_hash AS template_hash,
       d.run_id AS run_id,
       d.attempts AS attempts,
       d.latency_ms AS latency_ms,
       d.error_kind AS error_kind,
       d.error_text AS error_text,
       c.decision AS corrected_decision,
       c.thread_id AS corrected_thread_id,
       c.note AS correction_note,
       c.author AS corrected_by,
       c.created_at AS corrected_at,
       COALESCE(c.decision, CASE WHEN d.status = 'ok' THEN d.decision ELSE d.status END)
           AS effective_decision,
       CASE WHEN c.id IS NULL THEN COALESCE(d.thread_id, tm.thread_id) ELSE c.thread_id END
           AS effective_thread_id,
       d.routing_status AS routing_status,
       d.routing_run_id AS routing_run_id,
       d.routing_error AS routing_error,
       d.updated_at AS updated_at
FROM decisions d
JOIN messages m ON m.id = d.message_pk
LEFT JOIN thread_messages tm ON tm.message_pk = d.message_pk
LEFT JOIN corrections c
       ON c.id = (SELECT MAX(c2.id) FROM corrections c2 WHERE c2.decision_pk = d.id)
"""

# A thread here is the set of decisions that name it after corrections (a new task names the
# thread it started), so a correction moves a message between threads in this view too.
THREADS_VIEW = """
CREATE VIEW threads_view AS
SELECT t.thread_id AS thread_id,
       t.title AS title,
       t.messages AS messages,
       t.first_decided_at AS first_decided_at,
       t.last_decided_at AS last_decided_at,
       v.subject AS last_subject,
       v.sender AS last_sender,
       t.last_decision_id AS last_decision_id
FROM (
    SELECT effective_thread_id AS thread_id,
           MAX(CASE WHEN effective_decision = 'new-task' THEN title END) AS title,
           COUNT(*) AS messages,
           MIN(decided_at) AS first_decided_at,
           MAX(decided_at) AS last_decided_at,
           MAX(id) AS last_decision_id
    FROM decisions_view
    WHERE effective_decision IN ('new-task', 'existing-thread') AND effective_thread_id IS NOT NULL
    GROUP BY effective_thread_id
) t
JOIN decisions_view v ON v.id = t.last_decision_id
"""


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
    op.execute("DROP VIEW IF EXISTS threads_view")
    op.execute("DROP VIEW IF EXISTS decisions_view")
    op.execute(DECISIONS_VIEW)
    op.execute(THREADS_VIEW)
