"""The ORM's view of the tables (store/tables.py) for the code that loads and saves whole rows.

Each class maps one table; its annotations only type the attributes, the table says the rest (a test
keeps their names and optionality in step with the columns). Tables nothing loads as objects have
no class here. The schema is changed only through migrations (store/migrations).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped

from triage.store import tables


class Base(DeclarativeBase):
    metadata = tables.metadata


class MailboxState(Base):
    """A mailbox's UIDVALIDITY and the highest UID whose outcome is recorded."""

    __table__ = tables.mailboxes

    id: Mapped[int]
    account: Mapped[str]
    name: Mapped[str]
    uidvalidity: Mapped[int]
    highest_recorded_uid: Mapped[int]
    updated_at: Mapped[datetime]


class StoredMessage(Base):
    """A message as seen in a mailbox."""

    __table__ = tables.messages

    id: Mapped[int]
    account: Mapped[str]
    mailbox: Mapped[str]
    uidvalidity: Mapped[int]
    uid: Mapped[int]
    message_id: Mapped[str | None]
    subject: Mapped[str | None]
    sender: Mapped[str | None]
    recipients: Mapped[str | None]
    sent_at: Mapped[datetime | None]
    in_reply_to: Mapped[str | None]
    references: Mapped[list[str] | None]
    list_id: Mapped[str | None]
    auto_submitted: Mapped[str | None]
    precedence: Mapped[str | None]
    size: Mapped[int]
    body_excerpt: Mapped[str | None]
    parse_warnings: Mapped[list[str] | None]
    first_seen_at: Mapped[datetime]
    from_addresses: Mapped[list[list[str]] | None]
    to_addresses: Mapped[list[list[str]] | None]
    cc_addresses: Mapped[list[list[str]] | None]
    reply_to_addresses: Mapped[list[list[str]] | None]
    sent_at_text: Mapped[str | None]
    list_unsubscribe: Mapped[str | None]
    attachments: Mapped[list[dict[str, Any]] | None]
    body_chars: Mapped[int | None]
    gmail_thread_id: Mapped[int | None]
    quoted_excerpt: Mapped[str | None]


class DecisionRecord(Base):
    """A message's one decision: its current outcome and everything needed to explain it."""

    __table__ = tables.decisions

    id: Mapped[int]
    message_pk: Mapped[int]
    status: Mapped[str]
    decision: Mapped[str | None]
    thread_id: Mapped[str | None]
    title: Mapped[str | None]
    reason: Mapped[str | None]
    confidence: Mapped[float | None]
    problem: Mapped[str | None]
    decided_by: Mapped[str]
    assistant_id: Mapped[str | None]
    template_hash: Mapped[str | None]
    prompt: Mapped[str | None]
    request_metadata: Mapped[dict[str, Any] | None]
    raw_response: Mapped[dict[str, Any] | None]
    run_id: Mapped[str | None]
    error_kind: Mapped[str | None]
    error_text: Mapped[str | None]
    attempts: Mapped[int]
    latency_ms: Mapped[int | None]
    candidates: Mapped[list[dict[str, Any]] | None]
    routing_status: Mapped[str | None]
    routing_thread_id: Mapped[str | None]
    routing_run_id: Mapped[str | None]
    routing_actions: Mapped[dict[str, Any] | None]
    routing_error: Mapped[str | None]
    routing_attempts: Mapped[int]
    routed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    claimed_by: Mapped[str | None]
    routing_claimed_by: Mapped[str | None]
    run_thread_id: Mapped[str | None]
    examples: Mapped[list[dict[str, Any]] | None]
    prompt_tokens: Mapped[int | None]
    output_tokens: Mapped[int | None]
    tokens_measured: Mapped[bool | None]


class Watcher(Base):
    """A watched mailbox: the daemon holding its lease, and its health."""

    __table__ = tables.watchers

    id: Mapped[int]
    account: Mapped[str]
    mailbox: Mapped[str]
    owner: Mapped[str | None]
    state: Mapped[str]
    connected: Mapped[bool]
    idle_since: Mapped[datetime | None]
    last_seen_uid: Mapped[int | None]
    last_decision_at: Mapped[datetime | None]
    backlog: Mapped[int]
    failures: Mapped[int]
    last_error: Mapped[str | None]
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime]


class Correction(Base):
    """A person's label of a decision (the latest counts)."""

    __table__ = tables.corrections

    id: Mapped[int]
    decision_pk: Mapped[int]
    decision: Mapped[str]
    thread_id: Mapped[str | None]
    note: Mapped[str | None]
    author: Mapped[str | None]
    created_at: Mapped[datetime]
    kind: Mapped[str]


class Thread(Base):
    """A LangGraph thread a new task started."""

    __table__ = tables.threads

    id: Mapped[str]
    account: Mapped[str]
    mailbox: Mapped[str]
    title: Mapped[str]
    subject_key: Mapped[str]
    participants: Mapped[list[str]]
    started_by: Mapped[int]
    status: Mapped[str]
    created_at: Mapped[datetime]
    last_activity_at: Mapped[datetime]
