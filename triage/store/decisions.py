"""The decisions repository: claims, outcomes, and decisions carried over to the same mail elsewhere.

A message is *claimed* (its decision row set to `pending`, naming the claiming process) before its
run starts and its outcome is written when the run ends. A claim is held for as long as its process
lives (store.processes); claimed-but-abandoned and failed (`error`) messages are retried by the next
pass; `ok`, `needs-review` and `unparseable` are final. One decision row per message, enforced by a
unique key, so a message is never recorded twice.

Several processes may share a store. Every write that reads first runs in a transaction that holds
the write lock from its start (store.engine; on PostgreSQL, row locks and conditional statements),
and every insert that can race does nothing where the row exists (store.conflicts).

How Store reaches the database, a backfill's batched writes included, is its base, store.transactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, and_, bindparam, func, or_, select, update

from triage.clock import utc_now
from triage.sources import RawMessage
from triage.store import tables, thread_registry
from triage.store.conflicts import inserted, inserted_id
from triage.store.labels import NewLabel, add_label
from triage.store.messages import identity, write_message
from triage.store.models import DecisionRecord
from triage.store.processes import LIVE_OWNERS
from triage.store.thread_registry import ThreadAssignment
from triage.store.transactions import Transactions

if TYPE_CHECKING:
    from triage.message import Email

FINAL_STATUSES = ("ok", "needs-review", "unparseable")
CARRIED_OVER = "carried-over"  # decided_by of mail decided under an earlier UIDVALIDITY (CARRIED_OVER:ID)
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
    "run_thread_id",
    "error_kind",
    "error_text",
    "latency_ms",
    "decided_by",
    "prompt_tokens",
    "output_tokens",
    "tokens_measured",
)
# What a decision carried over to a message's new identity keeps of the original (its routing
# too: the thread and run it led to exist already; not its tokens: no run was paid for it).
_NOT_CARRIED = ("decided_by", "run_thread_id", "prompt_tokens", "output_tokens", "tokens_measured")
_CARRIED_FIELDS = (
    *(name for name in _OUTCOME_FIELDS if name not in _NOT_CARRIED),
    *("assistant_id", "template_hash", "prompt", "request_metadata", "examples"),
    *("routing_status", "routing_thread_id", "routing_run_id", "routing_actions", "routing_error"),
)
_MESSAGES = tables.messages
_DECISIONS = tables.decisions
# The statements every message runs, built once: building one costs more than executing it.
# Columns come from each call's parameters; the bound names below are not column names.
# A claim may be taken from a run that failed, or from a process that is gone (or never said who
# it was, before 0010), or that is this one; never from a live process.
TAKEABLE = or_(
    _DECISIONS.c.status == "error",
    and_(
        _DECISIONS.c.status == "pending",
        or_(
            _DECISIONS.c.claimed_by.is_(None),
            _DECISIONS.c.claimed_by == bindparam("owner"),
            _DECISIONS.c.claimed_by.not_in(LIVE_OWNERS),
        ),
    ),
)
_TAKE_CLAIM = update(_DECISIONS).where(_DECISIONS.c.id == bindparam("decision_pk"), TAKEABLE)
_RECORD_OUTCOME = (
    update(_DECISIONS)
    .where(_DECISIONS.c.id == bindparam("decision_pk"), _DECISIONS.c.claimed_by == bindparam("owner"))
    .values(attempts=_DECISIONS.c.attempts + bindparam("added_attempts"))
)
_NOTE_RUN = (
    update(_DECISIONS)
    .where(_DECISIONS.c.id == bindparam("decision_pk"), _DECISIONS.c.claimed_by == bindparam("owner"))
    .values(run_thread_id=bindparam("thread"), run_id=bindparam("run"))
)
_FORGET_RUN_THREADS = (
    update(_DECISIONS).where(_DECISIONS.c.id.in_(bindparam("pks", expanding=True))).values(run_thread_id=None)
)
_MESSAGE_AND_DECISION = (
    select(
        _MESSAGES.c.id, _DECISIONS.c.id, _DECISIONS.c.status, _DECISIONS.c.run_id, _DECISIONS.c.run_thread_id
    )
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
    examples: list[dict[str, Any]] = field(default_factory=list)  # the labelled decisions offered


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message marked in progress: where its outcome goes."""

    decision_pk: int
    message_pk: int
    account: str
    mailbox: str
    fresh: bool  # the claim made the message's row: nothing refers to it yet
    known_run: tuple[str, str] | None = None  # (thread id, run id) of a run an earlier claim started
    abandoned: bool = False  # taken over from a claim whose process died while it was pending


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
    run_thread_id: str | None = None  # the server thread holding the run, until it is released
    error_kind: str | None = None
    error_text: str | None = None
    attempts: int = 0
    latency_ms: int | None = None
    decided_by: str = (
        "run"  # run | rule:NAME | headers | parser | carried-over:ID | moved:ID | filing:ID | copy:ID
    )
    prompt_tokens: int | None = None  # of a run: reported by the model (tokens_measured), else estimated
    output_tokens: int | None = None
    tokens_measured: bool | None = None


class Store(Transactions):
    """The decision log: claims, outcomes, and the decisions carried over to a message's twins."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        # (account, mailbox, uidvalidity) -> whether messages of another UIDVALIDITY exist.
        self._other_generations: dict[tuple[str, str, int], bool] = {}

    def claim(self, raw: RawMessage, email: Email, claim: Claim) -> Claimed | None:
        """Mark the message in progress; None if its outcome is final or another live process holds
        it (skip it: that process records it, or its claim is free once it is gone).

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
            "examples": claim.examples,
            "claimed_by": self.owner,
            "updated_at": utc_now(),
        }
        with self.writing() as connection:
            known_pk, decision_pk, status, run_id, run_thread_id = _message_and_decision(connection, raw)
            message_pk, made = write_message(connection, raw, email, known_pk)
            if decision_pk is None:
                new = {"message_pk": message_pk, "attempts": 0, "created_at": utc_now(), **values}
                decision_pk = inserted_id(connection, _DECISIONS, new)
                if decision_pk is None:  # another process claimed it a moment ago
                    return None
            elif status in FINAL_STATUSES:
                return None
            else:
                taken = connection.execute(
                    _TAKE_CLAIM, {"decision_pk": decision_pk, "owner": self.owner, **values}
                )
                if not taken.rowcount:
                    return None
            known_run = (run_thread_id, run_id) if run_thread_id and run_id else None
            abandoned = status == "pending"
            return Claimed(decision_pk, message_pk, raw.account, raw.mailbox, made, known_run, abandoned)

    def note_run(self, claimed: Claimed, thread_id: str, run_id: str) -> None:
        """The server acknowledged the claimed message's run: recorded before its result comes."""
        with self.writing() as connection:
            connection.execute(
                _NOTE_RUN,
                {"decision_pk": claimed.decision_pk, "owner": self.owner, "thread": thread_id, "run": run_id},
            )

    def runs_released(self, decision_pks: list[int]) -> None:
        """These decisions' run threads are deleted (or kept by the configuration): forget them."""
        if decision_pks:
            with self.writing() as connection:
                connection.execute(_FORGET_RUN_THREADS, {"pks": decision_pks})

    def unreleased_runs(self, limit: int = 1000) -> list[tuple[int, str, str]]:
        """(decision id, thread id, run id) of decided messages whose run thread a crash left."""
        query = (
            select(_DECISIONS.c.id, _DECISIONS.c.run_thread_id, _DECISIONS.c.run_id)
            .where(_DECISIONS.c.run_thread_id.is_not(None), _DECISIONS.c.status.in_(FINAL_STATUSES))
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [(pk, thread, run) for pk, thread, run in connection.execute(query)]

    def carry_over(self, raw: RawMessage, email: Email) -> Outcome | None:
        """The same mail already decided under an earlier UIDVALIDITY keeps that decision.

        A folder deleted and recreated, or a server migration, gives every message a new identity;
        it is recognised by Message-ID plus date and size, and recorded again without a run.
        """
        if email.message_id is None or not self._has_other_generations(raw):
            return None
        same_date = _MESSAGES.c.sent_at.is_(None) if email.date is None else _MESSAGES.c.sent_at == email.date
        twin_query = (
            select(_DECISIONS.c.id)
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
        with self.reading() as connection:
            twin = connection.execute(twin_query).scalar()
        return None if twin is None else self.carry_from(raw, email, twin, CARRIED_OVER)

    def carry_from(self, raw: RawMessage, email: Email, twin_pk: int, why: str) -> Outcome | None:
        """Record the message with the decision of its twin (the same mail under another identity),
        its thread included: no run, nothing carried out again. `decided_by` is `WHY:TWIN`. Carried
        over to a new UIDVALIDITY, the routing left to do goes with it (the old identity is gone);
        else it stays the twin's. None if the message has a decision already (another process was
        quicker)."""
        with self.writing() as connection:
            if _message_and_decision(connection, raw)[0] is not None:
                return None
            twin = connection.execute(select(_DECISIONS).where(_DECISIONS.c.id == twin_pk)).mappings().one()
            message_pk, _ = write_message(connection, raw, email, None)
            copied = {name: twin[name] for name in _CARRIED_FIELDS}
            if why != CARRIED_OVER and copied["routing_status"] != "done":
                copied["routing_status"] = None  # the twin carries it out; the same mail, once
            now = utc_now()
            carried_by = f"{why}:{twin_pk}"
            carried = {
                "message_pk": message_pk,
                "decided_by": carried_by,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
                **copied,
            }
            if not inserted(connection, _DECISIONS, carried):
                return None  # another process carried it over a moment ago
            thread_registry.carry_membership(connection, twin["message_pk"], message_pk)
            outcome_fields = {name: copied[name] for name in _OUTCOME_FIELDS if name in copied}
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
        label: NewLabel | None = None,
    ) -> bool:
        """Write a claimed message's outcome, and its thread assignment and the label it gives an
        earlier decision (store.labels) in the same transaction.

        Attempts add up across passes. `routing_status` (pending, dry-run) says what is left to do;
        pending routing is claimed by this process with the outcome. False, and nothing written,
        if the claim was lost meanwhile (this process was taken for dead: see store.processes).
        """
        values = {name: getattr(outcome, name) for name in _OUTCOME_FIELDS}
        routing_owner = self.owner if routing_status == "pending" else None
        with self.writing() as connection:
            written = connection.execute(
                _RECORD_OUTCOME,
                {
                    **values,
                    "decision_pk": claimed.decision_pk,
                    "owner": self.owner,
                    "added_attempts": outcome.attempts,
                    "updated_at": utc_now(),
                    "routing_status": routing_status,
                    "routing_claimed_by": routing_owner,
                },
            )
            if not written.rowcount:
                return False
            if thread is not None:
                thread_registry.assign(connection, claimed, *thread)
            if label is not None:
                add_label(connection, label.decision_pk, label.kind, label.decision, note=label.note)
        return True

    def record_unparseable(self, raw: RawMessage, reason: str) -> bool:
        """Record bytes that are not mail at all; False if already recorded."""
        now = utc_now()
        with self.writing() as connection:
            message_pk, decision_pk, *_ = _message_and_decision(connection, raw)
            if decision_pk is not None:
                return False
            recorded = {
                "message_pk": write_message(connection, raw, None, message_pk)[0],
                "status": "unparseable",
                "problem": reason,
                "decided_by": "parser",
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            return inserted(connection, _DECISIONS, recorded)

    def status_counts(self) -> dict[str, int]:
        query = select(DecisionRecord.status, func.count()).group_by(DecisionRecord.status)
        with self._reader() as session:
            return {status: count for status, count in session.execute(query)}


def _message_and_decision(
    connection: Connection, raw: RawMessage
) -> tuple[int | None, int | None, str | None, str | None, str | None]:
    """The message's row id, and its decision's id, status, run id and run thread id (None where
    there is none yet)."""
    row = connection.execute(_MESSAGE_AND_DECISION, identity(raw)).first()
    return (row[0], row[1], row[2], row[3], row[4]) if row is not None else (None,) * 5
