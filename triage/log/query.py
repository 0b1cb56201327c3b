"""Which decisions a command looks at, and reading them: `log`, `export`, `show`.

Filters name the decisions; their conditions (full-text search included) are shared by every query
of the log. Long results stream (`yield_per`), so a log of a million rows is never held in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVarTuple

from sqlalchemy import ColumnElement, Label, Select, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from triage.errors import TriageError
from triage.log.search import INDEXED, escape_like, text_condition
from triage.store import Store
from triage.store.models import Correction, DecisionRecord, StoredMessage, as_utc

_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
STREAM = {"yield_per": 500}  # execution options of a query whose rows are read as they come
LatestCorrection = aliased(Correction, name="latest_correction")
_Columns = TypeVarTuple("_Columns")


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """`30m`, `2h`, `7d`, `2w` ago, or an ISO date or date-time (UTC unless it names an offset)."""
    if match := _RELATIVE.match(text):
        amount, unit = int(match.group(1)), _UNITS[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TriageError(f"not a date, date-time or age like 2h or 7d: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Filters:
    """Which decisions a command looks at; every filter given must hold."""

    decision: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    sender: str | None = None
    mailbox: str | None = None
    thread: str | None = None
    text: str | None = None
    corrected: bool = False
    below_id: int | None = None  # only older decisions than this one: the next page of a log


def _conditions(filters: Filters, dialect: str) -> tuple[list[ColumnElement[bool]], bool]:
    """The WHERE clauses for the filters, and whether they read the messages table."""
    d, m = DecisionRecord, StoredMessage
    wanted: list[ColumnElement[bool]] = []
    if filters.decision:
        wanted.append(d.decision == filters.decision)
    if filters.status:
        wanted.append(d.status == filters.status)
    if filters.since:
        wanted.append(d.created_at >= filters.since.astimezone(UTC))
    if filters.until:
        wanted.append(d.created_at < filters.until.astimezone(UTC))
    if filters.below_id is not None:
        wanted.append(d.id < filters.below_id)
    # Its own alias: a query that already reads corrections (stats) would correlate it away.
    c = aliased(Correction)
    if filters.thread:
        retargeted = exists().where(c.decision_pk == d.id, c.thread_id == filters.thread)
        wanted.append(or_(d.thread_id == filters.thread, retargeted))
    if filters.corrected:
        wanted.append(exists().where(c.decision_pk == d.id))
    if filters.mailbox:
        wanted.append(m.mailbox == filters.mailbox)
    if filters.sender:
        wanted.append(m.sender.ilike(f"%{escape_like(filters.sender)}%", escape="\\"))
    uses_message = bool(filters.mailbox or filters.sender)
    if filters.text:
        wanted.append(text_condition(filters.text, dialect))
        uses_message = uses_message or dialect not in INDEXED
    return wanted, uses_message


def filtered(
    query: Select[*_Columns], store: Store, filters: Filters, *, join_message: bool = False
) -> Select[*_Columns]:
    """Apply the filters, joining the messages table only when something needs it (stats is faster)."""
    wanted, uses_message = _conditions(filters, store.engine.dialect.name)
    if join_message or uses_message:
        query = query.join(StoredMessage, StoredMessage.id == DecisionRecord.message_pk)
    return query.where(*wanted)


def latest_correction_id() -> Any:
    """The id of a decision's latest correction (corrections are append-only: highest id wins)."""
    newer = aliased(Correction)
    return select(func.max(newer.id)).where(newer.decision_pk == DecisionRecord.id).scalar_subquery()


_LOG_COLUMNS: tuple[Label[Any], ...] = (
    DecisionRecord.id.label("id"),
    DecisionRecord.created_at.label("time"),
    StoredMessage.account.label("account"),
    StoredMessage.mailbox.label("mailbox"),
    StoredMessage.uid.label("uid"),
    StoredMessage.message_id.label("message_id"),
    StoredMessage.sender.label("from"),
    StoredMessage.subject.label("subject"),
    DecisionRecord.decision.label("decision"),
    DecisionRecord.thread_id.label("thread_id"),
    DecisionRecord.status.label("status"),
    DecisionRecord.latency_ms.label("latency_ms"),
    DecisionRecord.reason.label("reason"),
    LatestCorrection.decision.label("corrected_decision"),
    LatestCorrection.thread_id.label("corrected_thread_id"),
)
_EXPORT_COLUMNS: tuple[Label[Any], ...] = (
    StoredMessage.recipients.label("to"),
    StoredMessage.sent_at_text.label("date"),
    StoredMessage.in_reply_to.label("in_reply_to"),
    StoredMessage.list_id.label("list_id"),
    StoredMessage.body_excerpt.label("body"),
    DecisionRecord.title.label("title"),
    DecisionRecord.confidence.label("confidence"),
    DecisionRecord.problem.label("problem"),
    DecisionRecord.decided_by.label("decided_by"),
    DecisionRecord.assistant_id.label("assistant_id"),
    DecisionRecord.template_hash.label("template_hash"),
    DecisionRecord.run_id.label("run_id"),
    DecisionRecord.attempts.label("attempts"),
    DecisionRecord.error_kind.label("error_kind"),
    DecisionRecord.error_text.label("error_text"),
    DecisionRecord.prompt.label("prompt"),
    DecisionRecord.prompt_tokens.label("prompt_tokens"),
    DecisionRecord.output_tokens.label("output_tokens"),
    DecisionRecord.tokens_measured.label("tokens_measured"),
    LatestCorrection.note.label("correction_note"),
    LatestCorrection.author.label("corrected_by"),
    LatestCorrection.created_at.label("corrected_at"),
)
LOG_FIELDS = tuple(c.key for c in _LOG_COLUMNS)
EXPORT_FIELDS = LOG_FIELDS + tuple(c.key for c in _EXPORT_COLUMNS)


def entries(
    store: Store, filters: Filters, *, limit: int | None = None, full: bool = False, newest_first: bool = True
) -> Iterator[dict[str, Any]]:
    """Decisions with their message and latest correction, one dict per decision, streamed."""
    columns = _LOG_COLUMNS + (_EXPORT_COLUMNS if full else ())
    query = filtered(select(*columns).select_from(DecisionRecord), store, filters, join_message=True)
    query = query.outerjoin(LatestCorrection, LatestCorrection.id == latest_correction_id())
    query = query.order_by(DecisionRecord.id.desc() if newest_first else DecisionRecord.id)
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as connection:
        for row in connection.execution_options(**STREAM).execute(query).mappings():
            yield {key: _in_utc(value) for key, value in row.items()}


def _in_utc(value: Any) -> Any:
    """A stored time in UTC (SQLite hands them back without the zone); any other value as it is."""
    return as_utc(value) if isinstance(value, datetime) else value


def resolve(store: Store, ref: str) -> int:
    """A decision id, or the Message-ID of exactly one recorded message (brackets optional)."""
    with Session(store.engine) as session:
        if ref.strip().isdigit():
            if session.get(DecisionRecord, int(ref)) is None:
                raise TriageError(f"no decision with id {ref}")
            return int(ref)
        bare = ref.strip().strip("<>")
        found = list(
            session.scalars(
                select(DecisionRecord.id)
                .join(StoredMessage, StoredMessage.id == DecisionRecord.message_pk)
                .where(StoredMessage.message_id.in_((bare, f"<{bare}>")))
                .order_by(DecisionRecord.id)
            )
        )
    if not found:
        raise TriageError(f"no decision with id or Message-ID {ref!r}")
    if len(found) > 1:
        raise TriageError(f"Message-ID {ref!r} was recorded {len(found)} times (ids {found}): give an id")
    return found[0]


def column_values(row: Any) -> dict[str, Any]:
    """A mapped row's columns by name, its times in UTC."""
    return {attr.key: _in_utc(getattr(row, attr.key)) for attr in row.__mapper__.column_attrs}


def explain(store: Store, decision_id: int) -> dict[str, Any]:
    """Everything known about one decision: what the model saw, what it said, what was done."""
    with Session(store.engine) as session:
        record = session.get(DecisionRecord, decision_id)
        if record is None:
            raise TriageError(f"no decision with id {decision_id}")
        message = session.get_one(StoredMessage, record.message_pk)
        corrections = session.scalars(
            select(Correction).where(Correction.decision_pk == decision_id).order_by(Correction.id)
        )
        decision = column_values(record)
        # What routing did (threads, IMAP actions), where the store records it; None when nothing.
        routing = {k: v for k, v in decision.items() if k.startswith(("routing_", "routed_"))}
        apart = ("prompt", "raw_response", *routing)
        return {
            "id": decision_id,
            "message": column_values(message),
            "decision": {k: v for k, v in decision.items() if k not in apart},
            "prompt": record.prompt,
            "raw_response": record.raw_response,
            "decided_by": _decided_by(record),
            "routing": routing if any(v not in (None, 0) for v in routing.values()) else None,
            "corrections": [column_values(c) for c in corrections],
        }


def _decided_by(record: DecisionRecord) -> str:
    """Which part of triage settled it: the parser, a rule, the headers, a run, or an earlier twin."""
    by, replayed = record.decided_by, record.decided_by.startswith("replay:")
    if replayed:
        by = by.removeprefix("replay:")
    if by == "parser":
        text = "the message parser: the bytes are not an email, no run was made"
    elif by.startswith("carried-over:"):
        text = (
            f"carried over from decision {by.partition(':')[2]} (the same mail under an earlier UIDVALIDITY)"
        )
    elif by.startswith("filing:"):
        text = f"the user's filing: the mail of decision {by.partition(':')[2]} moved by hand, without a run"
    elif by.startswith("moved:"):
        text = f"decision {by.partition(':')[2]}, which moved the mail here, without a run"
    elif by.startswith("rule:"):
        text = f"the configured rule {by.partition(':')[2]!r}, without a run"
    elif by == "headers":
        text = (
            "the headers: In-Reply-To / References (or Gmail's thread id) tie it to the thread, without a run"
        )
    else:
        run = f"run {record.run_id}" if record.run_id else "a run"
        text = f"{run} of assistant {record.assistant_id!r} with template {record.template_hash}"
    return f"a replay: {text}" if replayed else text
