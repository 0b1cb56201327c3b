"""Drive the pipeline over whole mailboxes: `triage backfill` and `triage retry`.

The source is read on a thread of its own (IMAP clients are not thread-safe) into a bounded queue,
so memory stays flat however large the mailbox is. At most `concurrency` runs are in flight (the
run client's connections), and as many messages again are parsed, claimed and rendered meanwhile,
so that a connection which frees starts its next run at once.
Where nothing acts on a decision in this process, records are committed in batches (Store.batched).
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
from triage.sources import RawMessage, Source
from triage.store import Store
from triage.store.routing import RoutingJob

T = TypeVar("T")
_SOURCE_CHUNK = 16  # messages read from the source per trip to its thread
# How long a batch of records may stay uncommitted: what a crash would make triage again, and how
# long another writer of the store (a daemon) may wait for it.
_COMMIT_EVERY_S = 0.1
# Messages in hand per run slot: the one whose run is in flight, and the next, ready to go.
_PREPARED_PER_RUN = 2


@dataclass(slots=True)
class Summary:
    statuses: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    planned: int = 0
    elapsed_s: float = 0.0

    @property
    def processed(self) -> int:
        return sum(self.statuses.values())

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
                triaged = await pipeline.triage(raw)
                summary.add(triaged)
                on_triaged(triaged)
                if triaged.routing is not None:
                    leftover.append(triaged.routing)

        for mailbox in plan.mailboxes:
            uidvalidity, todo = await _undecided_uids(on_source, source, pipeline.store, mailbox, plan)
            if remaining is not None:
                todo = todo[:remaining]
                remaining -= len(todo)
            summary.planned += len(todo)
            on_planned(summary.planned)
            leftover: list[RoutingJob] = []
            if not plan.dry_run and pipeline.router is not None:
                leftover += await pipeline.retry_routing(source.account, mailbox, uidvalidity)
            queue: asyncio.Queue[RawMessage | None] = asyncio.Queue(maxsize=max(plan.concurrency * 2, 16))
            async with _batched_writes(pipeline, plan):
                workers = plan.concurrency * _PREPARED_PER_RUN
                tasks = [asyncio.create_task(work(queue, leftover)) for _ in range(workers)]
                try:
                    messages = iter(await on_source(source.fetch, todo))
                    # A few at a time: each trip to the source's thread costs a thread switch.
                    while chunk := await on_source(_take, messages, _SOURCE_CHUNK):
                        for raw in chunk:
                            await queue.put(raw)
                    for _ in tasks:
                        await queue.put(None)
                    await asyncio.gather(*tasks)
                finally:
                    for task in tasks:
                        task.cancel()
            for job in leftover:
                await on_source(pipeline.apply_mailbox_actions, source, job)
    summary.elapsed_s = time.monotonic() - started
    return summary


@contextlib.asynccontextmanager
async def _batched_writes(pipeline: Pipeline, plan: BackfillPlan) -> AsyncIterator[None]:
    """Records share transactions when nothing acts on them here (see Store.batched), committed at
    least every _COMMIT_EVERY_S however slowly runs come back."""
    store = pipeline.store
    if store is None or plan.dry_run or not pipeline.only_records:
        yield
        return
    with store.batched():
        committer = asyncio.create_task(_commit_every(store, _COMMIT_EVERY_S))
        try:
            yield
        finally:
            committer.cancel()


async def _commit_every(store: Store, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        store.commit_batch()


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
        store.note_mailbox(source.account, mailbox, uidvalidity)
    decided = store.decided_uids(source.account, mailbox, uidvalidity)
    return uidvalidity, [uid for uid in uids if uid not in decided]
