"""Review: corrections, the fields a template needs for replay, full-text search, readable views.

- `corrections`: human corrections beside the decision they correct (never overwriting it; the
  latest one counts).
- `messages` gains what `PromptRenderer` reads but the first schema did not keep (addresses with
  their display names, the Date with its own UTC offset, List-Unsubscribe, attachments, the full
  body length), so `triage replay` re-renders a stored message exactly as it was first rendered.
- `decisions_search` (SQLite only): an FTS5 index over subject, sender, body excerpt and reason,
  one row per decision (rowid = decisions.id). Its content lives in the tables themselves (an
  external-content index over the view `decisions_search_source`), so text is not stored twice;
  triggers keep it in step. Other dialects have no index and `triage log -q` falls back to LIKE.
  A later migration that rebuilds `messages` or `decisions` (batch mode copies and drops the
  table, and its triggers with it) must call `create_search_triggers()` again (0009's, which
  replaced these).
- `daily_counts` and `daily_latencies` (kept by triggers on SQLite only): decisions counted per
  UTC day, assistant, template, status and decision, and run latencies per day, assistant and
  template (to within 2.5 %), so `triage stats` reads a few rows per day instead of
  every decision. Elsewhere they stay empty and stats counts the decisions themselves.
- (`decisions_view` and `threads_view` come with the thread registry, in 0004.)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)
_SEARCHED = "subject, sender, body, reason"

_SEARCH_SOURCE = """
CREATE VIEW decisions_search_source AS
SELECT d.id AS id, m.subject AS subject, m.sender AS sender, m.body_excerpt AS body, d.reason AS reason
FROM decisions d JOIN messages m ON m.id = d.message_pk
"""

# An external-content FTS5 index forgets a row only when told the values it indexed: every
# trigger passes the old values with 'delete' before inserting the new ones.
_SEARCH_TRIGGERS = (
    f"""
    CREATE TRIGGER decisions_search_insert AFTER INSERT ON decisions BEGIN
        INSERT INTO decisions_search(rowid, {_SEARCHED})
        SELECT new.id, m.subject, m.sender, m.body_excerpt, new.reason
        FROM messages m WHERE m.id = new.message_pk;
    END
    """,
    f"""
    CREATE TRIGGER decisions_search_delete AFTER DELETE ON decisions BEGIN
        INSERT INTO decisions_search(decisions_search, rowid, {_SEARCHED})
        SELECT 'delete', old.id, m.subject, m.sender, m.body_excerpt, old.reason
        FROM messages m WHERE m.id = old.message_pk;
    END
    """,
    f"""
    CREATE TRIGGER decisions_search_update AFTER UPDATE OF reason, message_pk ON decisions
    WHEN old.reason IS NOT new.reason OR old.message_pk IS NOT new.message_pk BEGIN
        INSERT INTO decisions_search(decisions_search, rowid, {_SEARCHED})
        SELECT 'delete', old.id, m.subject, m.sender, m.body_excerpt, old.reason
        FROM messages m WHERE m.id = old.message_pk;
        INSERT INTO decisions_search(rowid, {_SEARCHED})
        SELECT new.id, m.subject, m.sender, m.body_excerpt, new.reason
        FROM messages m WHERE m.id = new.message_pk;
    END
    """,
    f"""
    CREATE TRIGGER decisions_search_message AFTER UPDATE OF subject, sender, body_excerpt ON messages
    WHEN old.subject IS NOT new.subject OR old.sender IS NOT new.sender
         OR old.body_excerpt IS NOT new.body_excerpt BEGIN
        INSERT INTO decisions_search(decisions_search, rowid, {_SEARCHED})
        SELECT 'delete', d.id, old.subject, old.sender, old.body_excerpt, d.reason
        FROM decisions d WHERE d.message_pk = old.id;
        INSERT INTO decisions_search(rowid, {_SEARCHED})
        SELECT d.id, new.subject, new.sender, new.body_excerpt, d.reason
        FROM decisions d WHERE d.message_pk = new.id;
    END
    """,
)

# Keys are never NULL (a unique key treats NULLs as distinct): '' stands for "none".
_DAY_KEY = "date({row}.created_at), coalesce({row}.assistant_id, ''), coalesce({row}.template_hash, '')"
_COUNT_KEY = _DAY_KEY + ", {row}.status, coalesce({row}.decision, '')"
# Latencies to within 2.5 %, in steps of a 1-2-5 series (1 ms under 100 ms, 2 ms from 100, 5 ms
# from 200, 10 ms from 500, 20 ms from 1 s ...): a few hundred buckets per day at most. The same
# steps as triage.log.stats.LATENCY_STEPS; a stats test checks that both give the same figures.
_STEPS = (
    (100, 1), (200, 2), (500, 5), (1000, 10), (2000, 20), (5000, 50), (10000, 100),
    (20000, 200), (50000, 500), (100000, 1000), (200000, 2000), (500000, 5000),
)  # fmt: skip
_BUCKET = (
    "CASE "
    + " ".join(
        f"WHEN {{row}}.latency_ms < {limit} THEN {{row}}.latency_ms / {step} * {step}"
        for limit, step in _STEPS
    )
    + " ELSE {row}.latency_ms / 10000 * 10000 END"
)


def _tally(row: str, step: int) -> str:
    """Statements adding `step` (1 or -1) for the decision `row` (new or old) to both rollups."""
    count_key, day_key, bucket = (k.format(row=row) for k in (_COUNT_KEY, _DAY_KEY, _BUCKET))
    return f"""
        INSERT INTO daily_counts (day, assistant_id, template_hash, status, decision, n)
        VALUES ({count_key}, {step})
        ON CONFLICT (day, assistant_id, template_hash, status, decision) DO UPDATE SET n = n + {step};
        INSERT INTO daily_latencies (day, assistant_id, template_hash, latency_ms, n)
        SELECT {day_key}, {bucket}, {step} WHERE {row}.latency_ms IS NOT NULL
        ON CONFLICT (day, assistant_id, template_hash, latency_ms) DO UPDATE SET n = n + {step};
    """


_ROLLUP_TRIGGERS = (
    f"CREATE TRIGGER daily_insert AFTER INSERT ON decisions BEGIN {_tally('new', 1)} END",
    f"CREATE TRIGGER daily_delete AFTER DELETE ON decisions BEGIN {_tally('old', -1)} END",
    f"""
    CREATE TRIGGER daily_update
    AFTER UPDATE OF created_at, assistant_id, template_hash, status, decision, latency_ms ON decisions
    WHEN old.created_at IS NOT new.created_at OR old.assistant_id IS NOT new.assistant_id
         OR old.template_hash IS NOT new.template_hash OR old.status IS NOT new.status
         OR old.decision IS NOT new.decision OR old.latency_ms IS NOT new.latency_ms
    BEGIN {_tally("old", -1)} {_tally("new", 1)} END
    """,
)
_ROLLUP_FILL = (
    f"""
    INSERT INTO daily_counts (day, assistant_id, template_hash, status, decision, n)
    SELECT {_COUNT_KEY.format(row="decisions")}, count(*) FROM decisions GROUP BY 1, 2, 3, 4, 5
    """,
    f"""
    INSERT INTO daily_latencies (day, assistant_id, template_hash, latency_ms, n)
    SELECT {_DAY_KEY.format(row="decisions")}, {_BUCKET.format(row="decisions")}, count(*)
    FROM decisions WHERE latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4
    """,
)


def upgrade() -> None:
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("decision_pk", sa.Integer, sa.ForeignKey("decisions.id"), nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("thread_id", sa.String(200)),
        sa.Column("note", sa.Text),
        sa.Column("author", sa.String(320)),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    op.create_index("ix_corrections_decision_pk", "corrections", ["decision_pk"])
    op.create_table(
        "daily_counts",
        *_day_key(),
        sa.Column("status", sa.String(20), primary_key=True),
        sa.Column("decision", sa.String(20), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_table(
        "daily_latencies",
        *_day_key(),
        sa.Column("latency_ms", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_index("ix_decisions_created_at", "decisions", ["created_at"])
    op.create_index("ix_decisions_thread_id", "decisions", ["thread_id"])
    for column in (
        sa.Column("from_addresses", sa.JSON),
        sa.Column("to_addresses", sa.JSON),
        sa.Column("cc_addresses", sa.JSON),
        sa.Column("reply_to_addresses", sa.JSON),
        sa.Column("sent_at_text", sa.String(40)),
        sa.Column("list_unsubscribe", sa.Text),
        sa.Column("attachments", sa.JSON),
        sa.Column("body_chars", sa.Integer),
    ):
        op.add_column("messages", column)
    if op.get_bind().dialect.name == "sqlite":
        create_search_index()
        for statement in (*_ROLLUP_TRIGGERS, *_ROLLUP_FILL):
            op.execute(statement)


def _day_key() -> tuple[sa.Column[str], ...]:
    return (
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("assistant_id", sa.String(200), primary_key=True),
        sa.Column("template_hash", sa.String(64), primary_key=True),
    )


def create_search_index() -> None:
    """The FTS5 index, its triggers, and an index of whatever the log already holds."""
    op.execute(_SEARCH_SOURCE)
    op.execute(
        f"CREATE VIRTUAL TABLE decisions_search USING fts5({_SEARCHED}, "
        "content='decisions_search_source', content_rowid='id', tokenize='unicode61 remove_diacritics 2')"
    )
    create_search_triggers()
    op.execute("INSERT INTO decisions_search(decisions_search) VALUES ('rebuild')")


def create_search_triggers() -> None:
    for trigger in _SEARCH_TRIGGERS:
        op.execute(trigger)
