"""Drive the pipeline over whole mailboxes: `triage backfill` and `triage retry`.

The source is read on a thread of its own (IMAP clients are not thread-safe) into a bounded queue,
so memory stays flat however large the mailbox is. At most `concurrency` runs are in flight (a
ceiling: the run client's adaptive limit may hold fewer), and as many messages again are parsed,
claimed and rendered meanwhile, so that a run slot which frees starts its next run at once.
Where nothing acts on a decision in this process, records are committed in batches (Store.batched).

Other processes may work on the same mailboxes (a daemon, another backfill): a message one of them
holds is left to it, and waited for at the end of the mailbox, so that when a backfill ends every
message it planned is decided or counted as undecided. Runs that cannot reach the run server stop
the backfill after `langgraph.circuit_breaker` messages in a row, instead of failing every message
that is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from triage.message import Unparseable
from triage.pipeline import Pipeline, Prepared, Triaged
from triage.run_replies import refused_credentials
from triage.sources import RawMessage, Source
from triage.store import mailboxes, routing_log
from triage.store.decisions import Store
from triage.store.routing_log import RoutingJob

T = TypeVar("T")
_SOURCE_CHUNK = 16  # messages read from the source per trip to its thread
# How long a batch of records may stay uncommitted: what a crash would make triage again, and how
# long another writer of the store (a daemon) may wait for it.
_COMMIT_EVERY_S = 0.1
# Messages in hand per run slot: the one whose run is in flight, and the next, ready to go.
_PREPARED_PER_RUN = 2
# How often to look whether messages another process holds are decided (or free, as it died).
_HELD_POLL_S = 0.2


@dataclass(slots=True)
class Summary:
    statuses: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    planned: int = 0
    elapsed_s: float = 0.0
    not_sent: int = 0  # left when the circuit breaker stopped the backfill
    stopped_because: str | None = None

    @property
    def processed(self) -> int:
        return sum(self.statuses.values())

    @property
    def undecided(self) -> int:
        """Planned messages without a final decision: failed runs, and those never sent."""
        return self.statuses["error"] + self.not_sent

    @property
    def rate(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def add(self, triaged: Triaged) -> None:
        outcome = triaged.outcome
        self.statuses[outcome.status if outcome else "skipped"] += 1
        if outcome is not None and outcome.decision and outcome.status == "ok":
            self.decisions[outcome.decision] += 1


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    mailboxes: list[str]
    since: date | None = None
    before: date | None = None
    limit: int | None = None
    concurrency: int = 8
    dry_run: bool = False
    only_uids: dict[str, set[int]] | None = None  # per mailbox: just these (`triage retry`)
    circuit_breaker: int = 5  # stop after this many messages in a row could not reach the server; 0: never
    dedupe: bool = True  # a copy of mail decided elsewhere in the store keeps that decision, no run


@dataclass(slots=True)
class CircuitBreaker:
    """Opens after `threshold` messages in a row whose runs could not connect, after their retries
    (0: never); and at once when the run server refuses triage's credentials (HTTP 401 or 403),
    which no retry mends."""

    threshold: int
    in_a_row: int = 0
    last_error: str = ""
    refused: str = ""

    @property
    def open(self) -> bool:
        return bool(self.refused) or (self.threshold > 0 and self.in_a_row >= self.threshold)

    def note(self, triaged: Triaged) -> None:
        outcome = triaged.outcome
        if outcome is None:
            return
        if outcome.status == "error":
            self.refused = refused_credentials(outcome.error_kind, outcome.error_text) or self.refused
        if outcome.status == "error" and outcome.error_kind == "connect":
            self.in_a_row += 1
            self.last_error = outcome.error_text or ""
        else:
            self.in_a_row = 0

    def reason(self) -> str:
        if self.refused:
            return self.refused
        return f"{self.threshold} runs in a row could not reach the run server ({self.last_error})"


async def backfill(
    source: Source,
    pipeline: Pipeline,
    plan: BackfillPlan,
    *,
    on_planned: Callable[[int], None] = lambda total: None,
    on_triaged: Callable[[Triaged], None] = lambda triaged: None,
    on_prepared: Callable[[Prepared | Unparseable], None] = lambda prepared: None,
) -> Summary:
    """Triage every message not yet decided, at most `plan.concurrency` in flight.

    Mailboxes are done one after the other: mailbox actions need their mailbox selected.
    """
    summary = Summary()
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    remaining = plan.limit
    breaker = CircuitBreaker(plan.circuit_breaker)
    if not plan.dry_run:
        await pipeline.release_leftover_runs()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="source") as source_thread:

        async def on_source(function: Callable[..., T], *args: Any) -> T:
            return await loop.run_in_executor(source_thread, function, *args)

        async def work(queue: asyncio.Queue[RawMessage | None], leftover: list[RoutingJob]) -> None:
            while (raw := await queue.get()) is not None:
                if plan.dry_run:
                    prepared = pipeline.prepare(raw)
                    on_prepared(prepared)
                    summary.statuses[_dry_run_kind(prepared)] += 1
                    continue
                if breaker.open:
                    summary.not_sent += 1
                    continue
                triaged = await pipeline.triage(raw)
                breaker.note(triaged)
                summary.add(triaged)
                on_triaged(triaged)
                if triaged.routing is not None:
                    leftover.append(triaged.routing)

        async def one_pass(uids: list[int], leftover: list[RoutingJob]) -> None:
            """Every message of `uids` through the pipeline, from the source's thread."""
            queue: asyncio.Queue[RawMessage | None] = asyncio.Queue(maxsize=max(plan.concurrency * 2, 16))
            async with _batched_writes(pipeline, plan):
                workers = plan.concurrency * _PREPARED_PER_RUN
                tasks = [asyncio.create_task(work(queue, leftover)) for _ in range(workers)]
                try:
                    messages = iter(await on_source(source.fetch, uids))
                    fed = 0
                    # A few at a time: each trip to the source's thread costs a thread switch.
                    while not breaker.open and (chunk := await on_source(_take, messages, _SOURCE_CHUNK)):
                        fed += len(chunk)
                        for raw in chunk:
                            await queue.put(raw)
                    for _ in tasks:
                        await queue.put(None)
                    await asyncio.gather(*tasks)
                    summary.not_sent += len(uids) - fed if breaker.open else 0
                finally:
                    for task in tasks:
                        task.cancel()

        for mailbox in plan.mailboxes:
            if breaker.open:
                break
            uidvalidity, todo = await _undecided_uids(on_source, source, pipeline.store, mailbox, plan)
            if remaining is not None:
                todo = todo[:remaining]
                remaining -= len(todo)
            summary.planned += len(todo)
            on_planned(summary.planned)
            leftover: list[RoutingJob] = []
            if not plan.dry_run and pipeline.router is not None:
                leftover += await pipeline.retry_routing(source.account, mailbox, uidvalidity)
            await one_pass(todo, leftover)
            store = pipeline.store
            while store is not None and not plan.dry_run and not breaker.open:
                # Messages another live process held: its to decide; or, if it died, ours to run.
                held = await _held_elsewhere_until_released(store, source.account, mailbox, uidvalidity, todo)
                if not held:
                    break
                decided = mailboxes.decided_uids(store, source.account, mailbox, uidvalidity)
                todo = [uid for uid in held if uid not in decided]
                summary.statuses["skipped"] -= len(todo)  # counted when held; counted again below
                await one_pass(todo, leftover)
            for job in leftover:
                await on_source(pipeline.apply_mailbox_actions, source, job)
    if breaker.open:
        summary.stopped_because = breaker.reason()
    summary.elapsed_s = time.monotonic() - started
    return summary


async def _held_elsewhere_until_released(
    store: Store, account: str, mailbox: str, uidvalidity: int, uids: list[int]
) -> list[int]:
    """Those of `uids` another live process held, once none of them is held any more."""
    held = mailboxes.held_elsewhere(store, account, mailbox, uidvalidity, uids)
    waiting = held
    while waiting:
        await asyncio.sleep(_HELD_POLL_S)
        waiting = mailboxes.held_elsewhere(store, account, mailbox, uidvalidity, sorted(waiting))
    return sorted(held)


@contextlib.asynccontextmanager
async def _batched_writes(pipeline: Pipeline, plan: BackfillPlan) -> AsyncIterator[None]:
    """Records share transactions when nothing acts on them here (see Store.batched), committed at
    least every _COMMIT_EVERY_S however slowly runs come back."""
    store = pipeline.store
    if store is None or plan.dry_run or not pipeline.only_records:
        yield
        return
    releasing: set[asyncio.Task[None]] = set()
    with store.batched():
        committer = asyncio.create_task(_commit_every(pipeline, store, _COMMIT_EVERY_S, releasing))
        try:
            yield
        finally:
            committer.cancel()
    await asyncio.gather(*releasing, pipeline.release_runs())


async def _commit_every(
    pipeline: Pipeline, store: Store, seconds: float, releasing: set[asyncio.Task[None]]
) -> None:
    """Commit the batch, then delete the server threads of the runs it made safe, beside the next
    commits (a slow deletion must not hold back the records, nor the acknowledgements of runs)."""
    while True:
        await asyncio.sleep(seconds)
        store.commit_batch()
        task = asyncio.create_task(pipeline.release_runs())
        releasing.add(task)
        task.add_done_callback(releasing.discard)


def _dry_run_kind(prepared: Prepared | Unparseable) -> str:
    if isinstance(prepared, Unparseable):
        return "unparseable"
    return "decided without a run" if prepared.without_run is not None else "to send"


def _take(items: Iterator[T], count: int) -> list[T]:
    return list(itertools.islice(items, count))


async def _undecided_uids(
    on_source: Callable[..., Any], source: Source, store: Store | None, mailbox: str, plan: BackfillPlan
) -> tuple[int, list[int]]:
    uidvalidity: int = await on_source(source.select, mailbox)
    uids: list[int] = await on_source(source.uids, plan.since, plan.before)
    if plan.only_uids is not None:
        uids = [uid for uid in uids if uid in plan.only_uids.get(mailbox, set())]
    if store is None:
        return uidvalidity, uids
    if not plan.dry_run:
        mailboxes.note(store, source.account, mailbox, uidvalidity)
    decided = mailboxes.decided_uids(store, source.account, mailbox, uidvalidity)
    return uidvalidity, [uid for uid in uids if uid not in decided]


async def route_recorded(source: Source, pipeline: Pipeline, names: list[str]) -> Counter[str]:
    """Carry out decisions recorded while carrying out was off (routing status `dry-run`).

    Each is planned again under the current settings: what now has something to do becomes
    pending and is carried out at once, as a fresh decision would be. Counts routing outcomes.
    """
    store, router = pipeline.store, pipeline.router
    assert store is not None and router is not None, "routing needs a run client and a store"
    outcomes: Counter[str] = Counter()
    for mailbox in names:
        uidvalidity = source.select(mailbox)
        recorded = routing_log.jobs(store, source.account, mailbox, uidvalidity, statuses=("dry-run",))
        due = [job.decision_pk for job in recorded if pipeline.leaves_work(job)]
        outcomes["not needed"] += len(recorded) - len(due)
        routing_log.make_pending(store, due)
        for job in await pipeline.retry_routing(source.account, mailbox, uidvalidity):
            pipeline.apply_mailbox_actions(source, job)
        outcomes.update(routing_log.statuses_of(store, due))
    return outcomes
