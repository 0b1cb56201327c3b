"""The decision log's tables, in SQLAlchemy Core. The schema is changed only through migrations.

What needs no ORM uses these directly: `triage log` and `export`, which load neither the ORM nor
the repository (the classes mapped onto these tables, store/models.py, cost ~100 ms of start-up),
and the per-message statements the repository prepares once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# UIDs and UIDVALIDITY are unsigned 32-bit numbers: past PostgreSQL's INTEGER from 2^31 (BIGINT
# there since 0014); SQLite's INTEGER holds 64 bits.
IMAP_NUMBER = Integer().with_variant(BigInteger(), "postgresql")
UTC_TIME = DateTime(timezone=True)


def as_utc(when: datetime) -> datetime:
    """In UTC: SQLite hands datetimes back without their zone (triage writes them in UTC), PostgreSQL
    in the session's time zone."""
    return when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)


# Per mailbox: the UIDVALIDITY seen and the highest UID whose outcome is recorded.
mailboxes = Table(
    "mailboxes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(320), nullable=False),
    Column("name", String(1000), nullable=False),
    Column("uidvalidity", IMAP_NUMBER, nullable=False),
    Column("highest_recorded_uid", IMAP_NUMBER, nullable=False, default=0),
    Column("updated_at", UTC_TIME, nullable=False),
    UniqueConstraint("account", "name"),
)

# A message as seen in a mailbox, with the headers and text a template needs.
messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(320), nullable=False),
    Column("mailbox", String(1000), nullable=False),
    Column("uidvalidity", IMAP_NUMBER, nullable=False),
    Column("uid", IMAP_NUMBER, nullable=False),
    Column("message_id", String(1000)),
    Column("subject", Text),
    Column("sender", Text),
    Column("recipients", Text),
    Column("sent_at", UTC_TIME),
    Column("in_reply_to", Text),
    Column("references", JSON),
    Column("list_id", Text),
    Column("auto_submitted", String(200)),
    Column("precedence", String(200)),
    Column("size", Integer, nullable=False),
    Column("body_excerpt", Text),
    Column("parse_warnings", JSON),
    Column("first_seen_at", UTC_TIME, nullable=False),
    # What a template reads and the columns above lose, so a replay renders the same prompt:
    # addresses as [name, email] pairs, the Date with its own offset (sent_at keeps none on
    # SQLite), List-Unsubscribe, attachments and the untruncated body length. Added in 0003.
    Column("from_addresses", JSON),
    Column("to_addresses", JSON),
    Column("cc_addresses", JSON),
    Column("reply_to_addresses", JSON),
    Column("sent_at_text", String(40)),
    Column("list_unsubscribe", Text),
    Column("attachments", JSON),
    Column("body_chars", Integer),
    Column("gmail_thread_id", BigInteger),  # X-GM-THRID; added in 0006
    # The quoted history and signature apart from the new text (prompt.strip_quoted); added in 0013.
    Column("quoted_excerpt", Text),
    UniqueConstraint("account", "mailbox", "uidvalidity", "uid"),
    Index("ix_messages_message_id", "message_id"),
    Index("ix_messages_gmail_thread_id", "account", "gmail_thread_id"),
)

# Exactly one per message: its current outcome, with everything needed to explain it.
decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("message_pk", Integer, ForeignKey("messages.id"), nullable=False, unique=True),
    Column("status", String(20), nullable=False),  # pending|ok|needs-review|error|unparseable
    Column("decision", String(20)),
    Column("thread_id", String(200)),
    Column("title", Text),
    Column("reason", Text),
    Column("confidence", Float),
    Column("problem", Text),
    Column("decided_by", String(100), nullable=False, default="run"),
    Column("assistant_id", String(200)),
    Column("template_hash", String(64)),
    Column("prompt", Text),
    Column("request_metadata", JSON),
    Column("raw_response", JSON),
    Column("run_id", String(100)),
    Column("error_kind", String(40)),
    Column("error_text", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("latency_ms", Integer),
    Column("candidates", JSON),  # the threads offered in the prompt
    Column("routing_status", String(20)),  # pending|done|error|dry-run
    Column("routing_thread_id", String(64)),
    Column("routing_run_id", String(100)),
    Column("routing_actions", JSON),
    Column("routing_error", Text),
    Column("routing_attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("routed_at", UTC_TIME),
    Column("created_at", UTC_TIME, nullable=False),
    Column("updated_at", UTC_TIME, nullable=False),
    # The process (processes.id) holding the message's run, and its routing; added in 0010.
    Column("claimed_by", String(100)),
    Column("routing_claimed_by", String(100)),
    # The server thread holding the run (`run_id`), from its acknowledgement until triage released
    # it: joinable while the decision is pending or an error; added in 0011.
    Column("run_thread_id", String(100), index=True),
    # The past decisions offered to the assistant as examples (triage.examples); added in 0012.
    Column("examples", JSON),
    # Tokens of the run: reported by the model (tokens_measured), else estimated from the prompt; 0013.
    Column("prompt_tokens", Integer),
    Column("output_tokens", Integer),
    Column("tokens_measured", Boolean),
    Index("ix_decisions_status", "status"),
    Index("ix_decisions_created_at", "created_at"),
    Index("ix_decisions_thread_id", "thread_id"),
    Index("ix_decisions_routing_status", "routing_status"),
    # Covers `triage stats`' token totals (0015): the rows themselves hold ~15 KB of text.
    Index("ix_decisions_tokens", "created_at", "prompt_tokens", "output_tokens", "tokens_measured"),
)

# A watched mailbox: the daemon holding it (a lease renewed by heartbeats) and its health.
watchers = Table(
    "watchers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("account", String(320), nullable=False),
    Column("mailbox", String(1000), nullable=False),
    Column("owner", String(300)),
    Column("state", String(40), nullable=False),
    Column("connected", Boolean, nullable=False, default=False),
    Column("idle_since", UTC_TIME),
    Column("last_seen_uid", IMAP_NUMBER),
    Column("last_decision_at", UTC_TIME),
    Column("backlog", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("started_at", UTC_TIME),
    Column("heartbeat_at", UTC_TIME, nullable=False),
    UniqueConstraint("account", "mailbox"),
)

# A triage process working on this store, alive while its heartbeat is (store.processes).
processes = Table(
    "processes",
    metadata,
    Column("id", String(100), primary_key=True),  # host:pid:nonce
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("command", String(40), nullable=False),
    Column("started_at", UTC_TIME, nullable=False),
    Column("heartbeat_at", UTC_TIME, nullable=False),
    Column("run_concurrency", Integer),  # runs it lets be in flight now; added in 0011
)

# A person's label of a decision, kept beside it (never overwriting it); the latest counts.
# `kind`: correction (the decision changed), confirmation (accepted as it was), or filing (the user
# moved the message back, or into another decision's folder). Added in 0012; earlier rows are
# corrections.
corrections = Table(
    "corrections",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("decision_pk", Integer, ForeignKey("decisions.id"), nullable=False),
    Column("decision", String(20), nullable=False),  # new-task|existing-thread|ignore
    Column("thread_id", String(200)),
    Column("note", Text),
    Column("author", String(320)),
    Column("created_at", UTC_TIME, nullable=False),
    Column("kind", String(20), nullable=False, default="correction", server_default="correction"),
    Index("ix_corrections_decision_pk", "decision_pk"),
)

# Decisions per UTC day, assistant, template, status and decision ('' for none). Written only by
# triggers on the decisions table (SQLite; elsewhere empty, and stats groups the decisions
# themselves); read by `triage stats`.
daily_counts = Table(
    "daily_counts",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("assistant_id", String(200), primary_key=True),
    Column("template_hash", String(64), primary_key=True),
    Column("status", String(20), primary_key=True),
    Column("decision", String(20), primary_key=True),
    Column("n", Integer, nullable=False),
)

# Run latencies (three significant digits) per UTC day, assistant and template; by triggers.
daily_latencies = Table(
    "daily_latencies",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("assistant_id", String(200), primary_key=True),
    Column("template_hash", String(64), primary_key=True),
    Column("latency_ms", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
)

# Not tables of this metadata: made by migration 0003 and kept in step by SQL triggers (SQLite only).
# The FTS5 index is a virtual table with shadow tables named after it.
SEARCH_INDEX = "decisions_search"
# PostgreSQL's search instead: a tsvector column of `decisions` kept by triggers (migration 0014),
# undeclared here, as SQLite's table has no such column.
SEARCH_DOCUMENT = "search_document"
VIEWS = ("decisions_view", "threads_view", "decisions_search_source")

# A LangGraph thread a new task started, and what candidate ranking needs to know of it.
threads = Table(
    "threads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account", String(320), nullable=False),
    Column("mailbox", String(1000), nullable=False),
    Column("title", Text, nullable=False),
    Column("subject_key", Text, nullable=False),
    Column("participants", JSON, nullable=False),
    Column("started_by", Integer, ForeignKey("messages.id"), nullable=False),
    Column("status", String(20), nullable=False),  # open|closed
    Column("created_at", UTC_TIME, nullable=False),
    Column("last_activity_at", UTC_TIME, nullable=False),
    Index("ix_threads_last_activity", "last_activity_at"),
    Index("ix_threads_subject_recent", "subject_key", "last_activity_at"),
)

# A message assigned to a thread; its Message-ID lets replies prove the thread.
thread_messages = Table(
    "thread_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("thread_id", String(64), ForeignKey("threads.id"), nullable=False),
    Column("message_pk", Integer, ForeignKey("messages.id"), nullable=False, unique=True),
    Column("message_id", String(1000)),
    Index("ix_thread_messages_message_id", "message_id"),
    Index("ix_thread_messages_thread_id", "thread_id"),
)

# An address on a thread's messages; the index behind "threads with the same people".
thread_participants = Table(
    "thread_participants",
    metadata,
    Column("thread_id", String(64), ForeignKey("threads.id"), primary_key=True),
    Column("address", String(320), primary_key=True),
    # The thread's, kept in step: a person's most recent threads are one index range. Added in 0008.
    Column("last_activity_at", UTC_TIME),
    Index("ix_thread_participants_recent", "address", "last_activity_at"),
)
