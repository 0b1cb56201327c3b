"""The search index holds decided messages only: a decision is indexed once it leaves `pending`.

Before, a claim indexed the message's subject, sender and body with an empty reason, and the
outcome recorded a moment later (its reason is indexed too) took them out and indexed them again:
each body was tokenized three times. Now it is tokenized once. Measured in SQLite alone, the index
cost 137 µs a message with 3,000-character bodies, and costs 71 µs now (50 and 30 µs with the
benchmark corpus's short bodies). A pending decision is a run in flight, or one a crash left and
the next pass runs again: `triage log -q` finds the message once it is decided.

The view the index reads its content from leaves pending decisions out as well, so the index and
its content agree (FTS5's 'rebuild' and 'integrity-check' read the view). A later migration that
rebuilds `messages` or `decisions` must call this module's `create_search_triggers()` again.

SQLite only, like the index (0003).

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_SEARCHED = "subject, sender, body, reason"
_INDEXED = "status != 'pending'"

_SEARCH_SOURCE = f"""
CREATE VIEW decisions_search_source AS
SELECT d.id AS id, m.subject AS subject, m.sender AS sender, m.body_excerpt AS body, d.reason AS reason
FROM decisions d JOIN messages m ON m.id = d.message_pk
WHERE d.{_INDEXED}
"""


def _forget(decision: str, message: str, source: str) -> str:
    """Take `decision`'s row out of the index if it is there: an external-content FTS5 index
    forgets a row only when told the values it indexed."""
    return f"""
        INSERT INTO decisions_search(decisions_search, rowid, {_SEARCHED})
        SELECT 'delete', {decision}.id, {message}.subject, {message}.sender, {message}.body_excerpt,
               {decision}.reason
        FROM {source} AND {decision}.{_INDEXED};
    """


def _index(decision: str, message: str, source: str) -> str:
    """Put `decision`'s row into the index if it is to be there."""
    return f"""
        INSERT INTO decisions_search(rowid, {_SEARCHED})
        SELECT {decision}.id, {message}.subject, {message}.sender, {message}.body_excerpt, {decision}.reason
        FROM {source} AND {decision}.{_INDEXED};
    """


_OLD_MESSAGE = "messages m WHERE m.id = old.message_pk"
_NEW_MESSAGE = "messages m WHERE m.id = new.message_pk"
_OLD_DECISIONS = "decisions d WHERE d.message_pk = old.id"
_NEW_DECISIONS = "decisions d WHERE d.message_pk = new.id"

_SEARCH_TRIGGERS = (
    f"""
    CREATE TRIGGER decisions_search_insert AFTER INSERT ON decisions WHEN new.{_INDEXED} BEGIN
        {_index("new", "m", _NEW_MESSAGE)}
    END
    """,
    f"""
    CREATE TRIGGER decisions_search_delete AFTER DELETE ON decisions WHEN old.{_INDEXED} BEGIN
        {_forget("old", "m", _OLD_MESSAGE)}
    END
    """,
    f"""
    CREATE TRIGGER decisions_search_update AFTER UPDATE OF reason, message_pk, status ON decisions
    WHEN (old.{_INDEXED} OR new.{_INDEXED})
         AND (old.reason IS NOT new.reason OR old.message_pk IS NOT new.message_pk
              OR (old.{_INDEXED}) IS NOT (new.{_INDEXED})) BEGIN
        {_forget("old", "m", _OLD_MESSAGE)}
        {_index("new", "m", _NEW_MESSAGE)}
    END
    """,
    f"""
    CREATE TRIGGER decisions_search_message AFTER UPDATE OF subject, sender, body_excerpt ON messages
    WHEN old.subject IS NOT new.subject OR old.sender IS NOT new.sender
         OR old.body_excerpt IS NOT new.body_excerpt BEGIN
        {_forget("d", "old", _OLD_DECISIONS)}
        {_index("d", "new", _NEW_DECISIONS)}
    END
    """,
)
_TRIGGERS = (
    "decisions_search_insert",
    "decisions_search_delete",
    "decisions_search_update",
    "decisions_search_message",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for trigger in _TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger}")
    # Pending decisions leave the index while the old view still gives their indexed values.
    op.execute(
        f"""
        INSERT INTO decisions_search(decisions_search, rowid, {_SEARCHED})
        SELECT 'delete', id, subject, sender, body, reason FROM decisions_search_source
        WHERE id IN (SELECT id FROM decisions WHERE status = 'pending')
        """
    )
    op.execute("DROP VIEW decisions_search_source")
    op.execute(_SEARCH_SOURCE)
    create_search_triggers()


def create_search_triggers() -> None:
    for trigger in _SEARCH_TRIGGERS:
        op.execute(trigger)
