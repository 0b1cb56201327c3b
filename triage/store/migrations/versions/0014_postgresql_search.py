"""PostgreSQL: its own full-text search of the log (what SQLite's FTS5 index, 0003 and 0009, does),
and room for every IMAP UID.

- `decisions.search_document` (PostgreSQL only): a `tsvector` of the message's subject, sender and
  body excerpt and the decision's reason, NULL while the decision is pending (as SQLite indexes
  decided messages only), with a GIN index. Triggers keep it in step: one on `decisions` (a new
  decision, a new reason, leaving or re-entering `pending`) and one on `messages` (a changed
  subject, sender or body, as a purge makes).
- Its text is split at punctuation before PostgreSQL's parser reads it, so `alice@example.com`,
  `example.com` and `foo-bar` are words the way FTS5's unicode61 tokenizer makes them, not single
  e-mail, host or compound tokens; the `simple` configuration lowercases and neither stems nor
  drops stop words, as unicode61 does not. Unlike FTS5 (`remove_diacritics 2`), accents count.
- The daily rollups stay SQLite's: on PostgreSQL they would be rows every writing process
  updates, serialising processes that the database otherwise lets write at once; `triage stats`
  groups the decisions themselves there (an index range of `created_at`).
- UIDs and UIDVALIDITY values are unsigned 32-bit numbers; PostgreSQL's INTEGER stops at 2^31 - 1
  (a server whose UIDVALIDITY is a random number or a later timestamp would pass it), so those
  columns become BIGINT. SQLite's INTEGER holds 64 bits already.

SQLite is left as it is: only the revision moves.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# (subject, sender, body, reason) -> the document searched; IMMUTABLE: the same text, the same words.
_DOCUMENT_FUNCTION = """
CREATE FUNCTION triage_search_document(subject text, sender text, body text, reason text)
RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_tsvector(
        'simple'::regconfig,
        regexp_replace(concat_ws(' ', subject, sender, body, reason), '[[:punct:]]+', ' ', 'g')
    )
$$
"""
_DECISION_FUNCTION = """
CREATE FUNCTION decisions_search_document() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'pending' THEN
        NEW.search_document := NULL;
    ELSE
        SELECT triage_search_document(m.subject, m.sender, m.body_excerpt, NEW.reason)
        INTO NEW.search_document FROM messages m WHERE m.id = NEW.message_pk;
    END IF;
    RETURN NEW;
END
$$
"""
_MESSAGE_FUNCTION = """
CREATE FUNCTION messages_search_document() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE decisions d
    SET search_document = triage_search_document(NEW.subject, NEW.sender, NEW.body_excerpt, d.reason)
    WHERE d.message_pk = NEW.id AND d.status <> 'pending';
    RETURN NULL;
END
$$
"""
_TRIGGERS = (
    """
    CREATE TRIGGER decisions_search_insert BEFORE INSERT ON decisions
    FOR EACH ROW EXECUTE FUNCTION decisions_search_document()
    """,
    """
    CREATE TRIGGER decisions_search_update BEFORE UPDATE OF reason, message_pk, status ON decisions
    FOR EACH ROW WHEN (
        OLD.reason IS DISTINCT FROM NEW.reason OR OLD.message_pk IS DISTINCT FROM NEW.message_pk
        OR (OLD.status = 'pending') IS DISTINCT FROM (NEW.status = 'pending')
    ) EXECUTE FUNCTION decisions_search_document()
    """,
    """
    CREATE TRIGGER decisions_search_message AFTER UPDATE OF subject, sender, body_excerpt ON messages
    FOR EACH ROW WHEN (
        OLD.subject IS DISTINCT FROM NEW.subject OR OLD.sender IS DISTINCT FROM NEW.sender
        OR OLD.body_excerpt IS DISTINCT FROM NEW.body_excerpt
    ) EXECUTE FUNCTION messages_search_document()
    """,
)
_FILL = """
UPDATE decisions d
SET search_document = triage_search_document(m.subject, m.sender, m.body_excerpt, d.reason)
FROM messages m WHERE m.id = d.message_pk AND d.status <> 'pending'
"""


# The views over those columns, each before those that read it.
_VIEWS = ("decisions_view", "threads_view")
# (table, columns) holding IMAP UIDs or UIDVALIDITY values.
_IMAP_NUMBERS = (
    ("mailboxes", ("uidvalidity", "highest_recorded_uid")),
    ("messages", ("uidvalidity", "uid")),
    ("watchers", ("last_seen_uid",)),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _widen_imap_numbers()
    op.execute("ALTER TABLE decisions ADD COLUMN search_document tsvector")
    for statement in (_DOCUMENT_FUNCTION, _DECISION_FUNCTION, _MESSAGE_FUNCTION, *_TRIGGERS, _FILL):
        op.execute(statement)
    op.execute("CREATE INDEX ix_decisions_search_document ON decisions USING gin (search_document)")


def _widen_imap_numbers() -> None:
    """BIGINT UIDs; the views reading them are dropped first (PostgreSQL will not change a column a
    view reads) and made again from their own definitions."""
    connection = op.get_bind()
    definitions = {
        view: connection.execute(
            sa.text("SELECT pg_get_viewdef(CAST(:view AS regclass))"), {"view": view}
        ).scalar_one()
        for view in _VIEWS
    }
    for view in reversed(_VIEWS):
        op.execute(f"DROP VIEW {view}")
    for table, columns in _IMAP_NUMBERS:
        widened = ", ".join(f"ALTER COLUMN {column} TYPE bigint" for column in columns)
        op.execute(f"ALTER TABLE {table} {widened}")
    for view in _VIEWS:
        op.execute(f"CREATE VIEW {view} AS {definitions[view]}")
