"""The decision log: SQLAlchemy over SQLite (WAL) by default, any SQLAlchemy URL accepted.

A message is *claimed* (its decision row set to `pending`) before its run starts and its outcome is
written when the run ends. Claimed-but-unfinished and failed (`error`) messages are retried by the
next pass; `ok`, `needs-review` and `unparseable` are final. One decision row per message, enforced
by a unique key, so a message is never recorded twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from triage.errors import ConfigError, TriageError
from triage.message import Email
from triage.sources import RawMessage
from triage.store.models import DecisionRecord, MailboxState, StoredMessage

FINAL_STATUSES = ("ok", "needs-review", "unparseable")
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@dataclass(frozen=True, slots=True)
class Claim:
    """What was sent for a message, recorded before the run starts."""

    prompt: str
    template_hash: str
    assistant_id: str
    request_metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a message's triage ended."""

    status: str  # ok|needs-review|error|unparseable
    decision: str | None = None
    thread_id: str | None = None
    title: str | None = None
    reason: str | None = None
    confidence: float | None = None
    problem: str | None = None
    raw_response: dict[str, Any] | None = None
    run_id: str | None = None
    error_kind: str | None = None
    error_text: str | None = None
    attempts: int = 0
    latency_ms: int | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and bring the schema up to date."""
        engine = _engine(url)
        try:
            with engine.begin() as connection:
                config = Config()
                config.set_main_option("script_location", str(_MIGRATIONS))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except OperationalError as exc:
            raise TriageError(f"cannot open store {_safe_url(url)}: {exc.orig}") from None
        return cls(engine)

    @classmethod
    def open_existing(cls, url: str) -> Store | None:
        """For read-only use: None where an SQLite file does not exist yet (nothing is created)."""
        engine = _engine(url)  # connects lazily: nothing is created yet
        if engine.dialect.name == "sqlite":
            database = engine.url.database or ""
            if database in ("", ":memory:") or not Path(database).exists():
                return None
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def note_mailbox(self, account: str, mailbox: str, uidvalidity: int) -> None:
        with self._session.begin() as session:
            state = _mailbox_state(session, account, mailbox)
            if state is None:
                session.add(
                    MailboxState(
                        account=account,
                        name=mailbox,
                        uidvalidity=uidvalidity,
                        highest_recorded_uid=0,
                        updated_at=_now(),
                    )
                )
            elif state.uidvalidity != uidvalidity:
                state.uidvalidity, state.highest_recorded_uid = uidvalidity, 0
                state.updated_at = _now()

    def decided_uids(self, account: str, mailbox: str, uidvalidity: int) -> set[int]:
        """UIDs whose outcome is final; everything else in the mailbox still needs triage."""
        query = (
            select(StoredMessage.uid)
            .join(DecisionRecord, DecisionRecord.message_pk == StoredMessage.id)
            .where(
                StoredMessage.account == account,
                StoredMessage.mailbox == mailbox,
                StoredMessage.uidvalidity == uidvalidity,
                DecisionRecord.status.in_(FINAL_STATUSES),
            )
        )
        with self._session() as session:
            return set(session.scalars(query))

    def claim(self, raw: RawMessage, email: Email, claim: Claim) -> int | None:
        """Mark the message in progress; None if its outcome is already final (skip it)."""
        with self._session.begin() as session:
            message = self._message(session, raw, email)
            record = session.scalar(select(DecisionRecord).where(DecisionRecord.message_pk == message.id))
            if record is None:
                record = DecisionRecord(message_pk=message.id, attempts=0, created_at=_now())
                session.add(record)
            elif record.status in FINAL_STATUSES:
                return None
            record.status, record.decided_by = "pending", "run"
            record.prompt, record.template_hash = claim.prompt, claim.template_hash
            record.assistant_id, record.request_metadata = claim.assistant_id, claim.request_metadata
            record.updated_at = _now()
            session.flush()
            return record.id

    def record(self, decision_pk: int, outcome: Outcome) -> None:
        """Write a claimed message's outcome; attempts add up across passes."""
        with self._session.begin() as session:
            record = session.get_one(DecisionRecord, decision_pk)
            for name in (
                "status",
                "decision",
                "thread_id",
                "title",
                "reason",
                "confidence",
                "problem",
                "raw_response",
                "run_id",
                "error_kind",
                "error_text",
                "latency_ms",
            ):
                setattr(record, name, getattr(outcome, name))
            record.attempts += outcome.attempts
            record.updated_at = _now()
            if outcome.status in FINAL_STATUSES:
                self._advance_mailbox(session, record.message_pk)

    def record_unparseable(self, raw: RawMessage, reason: str) -> bool:
        """Record bytes that are not mail at all; False if already recorded."""
        try:
            with self._session.begin() as session:
                message = self._message(session, raw, None)
                if session.scalar(select(DecisionRecord.id).where(DecisionRecord.message_pk == message.id)):
                    return False
                now = _now()
                session.add(
                    DecisionRecord(
                        message_pk=message.id,
                        status="unparseable",
                        problem=reason,
                        decided_by="parser",
                        attempts=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
                session.flush()
                self._advance_mailbox(session, message.id)
        except IntegrityError:
            return False
        return True

    def status_counts(self) -> dict[str, int]:
        query = select(DecisionRecord.status, func.count()).group_by(DecisionRecord.status)
        with self._session() as session:
            return {status: count for status, count in session.execute(query)}

    def decisions(self, account: str | None = None) -> Iterator[tuple[StoredMessage, DecisionRecord]]:
        """Every recorded decision with its message, oldest message first, streamed."""
        query = (
            select(StoredMessage, DecisionRecord)
            .join(DecisionRecord, DecisionRecord.message_pk == StoredMessage.id)
            .order_by(StoredMessage.account, StoredMessage.mailbox, StoredMessage.uid)
        )
        if account is not None:
            query = query.where(StoredMessage.account == account)
        with self._session() as session:
            yield from session.execute(query.execution_options(yield_per=500)).tuples()

    def _message(self, session: Session, raw: RawMessage, email: Email | None) -> StoredMessage:
        message = session.scalar(
            select(StoredMessage).where(
                StoredMessage.account == raw.account,
                StoredMessage.mailbox == raw.mailbox,
                StoredMessage.uidvalidity == raw.uidvalidity,
                StoredMessage.uid == raw.uid,
            )
        )
        if message is None:
            message = StoredMessage(
                account=raw.account,
                mailbox=raw.mailbox,
                uidvalidity=raw.uidvalidity,
                uid=raw.uid,
                size=len(raw.raw),
                first_seen_at=_now(),
            )
            session.add(message)
        if email is not None:
            message.message_id = email.message_id
            message.subject = email.subject
            message.sender = email.sender
            message.recipients = ", ".join(str(a) for a in [*email.to, *email.cc])
            message.sent_at = email.date
            message.in_reply_to = email.in_reply_to
            message.references = email.references
            message.list_id = email.list_id
            message.auto_submitted = email.auto_submitted
            message.precedence = email.precedence
            message.body_excerpt = email.body
            message.parse_warnings = email.warnings
        session.flush()
        return message

    @staticmethod
    def _advance_mailbox(session: Session, message_pk: int) -> None:
        message = session.get_one(StoredMessage, message_pk)
        state = _mailbox_state(session, message.account, message.mailbox)
        if (
            state is not None
            and state.uidvalidity == message.uidvalidity
            and message.uid > state.highest_recorded_uid
        ):
            state.highest_recorded_uid = message.uid
            state.updated_at = _now()


def _mailbox_state(session: Session, account: str, mailbox: str) -> MailboxState | None:
    return session.scalar(
        select(MailboxState).where(MailboxState.account == account, MailboxState.name == mailbox)
    )


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
        engine = create_engine(
            parsed, connect_args={"timeout": 30} if parsed.get_backend_name() == "sqlite" else {}
        )
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"store.url is not a valid SQLAlchemy URL: {exc}") from None
    except (ImportError, SQLAlchemyError) as exc:
        raise ConfigError(f"store.url {_safe_url(url)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(unparsable URL)"
