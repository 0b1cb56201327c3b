"""The queries behind `triage log`, `show`, `stats`, `export`, `correct`, `review`, `replay`, `purge`.

Pure data: each function takes a Store and returns values or streams them; the CLI prints. Long
results stream (`yield_per`), so a log of a million rows is never held in memory. Corrections sit
beside the decisions they correct and never change them; the latest correction of a decision counts.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

from pydantic import ValidationError
from sqlalchemy import (
    ColumnElement,
    Connection,
    Label,
    Select,
    column,
    delete,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.orm import Session, aliased

from triage.config import LangGraphSettings, Settings, describe_validation_error
from triage.decision import normalise_kind
from triage.errors import ConfigError, TriageError
from triage.message import Address, Attachment, Email
from triage.pipeline import Pipeline, Prepared, decide_without_run
from triage.prompt import PromptRenderer
from triage.runs import RunsClient, RunsSettings
from triage.sources import RawMessage
from triage.store import Outcome, Store
from triage.store.models import (
    SEARCH_INDEX,
    Base,
    Correction,
    DailyCount,
    DailyLatency,
    DecisionRecord,
    StoredMessage,
)
from triage.threads import ThreadCandidate

LABELS = ("new-task", "existing-thread", "ignore", "needs-review")
STATUSES = ("ok", "needs-review", "error", "unparseable", "pending")
KINDS = ("new-task", "existing-thread", "ignore")
PERCENTILES = (50, 95, 99)
_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_STREAM = {"yield_per": 500}
_NO_RUN = "(no run)"  # the assistant and template of decisions made without a run
_Latest = aliased(Correction, name="latest_correction")
T = TypeVar("T")
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


def search_query(text: str) -> str:
    """Words as FTS5 phrases, all required; `word*` is a prefix. Users never write FTS5 syntax."""
    terms = []
    for word in text.split():
        prefix = word.endswith("*") and len(word) > 1
        word = word.rstrip("*").replace('"', '""')
        if word:
            terms.append(f'"{word}"' + ("*" if prefix else ""))
    if not terms:
        raise TriageError(f"nothing to search for in {text!r}")
    return " ".join(terms)


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
    if filters.thread:
        retargeted = exists().where(Correction.decision_pk == d.id, Correction.thread_id == filters.thread)
        wanted.append(or_(d.thread_id == filters.thread, retargeted))
    if filters.corrected:
        wanted.append(exists().where(Correction.decision_pk == d.id))
    if filters.mailbox:
        wanted.append(m.mailbox == filters.mailbox)
    if filters.sender:
        wanted.append(m.sender.ilike(f"%{_escape_like(filters.sender)}%", escape="\\"))
    uses_message = bool(filters.mailbox or filters.sender)
    if filters.text:
        wanted.append(_text_condition(filters.text, dialect))
        uses_message = uses_message or dialect != "sqlite"
    return wanted, uses_message


def _text_condition(text: str, dialect: str) -> ColumnElement[bool]:
    """FTS5 on SQLite; elsewhere the same four fields through LIKE (slower, but no extension)."""
    if dialect == "sqlite":
        index = table(SEARCH_INDEX, column("rowid"))
        match = literal_column(SEARCH_INDEX).op("MATCH")(search_query(text))
        return DecisionRecord.id.in_(select(index.c.rowid).where(match))
    pattern = f"%{_escape_like(text)}%"
    searched = (
        StoredMessage.subject,
        StoredMessage.sender,
        StoredMessage.body_excerpt,
        DecisionRecord.reason,
    )
    return or_(*(part.ilike(pattern, escape="\\") for part in searched))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered(
    query: Select[*_Columns], store: Store, filters: Filters, *, join_message: bool = False
) -> Select[*_Columns]:
    """Apply the filters, joining the messages table only when something needs it (stats is faster)."""
    wanted, uses_message = _conditions(filters, store.engine.dialect.name)
    if join_message or uses_message:
        query = query.join(StoredMessage, StoredMessage.id == DecisionRecord.message_pk)
    return query.where(*wanted)


def _latest_correction_id() -> Any:
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
    _Latest.decision.label("corrected_decision"),
    _Latest.thread_id.label("corrected_thread_id"),
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
    _Latest.note.label("correction_note"),
    _Latest.author.label("corrected_by"),
    _Latest.created_at.label("corrected_at"),
)
LOG_FIELDS = tuple(c.key for c in _LOG_COLUMNS)
EXPORT_FIELDS = LOG_FIELDS + tuple(c.key for c in _EXPORT_COLUMNS)


def entries(
    store: Store, filters: Filters, *, limit: int | None = None, full: bool = False, newest_first: bool = True
) -> Iterator[dict[str, Any]]:
    """Decisions with their message and latest correction, one dict per decision, streamed."""
    columns = _LOG_COLUMNS + (_EXPORT_COLUMNS if full else ())
    query = _filtered(select(*columns).select_from(DecisionRecord), store, filters, join_message=True)
    query = query.outerjoin(_Latest, _Latest.id == _latest_correction_id())
    query = query.order_by(DecisionRecord.id.desc() if newest_first else DecisionRecord.id)
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as connection:
        for row in connection.execution_options(**_STREAM).execute(query).mappings():
            yield {key: _utc(value) for key, value in row.items()}


def _utc(value: Any) -> Any:
    """Stored times are UTC; SQLite hands them back without the zone."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


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


def _columns(row: Any) -> dict[str, Any]:
    return {attr.key: _utc(getattr(row, attr.key)) for attr in row.__mapper__.column_attrs}


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
        decision = _columns(record)
        # What routing did (threads, IMAP actions), where the store records it; None when nothing.
        routing = {k: v for k, v in decision.items() if k.startswith(("routing_", "routed_"))}
        apart = ("prompt", "raw_response", *routing)
        return {
            "id": decision_id,
            "message": _columns(message),
            "decision": {k: v for k, v in decision.items() if k not in apart},
            "prompt": record.prompt,
            "raw_response": record.raw_response,
            "decided_by": _decided_by(record),
            "routing": routing if any(v not in (None, 0) for v in routing.values()) else None,
            "corrections": [_columns(c) for c in corrections],
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


def correct(
    store: Store,
    decision_id: int,
    decision: str,
    *,
    thread_id: str | None,
    note: str | None,
    author: str | None,
) -> dict[str, Any]:
    """Record a correction beside the decision; the decision row itself is never changed."""
    kind = normalise_kind(decision)
    if kind is None:
        raise TriageError(f"unknown decision {decision!r}: use one of {', '.join(KINDS)}")
    if kind == "existing-thread" and not thread_id:
        raise TriageError("a correction to existing-thread needs --thread THREAD_ID")
    if kind == "ignore" and thread_id:
        raise TriageError("an ignored message belongs to no thread: drop --thread")
    with Session(store.engine, expire_on_commit=False) as session, session.begin():
        if session.get(DecisionRecord, decision_id) is None:
            raise TriageError(f"no decision with id {decision_id}")
        correction = Correction(
            decision_pk=decision_id,
            decision=kind,
            thread_id=thread_id,
            note=note,
            author=author,
            created_at=datetime.now(UTC),
        )
        session.add(correction)
        session.flush()
        return _columns(correction)


def review_queue(store: Store, *, include_all: bool, limit: int) -> list[int]:
    """Ids to walk through: uncorrected needs-review decisions, or with `include_all` recent ones."""
    query = select(DecisionRecord.id).order_by(DecisionRecord.id.desc()).limit(limit)
    if not include_all:
        uncorrected = ~exists().where(Correction.decision_pk == DecisionRecord.id)
        query = query.where(DecisionRecord.status == "needs-review", uncorrected)
    with store.engine.connect() as connection:
        return list(connection.scalars(query))


# --- stats -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """Counts and latencies of a set of decisions; tallies add up, so any split is a sum of days."""

    statuses: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    after_corrections: Counter[str] = field(default_factory=Counter)
    latencies: Counter[int] = field(default_factory=Counter)
    corrected: int = 0
    first_day: str | None = None
    last_day: str | None = None

    def add(self, other: Tally) -> None:
        self.statuses.update(other.statuses)
        self.decisions.update(other.decisions)
        self.after_corrections.update(other.after_corrections)
        self.latencies.update(other.latencies)
        self.corrected += other.corrected
        days = [d for d in (self.first_day, self.last_day, other.first_day, other.last_day) if d]
        self.first_day, self.last_day = (min(days), max(days)) if days else (None, None)

    def summary(self) -> dict[str, Any]:
        total = sum(self.statuses.values())
        return {
            "total": total,
            "statuses": {s: self.statuses[s] for s in STATUSES},
            "decisions": {k: self.decisions[k] for k in KINDS},
            "needs_review_rate": _rate(self.statuses["needs-review"], total),
            "error_rate": _rate(self.statuses["error"], total),
            "latency_ms": percentiles(self.latencies),
            "corrected": self.corrected,
            "correction_rate": _rate(self.corrected, total),
            "after_corrections": {k: v for k, v in sorted(self.after_corrections.items()) if v},
            "first_day": self.first_day,
            "last_day": self.last_day,
        }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def percentiles(histogram: Counter[int]) -> dict[str, int | None]:
    """Nearest-rank p50/p95/p99 of a value -> count histogram (exact, without a sorted copy)."""
    total = sum(histogram.values())
    result: dict[str, int | None] = {f"p{p}": None for p in PERCENTILES}
    if not total:
        return result
    values = sorted(histogram)
    for p in PERCENTILES:
        rank, seen = -(-p * total // 100), 0  # ceil(p% of total), at least 1
        for value in values:
            seen += histogram[value]
            if seen >= max(rank, 1):
                result[f"p{p}"] = value
                break
    return result


def label(status: str, decision: str | None) -> str:
    """A decision's label in the matrices: its decision when `ok`, else its status."""
    return decision if status == "ok" and decision else status


# Latency buckets: (below this many ms, a step of this many ms), a 1-2-5 series that keeps every
# latency to within 2.5 %. `daily_latencies` is filled with the same steps by migration 0003.
LATENCY_STEPS = (
    (100, 1), (200, 2), (500, 5), (1000, 10), (2000, 20), (5000, 50), (10000, 100),
    (20000, 200), (50000, 500), (100000, 1000), (200000, 2000), (500000, 5000),
)  # fmt: skip


def latency_bucket(ms: int) -> int:
    """The latency a histogram keeps: rounded down to its step, under 2.5 % off."""
    for limit, step in LATENCY_STEPS:
        if ms < limit:
            return ms // step * step
    return ms // 10000 * 10000


def stats(store: Store, filters: Filters, *, by: str = "day") -> dict[str, Any]:
    """Counts, rates, latency percentiles and correction rate per period, assistant and template.

    Without filters finer than whole days, the daily rollups answer (a few rows per day, however
    long the log); otherwise grouped queries over the decisions themselves. Both give the same
    figures; latencies are kept to within 2.5 % either way (LATENCY_STEPS).
    """
    tallies: dict[tuple[str, str, str], Tally] = {}

    def tally(key: Sequence[Any]) -> Tally:
        day_text = str(key[0])
        full_key = (day_text, key[1] or _NO_RUN, key[2] or _NO_RUN)
        found = tallies.get(full_key)
        if found is None:
            found = tallies[full_key] = Tally(first_day=day_text, last_day=day_text)
        return found

    rolled = _rollups_answer(store, filters)
    counts, latencies = _rollup_rows(store, filters) if rolled else _scanned_rows(store, filters)
    for *key, status, decision, n in counts:
        found = tally(key)
        found.statuses[status] += n
        if status == "ok" and decision:
            found.decisions[decision] += n
        found.after_corrections[label(status, decision)] += n
    for *key, latency_ms, n in latencies:
        tally(key).latencies[latency_bucket(latency_ms)] += n
    keys = (_DAY, DecisionRecord.assistant_id, DecisionRecord.template_hash)
    for *key, status, decision, corrected, n in _grouped(store, filters, _corrections_query(keys)):
        found = tally(key)
        found.corrected += n
        found.after_corrections[label(status, decision)] -= n
        found.after_corrections[corrected] += n
    return _stats_report(tallies, filters, by)


_DAY = func.date(DecisionRecord.created_at)
_Rows = list[tuple[Any, ...]]


def _rollups_answer(store: Store, filters: Filters) -> bool:
    """The rollups (SQLite only) know days, assistants and templates, nothing finer."""
    whole_days = all(
        when is None or when.astimezone(UTC).time() == time_of_day.min
        for when in (filters.since, filters.until)
    )
    coarse = filters == Filters(since=filters.since, until=filters.until)
    return store.engine.dialect.name == "sqlite" and whole_days and coarse


def _rollup_rows(store: Store, filters: Filters) -> tuple[_Rows, _Rows]:
    counts = select(
        DailyCount.day,
        DailyCount.assistant_id,
        DailyCount.template_hash,
        DailyCount.status,
        DailyCount.decision,
        DailyCount.n,
    ).where(DailyCount.n != 0, *_day_range(DailyCount.day, filters))
    latencies = select(
        DailyLatency.day,
        DailyLatency.assistant_id,
        DailyLatency.template_hash,
        DailyLatency.latency_ms,
        DailyLatency.n,
    ).where(DailyLatency.n != 0, *_day_range(DailyLatency.day, filters))
    with store.engine.connect() as connection:
        return [tuple(r) for r in connection.execute(counts)], [
            tuple(r) for r in connection.execute(latencies)
        ]


def _day_range(day: Any, filters: Filters) -> list[ColumnElement[bool]]:
    bounds = []
    if filters.since is not None:
        bounds.append(day >= filters.since.astimezone(UTC).date().isoformat())
    if filters.until is not None:
        bounds.append(day < filters.until.astimezone(UTC).date().isoformat())
    return bounds


def _scanned_rows(store: Store, filters: Filters) -> tuple[_Rows, _Rows]:
    keys = (_DAY, DecisionRecord.assistant_id, DecisionRecord.template_hash)
    counts = select(*keys, DecisionRecord.status, DecisionRecord.decision, func.count())
    latency = select(*keys, DecisionRecord.latency_ms, func.count()).select_from(DecisionRecord)
    latency = latency.where(DecisionRecord.latency_ms.is_not(None))
    return _grouped(store, filters, counts.select_from(DecisionRecord)), _grouped(store, filters, latency)


def _corrections_query(keys: tuple[Any, ...]) -> Select[Any]:
    """Each corrected decision once, with its latest correction's decision."""
    newer = aliased(Correction)
    latest = select(func.max(newer.id)).where(newer.decision_pk == Correction.decision_pk).scalar_subquery()
    return (
        select(*keys, DecisionRecord.status, DecisionRecord.decision, Correction.decision, func.count())
        .select_from(Correction)
        .join(DecisionRecord, DecisionRecord.id == Correction.decision_pk)
        .where(Correction.id == latest)
    )


def _grouped(store: Store, filters: Filters, query: Select[Any]) -> list[tuple[Any, ...]]:
    columns = len(query.selected_columns) - 1  # group by everything but the count
    query = _filtered(query, store, filters).group_by(*query.selected_columns[:columns])
    with store.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def _stats_report(tallies: dict[tuple[str, str, str], Tally], filters: Filters, by: str) -> dict[str, Any]:
    def rolled(part: Any) -> list[tuple[str, Tally]]:
        groups: dict[str, Tally] = {}
        for key, one in tallies.items():
            groups.setdefault(part(key), Tally()).add(one)
        return sorted(groups.items(), key=lambda item: (item[1].first_day or "", item[0]))

    total = Tally()
    for one in tallies.values():
        total.add(one)
    period = _week if by == "week" else (lambda key: key[0])
    return {
        "since": filters.since,
        "until": filters.until,
        "by": by,
        "total": total.summary(),
        "periods": [{"period": k, **t.summary()} for k, t in rolled(period)],
        "assistants": [{"assistant_id": k, **t.summary()} for k, t in rolled(lambda key: key[1])],
        "templates": [{"template_hash": k, **t.summary()} for k, t in rolled(lambda key: key[2])],
    }


def _week(key: tuple[str, str, str]) -> str:
    """The Monday that starts the day's ISO week."""
    day = date.fromisoformat(key[0])
    return (day - timedelta(days=day.weekday())).isoformat()


# --- replay ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a decision says, in the terms replay compares: a label, and the thread it names."""

    label: str
    thread_id: str | None = None

    @classmethod
    def of(cls, status: str, decision: str | None, thread_id: str | None) -> Verdict:
        name = label(status, decision)
        return cls(name, thread_id if name == "existing-thread" else None)

    def __str__(self) -> str:
        return f"{self.label}:{self.thread_id}" if self.thread_id else self.label


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    template: Path | None = None
    assistant_id: str | None = None
    url: str | None = None
    record: bool = False
    concurrency: int = 8
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Replayed:
    """One decision run again: what was recorded, the latest correction, and the new answer."""

    id: int
    mailbox: str
    uid: int
    subject: str
    recorded: Verdict
    corrected: Verdict | None
    replayed: Verdict
    reason: str | None
    same_prompt: bool | None  # None when the recorded prompt is gone or came from another template

    @property
    def changed(self) -> bool:
        return self.replayed != self.recorded


@dataclass(slots=True)
class ReplayReport:
    template_hash: str
    template_path: str
    assistant_id: str
    url: str
    replayed: int = 0
    recorded_back: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    against_recorded: Counter[tuple[str, str]] = field(default_factory=Counter)
    against_corrections: Counter[tuple[str, str]] = field(default_factory=Counter)
    agree_recorded: int = 0
    agree_corrections: int = 0
    corrected: int = 0
    prompts_compared: int = 0
    prompts_identical: int = 0
    changed: list[Replayed] = field(default_factory=list)

    def add(self, item: Replayed) -> None:
        self.replayed += 1
        self.against_recorded[item.recorded.label, item.replayed.label] += 1
        self.agree_recorded += not item.changed
        if item.corrected is not None:
            self.corrected += 1
            self.against_corrections[item.corrected.label, item.replayed.label] += 1
            self.agree_corrections += item.corrected == item.replayed
        if item.same_prompt is not None:
            self.prompts_compared += 1
            self.prompts_identical += item.same_prompt
        if item.changed:
            self.changed.append(item)


def stored_email(message: StoredMessage) -> Email:
    """The Email a stored message was rendered from, rebuilt from its columns.

    Rows written before migration 0003 lack some fields; their display names, Cc, Reply-To,
    List-Unsubscribe and attachments are then unknown and their prompts may differ slightly.
    """
    body = message.body_excerpt or ""
    return Email(
        subject=message.subject or "",
        from_=_stored_addresses(message.from_addresses, message.sender),
        to=_stored_addresses(message.to_addresses, message.recipients),
        cc=_stored_addresses(message.cc_addresses, None),
        reply_to=_stored_addresses(message.reply_to_addresses, None),
        date=datetime.fromisoformat(message.sent_at_text) if message.sent_at_text else _utc(message.sent_at),
        message_id=message.message_id,
        in_reply_to=message.in_reply_to,
        references=list(message.references or []),
        list_id=message.list_id,
        list_unsubscribe=message.list_unsubscribe,
        auto_submitted=message.auto_submitted,
        precedence=message.precedence,
        body=body,
        body_chars=message.body_chars if message.body_chars is not None else len(body),
        attachments=[Attachment(**a) for a in message.attachments or []],
        warnings=list(message.parse_warnings or []),
    )


def _stored_addresses(pairs: list[list[str]] | None, fallback: str | None) -> list[Address]:
    if pairs is not None:
        return [Address(name, address) for name, address in pairs]
    return [Address(n, a) for n, a in email.utils.getaddresses([fallback or ""]) if n or a]


def _replay_settings(settings: Settings, options: ReplayOptions) -> Settings:
    """The configured run settings with the replay's own server and assistant, validated."""
    overrides = {"url": options.url, "assistant_id": options.assistant_id}
    values = {**settings.langgraph.model_dump(), **{k: v for k, v in overrides.items() if v}}
    try:
        langgraph = LangGraphSettings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, None)) from None
    return settings.model_copy(update={"langgraph": langgraph})


async def replay(
    store: Store,
    settings: Settings,
    filters: Filters,
    options: ReplayOptions,
    *,
    on_replayed: Any = None,
) -> ReplayReport:
    """Render stored messages with a template, run them, and compare with the log and corrections.

    At most `options.concurrency` runs are in flight; rows are read as they are needed. Nothing is
    written unless `options.record`, and then only runs that produced a decision replace the
    recorded one (decided_by='replay'); corrections stay as they were.
    """
    if options.concurrency < 1:
        raise TriageError("--concurrency must be at least 1")
    run_settings = _replay_settings(settings, options)
    renderer = PromptRenderer(options.template or settings.prompt.template)
    report = ReplayReport(
        renderer.template_hash,
        str(renderer.template_path),
        run_settings.langgraph.assistant_id,
        run_settings.langgraph.url,
    )
    async with RunsClient(RunsSettings.of(run_settings.langgraph)) as runs:
        await runs.check_reachable()
        pipeline = Pipeline(run_settings, renderer, runs, store)
        slots = asyncio.Semaphore(options.concurrency)

        async def one(record: DecisionRecord, message: StoredMessage, corrected: Verdict | None) -> None:
            try:
                item = await _replay_one(pipeline, record, message, corrected, keep=options.record)
                report.add(item)
                if on_replayed is not None:
                    on_replayed(item)
            finally:
                slots.release()

        try:
            async with asyncio.TaskGroup() as group:
                for record, message, corrected in _replay_candidates(store, filters, options.limit, report):
                    await slots.acquire()
                    group.create_task(one(record, message, corrected))
        except ExceptionGroup as failed:
            raise _first_user_error(failed) from None
    report.changed.sort(key=lambda item: item.id)
    report.recorded_back = _recorded_back(report, options)
    return report


def _first_user_error(failed: BaseExceptionGroup[Any]) -> BaseException:
    """A template that fails on a stored field is the user's error: one line, not a task group."""
    for error in failed.exceptions:
        found = _first_user_error(error) if isinstance(error, BaseExceptionGroup) else error
        if isinstance(found, TriageError):
            return found
    return failed


def _recorded_back(report: ReplayReport, options: ReplayOptions) -> int:
    if not options.record:
        return 0
    return sum(n for (_, new), n in report.against_recorded.items() if new in LABELS)


def _replay_candidates(
    store: Store, filters: Filters, limit: int | None, report: ReplayReport
) -> Iterator[tuple[DecisionRecord, StoredMessage, Verdict | None]]:
    """Decisions whose message can be rendered again, newest first; the others counted as skipped."""
    query = select(DecisionRecord, StoredMessage, _Latest).select_from(DecisionRecord)
    query = _filtered(query, store, filters, join_message=True)
    query = query.outerjoin(_Latest, _Latest.id == _latest_correction_id()).order_by(DecisionRecord.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with Session(store.engine) as session:
        for record, message, latest in session.execute(query.execution_options(**_STREAM)):
            if record.status in ("unparseable", "pending"):
                report.skipped[record.status] += 1
            elif message.body_excerpt is None:
                report.skipped["purged"] += 1
            else:
                corrected = Verdict.of("ok", latest.decision, latest.thread_id) if latest else None
                yield record, message, corrected


async def _replay_one(
    pipeline: Pipeline,
    record: DecisionRecord,
    message: StoredMessage,
    corrected: Verdict | None,
    *,
    keep: bool,
) -> Replayed:
    """Render, decide and parse through the pipeline's own stages; record it when asked to.

    The threads offered are those recorded with the decision, so a prompt change is compared on
    equal terms; a decision recorded before candidates were kept gets the registry's current ones.
    """
    email_ = stored_email(message)
    raw = RawMessage(message.account, message.mailbox, message.uidvalidity, message.uid, b"")
    offered = (
        None if record.candidates is None else [ThreadCandidate.from_record(c) for c in record.candidates]
    )
    prepared = pipeline.render(raw, email_, offered)
    outcome = decide_without_run(pipeline.settings.routing, email_, prepared.candidates)
    if outcome is None:
        outcome = await pipeline.run(prepared)
    replayed = Verdict.of(outcome.status, outcome.decision, outcome.thread_id)
    if keep and pipeline.store is not None and replayed.label in LABELS:
        _record_replayed(pipeline.store, record.id, pipeline.renderer.template_hash, prepared, outcome)
    same_template = record.prompt is not None and record.template_hash == pipeline.renderer.template_hash
    return Replayed(
        record.id,
        message.mailbox,
        message.uid,
        message.subject or "",
        Verdict.of(record.status, record.decision, record.thread_id),
        corrected,
        replayed,
        outcome.reason or outcome.problem or outcome.error_text,
        record.prompt == prepared.prompt if same_template else None,
    )


def _record_replayed(
    store: Store, decision_id: int, template_hash: str, prepared: Prepared, outcome: Outcome
) -> None:
    """Make the replayed answer the recorded one, with the provenance of what gave it.

    Only the decision is rewritten: threads and mailbox actions are routing's, and replay does not route.
    """
    with Session(store.engine) as session, session.begin():
        record = session.get_one(DecisionRecord, decision_id)
        record.prompt, record.template_hash = prepared.prompt, template_hash
        record.assistant_id = prepared.request["assistant_id"]
        record.request_metadata = prepared.request["metadata"]
        for outcome_field in fields(Outcome):
            if outcome_field.name != "attempts":
                setattr(record, outcome_field.name, getattr(outcome, outcome_field.name))
        record.decided_by = f"replay:{outcome.decided_by}"
        record.attempts += outcome.attempts
        record.updated_at = datetime.now(UTC)


# --- retention ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Purged:
    bodies: int  # messages whose body was removed
    prompts: int  # decisions before the date: their prompt and raw response are gone
    deleted_decisions: int = 0
    deleted_messages: int = 0
    kept: int = 0  # whole rows asked for but kept: other tables (the thread registry) name their message


def purge(store: Store, before: datetime, *, keep_decisions: bool) -> Purged:
    """Forget what mail said before a date: bodies, prompts and raw responses, or whole rows.

    Decisions still pending (a run in flight) are left alone. Whole rows go with their message
    and corrections, except where another table (the thread registry) names the message; those
    keep their decision, without body or prompt. A later backfill over that period would triage
    the deleted messages again.
    """
    old = select(DecisionRecord.id).where(
        DecisionRecord.created_at < before.astimezone(UTC), DecisionRecord.status != "pending"
    )
    with store.engine.begin() as connection:
        bodies = connection.execute(
            update(StoredMessage)
            .where(StoredMessage.id.in_(old.with_only_columns(DecisionRecord.message_pk)))
            .where(StoredMessage.body_excerpt.is_not(None))
            .values(body_excerpt=None)
        ).rowcount
        prompts = connection.execute(
            update(DecisionRecord)
            .where(DecisionRecord.id.in_(old))
            # null(): a plain None would be stored as the JSON text 'null'
            .values(prompt=None, raw_response=null(), updated_at=datetime.now(UTC))
        ).rowcount
        purged = Purged(bodies, prompts) if keep_decisions else _delete_rows(connection, old, bodies, prompts)
    _compact(store)  # after the commit: VACUUM cannot run inside a transaction
    return purged


def _delete_rows(connection: Connection, old: Select[Any], bodies: int, prompts: int) -> Purged:
    """Delete the old decisions, their corrections and messages, unless another table names the message."""
    named = [DecisionRecord.message_pk.not_in(select(c).where(c.is_not(None))) for c in _message_references()]
    doomed = connection.execute(old.add_columns(DecisionRecord.message_pk).where(*named)).all()
    total = connection.execute(select(func.count()).select_from(old.subquery())).scalar_one()
    deleted_decisions = deleted_messages = 0
    for chunk in _chunks(doomed, 500):
        decision_ids, message_ids = [d for d, _ in chunk], [m for _, m in chunk]
        connection.execute(delete(Correction).where(Correction.decision_pk.in_(decision_ids)))
        deleted_decisions += connection.execute(
            delete(DecisionRecord).where(DecisionRecord.id.in_(decision_ids))
        ).rowcount
        deleted_messages += connection.execute(
            delete(StoredMessage).where(StoredMessage.id.in_(message_ids))
        ).rowcount
    return Purged(bodies, prompts, deleted_decisions, deleted_messages, total - len(doomed))


def _message_references() -> list[Any]:
    """Columns of other tables than the log's own that name a message (they must not dangle)."""
    own = {DecisionRecord.__tablename__, Correction.__tablename__}
    return [
        key.parent
        for table in Base.metadata.tables.values()
        if table.name not in own
        for key in table.foreign_keys
        if key.column.table.name == StoredMessage.__tablename__
    ]


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _compact(store: Store) -> None:
    """Make forgotten text really gone: merge the search index, vacuum, empty the WAL."""
    if store.engine.dialect.name != "sqlite":
        return
    with store.engine.connect() as connection:
        # The driver's own connection begins no transaction (the store begins them): each of these
        # statements runs by itself, as VACUUM must.
        driver = connection.connection.dbapi_connection
        assert driver is not None
        driver.execute(f"INSERT INTO {SEARCH_INDEX}({SEARCH_INDEX}) VALUES ('optimize')")
        driver.execute("VACUUM")
        driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
