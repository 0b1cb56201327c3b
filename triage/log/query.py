"""Which decisions a command looks at, and listing them: `log` and `export`.

Filters name the decisions; their conditions (full-text search included) are shared by every query
of the log. Long results stream (`yield_per`), so a log of a million rows is never held in memory.
SQLAlchemy Core over store/tables.py only: `triage log` starts without loading the ORM (about
100 ms of its start-up).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVarTuple

from sqlalchemy import ColumnElement, Engine, Label, Select, exists, func, or_, select

from triage.errors import TriageError
from triage.log.search import INDEXED, escape_like, text_condition
from triage.store.tables import as_utc, corrections, decisions, messages

_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
STREAM = {"yield_per": 500}  # execution options of a query whose rows are read as they come
LATEST_CORRECTION = corrections.alias("latest_correction")
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
    d, m = decisions.c, messages.c
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
    c = corrections.alias().c
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
    query: Select[*_Columns], engine: Engine, filters: Filters, *, join_message: bool = False
) -> Select[*_Columns]:
    """Apply the filters, joining the messages table only when something needs it (stats is faster)."""
    wanted, uses_message = _conditions(filters, engine.dialect.name)
    if join_message or uses_message:
        query = query.join(messages, messages.c.id == decisions.c.message_pk)
    return query.where(*wanted)


def latest_correction_id() -> Any:
    """The id of a decision's latest correction (corrections are append-only: highest id wins)."""
    newer = corrections.alias().c
    return select(func.max(newer.id)).where(newer.decision_pk == decisions.c.id).scalar_subquery()


_LOG_COLUMNS: tuple[Label[Any], ...] = (
    decisions.c.id.label("id"),
    decisions.c.created_at.label("time"),
    messages.c.account.label("account"),
    messages.c.mailbox.label("mailbox"),
    messages.c.uid.label("uid"),
    messages.c.message_id.label("message_id"),
    messages.c.sender.label("from"),
    messages.c.subject.label("subject"),
    decisions.c.decision.label("decision"),
    decisions.c.thread_id.label("thread_id"),
    decisions.c.status.label("status"),
    decisions.c.latency_ms.label("latency_ms"),
    decisions.c.reason.label("reason"),
    LATEST_CORRECTION.c.decision.label("corrected_decision"),
    LATEST_CORRECTION.c.thread_id.label("corrected_thread_id"),
)
_EXPORT_COLUMNS: tuple[Label[Any], ...] = (
    messages.c.recipients.label("to"),
    messages.c.sent_at_text.label("date"),
    messages.c.in_reply_to.label("in_reply_to"),
    messages.c.list_id.label("list_id"),
    messages.c.body_excerpt.label("body"),
    decisions.c.title.label("title"),
    decisions.c.confidence.label("confidence"),
    decisions.c.problem.label("problem"),
    decisions.c.decided_by.label("decided_by"),
    decisions.c.assistant_id.label("assistant_id"),
    decisions.c.template_hash.label("template_hash"),
    decisions.c.run_id.label("run_id"),
    decisions.c.attempts.label("attempts"),
    decisions.c.error_kind.label("error_kind"),
    decisions.c.error_text.label("error_text"),
    decisions.c.prompt.label("prompt"),
    decisions.c.prompt_tokens.label("prompt_tokens"),
    decisions.c.output_tokens.label("output_tokens"),
    decisions.c.tokens_measured.label("tokens_measured"),
    LATEST_CORRECTION.c.note.label("correction_note"),
    LATEST_CORRECTION.c.author.label("corrected_by"),
    LATEST_CORRECTION.c.created_at.label("corrected_at"),
)
LOG_FIELDS = tuple(c.key for c in _LOG_COLUMNS)
EXPORT_FIELDS = LOG_FIELDS + tuple(c.key for c in _EXPORT_COLUMNS)


def entries(
    engine: Engine,
    filters: Filters,
    *,
    limit: int | None = None,
    full: bool = False,
    newest_first: bool = True,
) -> Iterator[dict[str, Any]]:
    """Decisions with their message and latest correction, one dict per decision, streamed."""
    columns = _LOG_COLUMNS + (_EXPORT_COLUMNS if full else ())
    query = filtered(select(*columns).select_from(decisions), engine, filters, join_message=True)
    query = query.outerjoin(LATEST_CORRECTION, LATEST_CORRECTION.c.id == latest_correction_id())
    query = query.order_by(decisions.c.id.desc() if newest_first else decisions.c.id)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as connection:
        for row in connection.execution_options(**STREAM).execute(query).mappings():
            yield {key: in_utc(value) for key, value in row.items()}


def in_utc(value: Any) -> Any:
    """A stored time in UTC (SQLite hands them back without the zone); any other value as it is."""
    return as_utc(value) if isinstance(value, datetime) else value
