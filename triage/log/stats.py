"""`triage stats`: counts, rates, latency percentiles and correction rate per period, assistant and
template.

Without filters finer than whole days, the daily rollups (kept by the store's triggers) answer;
otherwise grouped queries over the decisions themselves. Both give the same figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from datetime import time as time_of_day
from typing import Any

from sqlalchemy import ColumnElement, Select, String, case, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from triage.config import CostSettings
from triage.log.labels import KINDS, STATUSES, label
from triage.log.query import Filters, filtered
from triage.store.decisions import Store
from triage.store.models import Correction, DecisionRecord
from triage.store.tables import daily_counts, daily_latencies

PERCENTILES = (50, 95, 99)
_NO_RUN = "(no run)"  # the assistant and template of decisions made without a run


@dataclass(slots=True)
class Tally:
    """Counts and latencies of a set of decisions; tallies add up, so any split is a sum of days."""

    statuses: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    after_corrections: Counter[str] = field(default_factory=Counter)
    latencies: Counter[int] = field(default_factory=Counter)
    corrected: int = 0
    agreed: int = 0  # corrections that kept the decision's label
    first_day: str | None = None
    last_day: str | None = None

    def add(self, other: Tally) -> None:
        self.statuses.update(other.statuses)
        self.decisions.update(other.decisions)
        self.after_corrections.update(other.after_corrections)
        self.latencies.update(other.latencies)
        self.corrected += other.corrected
        self.agreed += other.agreed
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
            "agreement_rate": _rate(self.agreed, self.corrected),
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


@dataclass(frozen=True, slots=True)
class TokenTotals:
    """Tokens of the runs made for the matching decisions (a decision without a run has none)."""

    runs: int
    prompt: int
    output: int  # of the runs whose output is known (reported by the model)
    measured: int  # runs whose tokens the model reported; the others' prompts are estimates
    output_runs: int

    @property
    def output_per_run(self) -> float | None:
        return self.output / self.output_runs if self.output_runs else None

    def summary(self, cost: CostSettings | None) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "runs": self.runs,
            "prompt_tokens": self.prompt,
            "output_tokens": self.output,
            "measured_runs": self.measured,
            "estimated_runs": self.runs - self.measured,
            "prompt_tokens_per_run": round(self.prompt / self.runs, 1) if self.runs else None,
            "output_tokens_per_run": None if self.output_per_run is None else round(self.output_per_run, 1),
        }
        if cost is not None and cost.input_per_million is not None and cost.output_per_million is not None:
            spent = self.prompt * cost.input_per_million + self.output * cost.output_per_million
            figures["cost"] = {"amount": round(spent / 1e6, 6), "currency": cost.currency}
        return figures


def token_totals(store: Store, filters: Filters | None = None) -> TokenTotals:
    """Sums over the decisions' own token columns (one aggregate query)."""
    d = DecisionRecord
    query = select(
        func.count(d.prompt_tokens),
        func.coalesce(func.sum(d.prompt_tokens), 0),
        func.coalesce(func.sum(d.output_tokens), 0),
        func.count(case((d.tokens_measured.is_(True), 1))),
        func.count(d.output_tokens),
    ).select_from(d)
    with store.engine.connect() as connection:
        row = connection.execute(filtered(query, store.engine, filters or Filters())).one()
    return TokenTotals(*(int(value) for value in row))


def stats(
    store: Store, filters: Filters, *, by: str = "day", cost: CostSettings | None = None
) -> dict[str, Any]:
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
        found.agreed += n if corrected == label(status, decision) else 0
        found.after_corrections[label(status, decision)] -= n
        found.after_corrections[corrected] += n
    return {**_stats_report(tallies, filters, by), "tokens": token_totals(store, filters).summary(cost)}


class _UtcDay(FunctionElement[Any]):
    """A stored time's UTC day as `YYYY-MM-DD`, what the rollups key on, whatever the session's zone."""

    type = String()
    inherit_cache = True


@compiles(_UtcDay)
def _utc_day(element: _UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"  # SQLite keeps times in UTC


@compiles(_UtcDay, "postgresql")
def _utc_day_postgresql(element: _UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    return f"to_char({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


_DAY = _UtcDay(DecisionRecord.created_at)
_Rows = list[tuple[Any, ...]]


def _rollups_answer(store: Store, filters: Filters) -> bool:
    """The rollups (SQLite only: migration 0014 says why) know days, assistants and templates,
    nothing finer."""
    whole_days = all(
        when is None or when.astimezone(UTC).time() == time_of_day.min
        for when in (filters.since, filters.until)
    )
    coarse = filters == Filters(since=filters.since, until=filters.until)
    return store.engine.dialect.name == "sqlite" and whole_days and coarse


def _rollup_rows(store: Store, filters: Filters) -> tuple[_Rows, _Rows]:
    c, lat = daily_counts.c, daily_latencies.c
    counts = select(c.day, c.assistant_id, c.template_hash, c.status, c.decision, c.n).where(
        c.n != 0, *_day_range(c.day, filters)
    )
    latencies = select(lat.day, lat.assistant_id, lat.template_hash, lat.latency_ms, lat.n).where(
        lat.n != 0, *_day_range(lat.day, filters)
    )
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
    keys: tuple[Any, ...] = (_DAY, DecisionRecord.assistant_id, DecisionRecord.template_hash)
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
    query = filtered(query, store.engine, filters).group_by(*query.selected_columns[:columns])
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
