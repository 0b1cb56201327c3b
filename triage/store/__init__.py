"""The decision log: SQLAlchemy over SQLite (WAL) by default, any SQLAlchemy URL accepted.

A message is *claimed* (its decision row set to `pending`) before its run starts and its outcome is
written when the run ends. Claimed-but-unfinished and failed (`error`) messages are retried by the
next pass; `ok`, `needs-review` and `unparseable` are final. One decision row per message, enforced
by a unique key, so a message is never recorded twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Select,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from triage.errors import ConfigError, TriageError
from triage.message import Email
from triage.sources import RawMessage
from triage.store import threads
from triage.store.models import DecisionRecord, MailboxState, StoredMessage, table
from triage.store.threads import ThreadAssignment

FINAL_STATUSES = ("ok", "needs-review", "unparseable")
# The newest migration in migrations/versions (a test keeps the two in step).
SCHEMA_HEAD = "0009"
# Outcome fields stored as they are on a decision row (attempts add up instead).
_OUTCOME_FIELDS = (
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
    "decided_by",
)
# What a decision carried over to a message's new identity keeps of the original (its routing
# too: the thread and run it led to exist already).
_CARRIED_FIELDS = (
    *(name for name in _OUTCOME_FIELDS if name != "decided_by"),
    *("assistant_id", "template_hash", "prompt", "request_metadata"),
    *("routing_status", "routing_thread_id", "routing_run_id", "routing_actions", "routing_error"),
)
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MESSAGES = table(StoredMessage)
_DECISIONS = table(DecisionRecord)
# The statements every message runs, built once: building one costs more than executing it.
# Columns come from each call's parameters; the bound names below are not column names.
_INSERT_MESSAGE = insert(_MESSAGES)
_UPDATE_MESSAGE = update(_MESSAGES).where(_MESSAGES.c.id == bindparam("message_pk"))
_INSERT_DECISION = insert(_DECISIONS)
_UPDATE_DECISION = update(_DECISIONS).where(_DECISIONS.c.id == bindparam("decision_pk"))
_RECORD_OUTCOME = _UPDATE_DECISION.values(attempts=_DECISIONS.c.attempts + bindparam("added_attempts"))
_UNFINISHED = ("pending", "error")  # every status but the final ones
_UNFINISHED_MESSAGE_KEYS = select(_DECISIONS.c.message_pk).where(_DECISIONS.c.status.in_(_UNFINISHED))
_IDENTITIES_BY_KEY = select(
    _MESSAGES.c.account, _MESSAGES.c.mailbox, _MESSAGES.c.uidvalidity, _MESSAGES.c.uid
).where(_MESSAGES.c.id.in_(bindparam("keys", expanding=True)))
_KEYS_PER_QUERY = 500  # well under any database's limit on bound parameters
_BATCH_MOST = 128  # writes (two or three a message) before a batch commits on its own
_MESSAGE_AND_DECISION = (
    select(_MESSAGES.c.id, _DECISIONS.c.id, _DECISIONS.c.status)
    .outerjoin(_DECISIONS, _DECISIONS.c.message_pk == _MESSAGES.c.id)
    .where(*(_MESSAGES.c[name] == bindparam(name) for name in ("account", "mailbox", "uidvalidity", "uid")))
)


@dataclass(frozen=True, slots=True)
class Claim:
    """What was sent for a message, recorded before the run starts."""

    prompt: str
    template_hash: str
    assistant_id: str
    request_metadata: dict[str, Any]
    candidates: list[dict[str, Any]] = field(default_factory=list)  # the threads offered


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message marked in progress: where its outcome goes."""

    decision_pk: int
    message_pk: int
    account: str
    mailbox: str
    fresh: bool  # the claim made the message's row: nothing refers to it yet


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
    decided_by: str = "run"  # run | rule:NAME | headers | parser


class StoreFailed(TriageError):
    """The decision log cannot be written (locked too long, disk full, read-only): stop, lose nothing."""


def store_failed(exc: SQLAlchemyError) -> StoreFailed:
    """One line a user can act on; nothing is lost, as unrecorded mail stays undecided."""
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
    hints = {
        "locked": "another program holds a lock on it",
        "readonly": "the file or its folder is read-only",
        "read-only": "the file or its folder is read-only",
        "disk": "is the disk full?",
        "full": "is the disk full?",
    }
    hint = next((text for word, text in hints.items() if word in reason.lower()), "")
    return StoreFailed(
        f"cannot write the decision log ({reason}{'; ' + hint if hint else ''}); stopping."
        " Mail not yet recorded stays undecided and is triaged at the next start"
    )


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)
        # (account, mailbox, uidvalidity) -> whether messages of another UIDVALIDITY exist.
        self._other_generations: dict[tuple[str, str, int], bool] = {}
        self._batch: Connection | None = None  # see batched()
        self._batch_writes = 0

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and bring the schema up to date."""
        engine = _engine(url)
        try:
            with engine.begin() as connection:
                if _schema_version(connection) != SCHEMA_HEAD:
                    _migrate(connection)
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

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Let the per-message writes share transactions until `commit_batch()`, for a backfill.

        A commit per write is most of what SQLite costs a backfill, and each one re-indexes the
        message for search. In a batch, claims, outcomes and thread assignments go to one
        connection, which also serves `reading()`, so a reply still finds the thread its parent
        was given a moment ago. What a crash leaves uncommitted was never recorded: those messages
        are undecided and triaged again, as after a crash mid-run. Anything that acts on a decision
        (routing, mailbox actions) must see it committed first, so batches are for runs that only
        record. The batch commits at its end and every _BATCH_MOST writes, and is rolled back if
        an error ends it.
        """
        with self.engine.connect() as connection:
            self._batch, self._batch_writes = connection, 0
            try:
                yield
                connection.commit()
            finally:
                self._batch = None

    def commit_batch(self) -> None:
        """Commit what the batch has written so far (a no-op outside a batch, or with nothing new)."""
        if self._batch is not None and self._batch_writes:
            self._batch.commit()
            self._batch_writes = 0

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection to read with: the batch's, which sees its own writes, or a new one."""
        if self._batch is not None:
            yield self._batch
            return
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A connection in a transaction for one write: the batch's, or one committed at the end."""
        if self._batch is None:
            with self.engine.begin() as connection:
                yield connection
            return
        yield self._batch
        self._batch_writes += 1
        if self._batch_writes >= _BATCH_MOST:
            self.commit_batch()

    @property
    def sessions(self) -> sessionmaker[Session]:
        """For modules that keep their own tables in this store (watchers, review)."""
        return self._session

    def note_mailbox(self, account: str, mailbox: str, uidvalidity: int, start_uid: int = 0) -> int | None:
        """Record the mailbox's UIDVALIDITY; return the one known before (None if new).

        A new mailbox's watermark starts at `start_uid`; a changed UIDVALIDITY resets it to 0,
        since every UID of the old generation is void.
        """
        with self._session.begin() as session:
            state = _mailbox_state(session, account, mailbox)
            if state is None:
                session.add(
                    MailboxState(
                        account=account,
                        name=mailbox,
                        uidvalidity=uidvalidity,
                        highest_recorded_uid=start_uid,
                        updated_at=_now(),
                    )
                )
                return None
            previous = state.uidvalidity
            if previous != uidvalidity:
                state.uidvalidity, state.highest_recorded_uid = uidvalidity, 0
                state.updated_at = _now()
            return previous

    def watermark(self, account: str, mailbox: str) -> int:
        """The highest UID below which every message of the mailbox has a recorded row."""
        with self._session() as session:
            state = _mailbox_state(session, account, mailbox)
            return state.highest_recorded_uid if state is not None else 0

    def advance_watermark(self, account: str, mailbox: str, uidvalidity: int, uid: int) -> None:
        with self._session.begin() as session:
            state = _mailbox_state(session, account, mailbox)
            if state is not None and state.uidvalidity == uidvalidity and uid > state.highest_recorded_uid:
                state.highest_recorded_uid = uid
                state.updated_at = _now()

    def unfinished_uids(self, account: str, mailbox: str, uidvalidity: int) -> list[int]:
        """Claimed-but-unfinished and failed messages: the ones to run again.

        Found through the status index, then their messages by key. As one join, SQLite's planner
        walks the whole mailbox generation instead: 68 ms at 200,000 messages, at every catch-up.
        """
        generation = (account, mailbox, uidvalidity)
        found: list[int] = []
        with self.engine.connect() as connection:
            keys = list(connection.execute(_UNFINISHED_MESSAGE_KEYS).scalars())
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = {"keys": keys[start : start + _KEYS_PER_QUERY]}
                for *where, uid in connection.execute(_IDENTITIES_BY_KEY, chunk):
                    if tuple(where) == generation:
                        found.append(uid)
        return sorted(found)

    def decided_uids(self, account: str, mailbox: str, uidvalidity: int, above: int = 0) -> set[int]:
        """UIDs (above `above`) whose outcome is final; the rest of the mailbox still needs triage."""
        query = _recorded_uids(account, mailbox, uidvalidity).where(
            StoredMessage.uid > above, DecisionRecord.status.in_(FINAL_STATUSES)
        )
        with self._session() as session:
            return set(session.scalars(query))

    def claim(self, raw: RawMessage, email: Email, claim: Claim) -> Claimed | None:
        """Mark the message in progress; None if its outcome is already final (skip it).

        The per-message writes use SQLAlchemy Core, not the ORM: they run for every message of a
        backfill, and the ORM's unit of work cost more than the run itself against a fast server.
        """
        values = {
            "status": "pending",
            "decided_by": "run",
            "prompt": claim.prompt,
            "template_hash": claim.template_hash,
            "assistant_id": claim.assistant_id,
            "request_metadata": claim.request_metadata,
            "candidates": claim.candidates,
            "updated_at": _now(),
        }
        with self._writing() as connection:
            known_pk, decision_pk, status = _message_and_decision(connection, raw)
            message_pk = _write_message(connection, raw, email, known_pk)
            if decision_pk is None:
                inserted = connection.execute(
                    _INSERT_DECISION,
                    {"message_pk": message_pk, "attempts": 0, "created_at": _now(), **values},
                )
                decision_pk = _inserted_id(inserted)
            elif status in FINAL_STATUSES:
                return None
            else:
                connection.execute(_UPDATE_DECISION, {"decision_pk": decision_pk, **values})
            return Claimed(decision_pk, message_pk, raw.account, raw.mailbox, fresh=known_pk is None)

    def carry_over(self, raw: RawMessage, email: Email) -> Outcome | None:
        """The same mail already decided under an earlier UIDVALIDITY keeps that decision.

        A folder deleted and recreated, or a server migration, gives every message a new identity;
        it is recognised by Message-ID plus date and size, and recorded again without a run.
        """
        if email.message_id is None or not self._has_other_generations(raw):
            return None
        same_date = _MESSAGES.c.sent_at.is_(None) if email.date is None else _MESSAGES.c.sent_at == email.date
        twin_query = (
            select(_DECISIONS)
            .join(_MESSAGES, _DECISIONS.c.message_pk == _MESSAGES.c.id)
            .where(
                _MESSAGES.c.account == raw.account,
                _MESSAGES.c.mailbox == raw.mailbox,
                _MESSAGES.c.uidvalidity != raw.uidvalidity,
                _MESSAGES.c.message_id == email.message_id,
                _MESSAGES.c.size == len(raw.raw),
                same_date,
                _DECISIONS.c.status.in_(FINAL_STATUSES),
            )
            .order_by(_DECISIONS.c.id.desc())
            .limit(1)
        )
        with self._writing() as connection:
            if _message_and_decision(connection, raw)[0] is not None:
                return None
            twin = connection.execute(twin_query).mappings().first()
            if twin is None:
                return None
            message_pk = _write_message(connection, raw, email, None)
            copied = {name: twin[name] for name in _CARRIED_FIELDS}
            now = _now()
            carried_by = f"carried-over:{twin['id']}"
            connection.execute(
                _INSERT_DECISION,
                {
                    "message_pk": message_pk,
                    "decided_by": carried_by,
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                    **copied,
                },
            )
            threads.carry_membership(connection, twin["message_pk"], message_pk)
            outcome_fields = {name: copied[name] for name in _OUTCOME_FIELDS if name != "decided_by"}
            return Outcome(**outcome_fields, decided_by=carried_by)

    def _has_other_generations(self, raw: RawMessage) -> bool:
        """Whether the mailbox has messages under another UIDVALIDITY (almost never: asked once)."""
        key = (raw.account, raw.mailbox, raw.uidvalidity)
        if key not in self._other_generations:
            query = select(_MESSAGES.c.id).where(
                _MESSAGES.c.account == raw.account,
                _MESSAGES.c.mailbox == raw.mailbox,
                _MESSAGES.c.uidvalidity != raw.uidvalidity,
            )
            with self.engine.connect() as connection:
                found = connection.execute(query.limit(1)).first() is not None
            self._other_generations[key] = found
        return self._other_generations[key]

    def record(
        self,
        claimed: Claimed,
        outcome: Outcome,
        *,
        thread: tuple[Email, ThreadAssignment] | None = None,
        routing_status: str | None = None,
    ) -> None:
        """Write a claimed message's outcome, and its thread assignment in the same transaction.

        Attempts add up across passes. `routing_status` (pending, dry-run) says what is left to do.
        """
        values = {name: getattr(outcome, name) for name in _OUTCOME_FIELDS}
        with self._writing() as connection:
            connection.execute(
                _RECORD_OUTCOME,
                {
                    **values,
                    "decision_pk": claimed.decision_pk,
                    "added_attempts": outcome.attempts,
                    "updated_at": _now(),
                    "routing_status": routing_status,
                },
            )
            if thread is not None:
                threads.assign(connection, claimed, *thread)

    def record_unparseable(self, raw: RawMessage, reason: str) -> bool:
        """Record bytes that are not mail at all; False if already recorded."""
        now = _now()
        try:
            with self._writing() as connection:
                message_pk, decision_pk, _ = _message_and_decision(connection, raw)
                if decision_pk is not None:
                    return False
                connection.execute(
                    _INSERT_DECISION,
                    {
                        "message_pk": _write_message(connection, raw, None, message_pk),
                        "status": "unparseable",
                        "problem": reason,
                        "decided_by": "parser",
                        "attempts": 0,
                        "created_at": now,
                        "updated_at": now,
                    },
                )
        except IntegrityError:
            return False
        return True

    def reopenable(self, account: str, status: str, since: date | None) -> dict[str, set[int]]:
        """The UIDs per mailbox that `reopen` would make pending (it changes nothing)."""
        chosen: dict[str, set[int]] = {}
        with self._session() as session:
            for _, mailbox, uid in session.execute(_reopen_query(account, status, since)):
                chosen.setdefault(mailbox, set()).add(uid)
        return chosen

    def reopen(self, account: str, status: str, since: date | None) -> dict[str, set[int]]:
        """Make chosen decisions of the mailboxes' current generation pending again, to be re-run.

        Returns the UIDs per mailbox; the next pass (or the daemon) runs them again.
        """
        chosen: dict[str, set[int]] = {}
        with self._session.begin() as session:
            for record, mailbox, uid in session.execute(_reopen_query(account, status, since)):
                record.status, record.updated_at = "pending", _now()
                chosen.setdefault(mailbox, set()).add(uid)
        return chosen

    def status_counts(self) -> dict[str, int]:
        query = select(DecisionRecord.status, func.count()).group_by(DecisionRecord.status)
        with self._session() as session:
            return {status: count for status, count in session.execute(query)}


def _schema_version(connection: Connection) -> str | None:
    """The store's migration revision, read without loading Alembic (most starts need none)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _migrate(connection: Connection) -> None:
    from alembic import command  # imported only when the schema has to change: it is slow to load
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _reopen_query(account: str, status: str, since: date | None) -> Select[DecisionRecord, str, int]:
    """Decisions of one status (recorded since a day) in the mailboxes' current generation."""
    query = (
        select(DecisionRecord, StoredMessage.mailbox, StoredMessage.uid)
        .join(StoredMessage, DecisionRecord.message_pk == StoredMessage.id)
        .join(
            MailboxState,
            (MailboxState.account == StoredMessage.account)
            & (MailboxState.name == StoredMessage.mailbox)
            & (MailboxState.uidvalidity == StoredMessage.uidvalidity),
        )
        .where(StoredMessage.account == account, DecisionRecord.status == status)
    )
    if since is not None:
        query = query.where(DecisionRecord.updated_at >= datetime.combine(since, time.min, UTC))
    return query


def _recorded_uids(account: str, mailbox: str, uidvalidity: int) -> Select[int]:
    """UIDs of one mailbox generation that have a decision row."""
    return (
        select(StoredMessage.uid)
        .join(DecisionRecord, DecisionRecord.message_pk == StoredMessage.id)
        .where(
            StoredMessage.account == account,
            StoredMessage.mailbox == mailbox,
            StoredMessage.uidvalidity == uidvalidity,
        )
    )


def _message_and_decision(
    connection: Connection, raw: RawMessage
) -> tuple[int | None, int | None, str | None]:
    """The message's row id, and its decision's id and status (None where there is none yet)."""
    row = connection.execute(_MESSAGE_AND_DECISION, _identity(raw)).first()
    return (row[0], row[1], row[2]) if row is not None else (None, None, None)


def _write_message(
    connection: Connection, raw: RawMessage, email: Email | None, message_pk: int | None
) -> int:
    """Insert the message's row, or refresh its headers; returns its id."""
    values = _message_values(email) if email is not None else {}
    if message_pk is not None:
        if values:
            connection.execute(_UPDATE_MESSAGE, {"message_pk": message_pk, **values})
        return message_pk
    inserted = connection.execute(
        _INSERT_MESSAGE,
        {
            **_identity(raw),
            "size": len(raw.raw),
            "gmail_thread_id": raw.gmail_thread_id,
            "first_seen_at": _now(),
            **values,
        },
    )
    return _inserted_id(inserted)


def _inserted_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None, "an INSERT returns the new row's key"
    return int(key[0])


def _identity(raw: RawMessage) -> dict[str, Any]:
    return {"account": raw.account, "mailbox": raw.mailbox, "uidvalidity": raw.uidvalidity, "uid": raw.uid}


def _message_values(email: Email) -> dict[str, Any]:
    return {
        "message_id": email.message_id,
        "subject": email.subject,
        "sender": email.sender,
        "recipients": ", ".join(str(a) for a in [*email.to, *email.cc]),
        "sent_at": email.date,
        "in_reply_to": email.in_reply_to,
        "references": email.references,
        "list_id": email.list_id,
        "auto_submitted": email.auto_submitted,
        "precedence": email.precedence,
        "body_excerpt": email.body,
        "parse_warnings": email.warnings,
        # The rest of what a template reads, so a replay can render this message again.
        "from_addresses": [[a.name, a.email] for a in email.from_],
        "to_addresses": [[a.name, a.email] for a in email.to],
        "cc_addresses": [[a.name, a.email] for a in email.cc],
        "reply_to_addresses": [[a.name, a.email] for a in email.reply_to],
        "sent_at_text": email.date.isoformat() if email.date else None,
        "list_unsubscribe": email.list_unsubscribe,
        "attachments": [asdict(a) for a in email.attachments],
        "body_chars": email.body_chars,
    }


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
