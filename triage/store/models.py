"""The decision log's tables. The schema is changed only through migrations (store/migrations)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# UIDs and UIDVALIDITY are unsigned 32-bit numbers: past PostgreSQL's INTEGER from 2^31 (BIGINT
# there since 0014); SQLite's INTEGER holds 64 bits.
IMAP_NUMBER = Integer().with_variant(BigInteger(), "postgresql")


def as_utc(when: datetime) -> datetime:
    """In UTC: SQLite hands datetimes back without their zone (triage writes them in UTC), PostgreSQL
    in the session's time zone."""
    return when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[str]: JSON, datetime: DateTime(timezone=True)}


def table(model: type[Base]) -> Table:
    """A model's table, for the Core statements of the per-message hot path."""
    return Base.metadata.tables[model.__tablename__]


class MailboxState(Base):
    """Per mailbox: the UIDVALIDITY seen and the highest UID whose outcome is recorded."""

    __tablename__ = "mailboxes"
    __table_args__ = (UniqueConstraint("account", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int] = mapped_column(IMAP_NUMBER)
    highest_recorded_uid: Mapped[int] = mapped_column(IMAP_NUMBER, default=0)
    updated_at: Mapped[datetime]


class StoredMessage(Base):
    """A message as seen in a mailbox, with the headers and text a template needs."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("account", "mailbox", "uidvalidity", "uid"),
        Index("ix_messages_message_id", "message_id"),
        Index("ix_messages_gmail_thread_id", "account", "gmail_thread_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(320))
    mailbox: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int] = mapped_column(IMAP_NUMBER)
    uid: Mapped[int] = mapped_column(IMAP_NUMBER)
    message_id: Mapped[str | None] = mapped_column(String(1000))
    subject: Mapped[str | None] = mapped_column(Text)
    sender: Mapped[str | None] = mapped_column(Text)
    recipients: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[str] | None]
    list_id: Mapped[str | None] = mapped_column(Text)
    auto_submitted: Mapped[str | None] = mapped_column(String(200))
    precedence: Mapped[str | None] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(Integer)
    body_excerpt: Mapped[str | None] = mapped_column(Text)
    parse_warnings: Mapped[list[str] | None]
    first_seen_at: Mapped[datetime]
    # What a template reads and the columns above lose, so a replay renders the same prompt:
    # addresses as [name, email] pairs, the Date with its own offset (sent_at keeps none on
    # SQLite), List-Unsubscribe, attachments and the untruncated body length. Added in 0003.
    from_addresses: Mapped[list[list[str]] | None] = mapped_column(JSON)
    to_addresses: Mapped[list[list[str]] | None] = mapped_column(JSON)
    cc_addresses: Mapped[list[list[str]] | None] = mapped_column(JSON)
    reply_to_addresses: Mapped[list[list[str]] | None] = mapped_column(JSON)
    sent_at_text: Mapped[str | None] = mapped_column(String(40))
    list_unsubscribe: Mapped[str | None] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    body_chars: Mapped[int | None] = mapped_column(Integer)
    gmail_thread_id: Mapped[int | None] = mapped_column(BigInteger)  # X-GM-THRID; added in 0006
    # The quoted history and signature apart from the new text (prompt.strip_quoted); added in 0013.
    quoted_excerpt: Mapped[str | None] = mapped_column(Text)


class DecisionRecord(Base):
    """Exactly one per message: its current outcome, with everything needed to explain it."""

    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_status", "status"),
        Index("ix_decisions_created_at", "created_at"),
        Index("ix_decisions_thread_id", "thread_id"),
        Index("ix_decisions_routing_status", "routing_status"),
        # Covers `triage stats`' token totals (0015): the rows themselves hold ~15 KB of text.
        Index("ix_decisions_tokens", "created_at", "prompt_tokens", "output_tokens", "tokens_measured"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    status: Mapped[str] = mapped_column(String(20))  # pending|ok|needs-review|error|unparseable
    decision: Mapped[str | None] = mapped_column(String(20))
    thread_id: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float)
    problem: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(100), default="run")
    assistant_id: Mapped[str | None] = mapped_column(String(200))
    template_hash: Mapped[str | None] = mapped_column(String(64))
    prompt: Mapped[str | None] = mapped_column(Text)
    request_metadata: Mapped[dict[str, Any] | None]
    raw_response: Mapped[dict[str, Any] | None]
    run_id: Mapped[str | None] = mapped_column(String(100))
    error_kind: Mapped[str | None] = mapped_column(String(40))
    error_text: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    candidates: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # threads offered in the prompt
    routing_status: Mapped[str | None] = mapped_column(String(20))  # pending|done|error|dry-run
    routing_thread_id: Mapped[str | None] = mapped_column(String(64))
    routing_run_id: Mapped[str | None] = mapped_column(String(100))
    routing_actions: Mapped[dict[str, Any] | None]
    routing_error: Mapped[str | None] = mapped_column(Text)
    routing_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    routed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The process (processes.id) holding the message's run, and its routing; added in 0010.
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    routing_claimed_by: Mapped[str | None] = mapped_column(String(100))
    # The server thread holding the run (`run_id`), from its acknowledgement until triage released
    # it: joinable while the decision is pending or an error; added in 0011.
    run_thread_id: Mapped[str | None] = mapped_column(String(100), index=True)
    # The past decisions offered to the assistant as examples (triage.examples); added in 0012.
    examples: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # Tokens of the run: reported by the model (tokens_measured), else estimated from the prompt; 0013.
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    tokens_measured: Mapped[bool | None] = mapped_column(Boolean)


class Watcher(Base):
    """A watched mailbox: the daemon holding it (a lease renewed by heartbeats) and its health."""

    __tablename__ = "watchers"
    __table_args__ = (UniqueConstraint("account", "mailbox"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(320))
    mailbox: Mapped[str] = mapped_column(String(1000))
    owner: Mapped[str | None] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(40))
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    idle_since: Mapped[datetime | None]
    last_seen_uid: Mapped[int | None] = mapped_column(IMAP_NUMBER)
    last_decision_at: Mapped[datetime | None]
    backlog: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime]


class Process(Base):
    """A triage process working on this store, alive while its heartbeat is (store.processes)."""

    __tablename__ = "processes"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # host:pid:nonce
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    command: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    run_concurrency: Mapped[int | None] = mapped_column(Integer)  # runs it lets be in flight now; 0011


class Correction(Base):
    """A person's label of a decision, kept beside it (never overwriting it); the latest counts.

    `kind`: correction (the decision changed), confirmation (accepted as it was), or filing (the user
    moved the message back, or into another decision's folder). Added in 0012; earlier rows are
    corrections.
    """

    __tablename__ = "corrections"
    __table_args__ = (Index("ix_corrections_decision_pk", "decision_pk"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    decision_pk: Mapped[int] = mapped_column(ForeignKey("decisions.id"))
    decision: Mapped[str] = mapped_column(String(20))  # new-task|existing-thread|ignore
    thread_id: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(20), default="correction", server_default="correction")


class DailyCount(Base):
    """Decisions per UTC day, assistant, template, status and decision ('' for none).

    Written only by triggers on the decisions table (SQLite; elsewhere empty, and stats groups
    the decisions themselves); read by `triage stats`.
    """

    __tablename__ = "daily_counts"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    assistant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    template_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    decision: Mapped[str] = mapped_column(String(20), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class DailyLatency(Base):
    """Run latencies (three significant digits) per UTC day, assistant and template; by triggers."""

    __tablename__ = "daily_latencies"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    assistant_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    template_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    latency_ms: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


# Not ORM models: made by migration 0003 and kept in step by SQL triggers (SQLite only). The
# FTS5 index is a virtual table with shadow tables named after it.
SEARCH_INDEX = "decisions_search"
# PostgreSQL's search instead: a tsvector column of `decisions` kept by triggers (migration 0014),
# unmapped, as SQLite's table has no such column.
SEARCH_DOCUMENT = "search_document"
VIEWS = ("decisions_view", "threads_view", "decisions_search_source")


class Thread(Base):
    """A LangGraph thread a new task started, and what candidate ranking needs to know of it."""

    __tablename__ = "threads"
    __table_args__ = (
        Index("ix_threads_last_activity", "last_activity_at"),
        Index("ix_threads_subject_recent", "subject_key", "last_activity_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(String(320))
    mailbox: Mapped[str] = mapped_column(String(1000))
    title: Mapped[str] = mapped_column(Text)
    subject_key: Mapped[str] = mapped_column(Text)
    participants: Mapped[list[str]]
    started_by: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    status: Mapped[str] = mapped_column(String(20))  # open|closed
    created_at: Mapped[datetime]
    last_activity_at: Mapped[datetime]


class ThreadMessage(Base):
    """A message assigned to a thread; its Message-ID lets replies prove the thread."""

    __tablename__ = "thread_messages"
    __table_args__ = (
        Index("ix_thread_messages_message_id", "message_id"),
        Index("ix_thread_messages_thread_id", "thread_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id"))
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(1000))


class ThreadParticipant(Base):
    """An address on a thread's messages; the index behind "threads with the same people"."""

    __tablename__ = "thread_participants"
    __table_args__ = (Index("ix_thread_participants_recent", "address", "last_activity_at"),)

    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id"), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    # The thread's, kept in step: a person's most recent threads are one index range. Added in 0008.
    last_activity_at: Mapped[datetime | None]
