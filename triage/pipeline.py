"""The whole chain for one message, and the bounded-concurrency driver for many.

source -> message -> prompt -> run -> decision -> store. This is the only module that knows every
stage; each stage hands the next a plain value.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from triage.config import Settings
from triage.decision import parse_decision
from triage.message import Email, Unparseable, parse_email
from triage.prompt import PromptRenderer, ThreadCandidate
from triage.runs import RunError, RunsClient, build_request
from triage.sources import RawMessage, Source
from triage.store import Claim, Outcome, Store

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A parsed message and the exact request that would be sent for it."""

    raw: RawMessage
    email: Email
    prompt: str
    request: dict[str, Any]
    candidates: list[ThreadCandidate]


@dataclass(frozen=True, slots=True)
class Triaged:
    """What happened to one message; `outcome` is None when another pass had already decided it."""

    raw: RawMessage
    subject: str
    outcome: Outcome | None
    carried_over: bool = False  # decided before, under an earlier UIDVALIDITY


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


class Pipeline:
    """Triage single messages: parse, render, run, parse the answer, record."""

    def __init__(
        self, settings: Settings, renderer: PromptRenderer, runs: RunsClient | None, store: Store | None
    ) -> None:
        self.settings = settings
        self.renderer = renderer
        self.runs = runs
        self.store = store

    def prepare(self, raw: RawMessage) -> Prepared | Unparseable:
        email = parse_email(raw.raw, self.settings.prompt.max_body_chars)
        if isinstance(email, Unparseable):
            return email
        candidates: list[ThreadCandidate] = []
        prompt = self.renderer.render(email, account=raw.account, mailbox=raw.mailbox, threads=candidates)
        identity = {**raw.identity, "message_id": email.message_id}
        request = build_request(self.settings.langgraph, prompt, identity)
        return Prepared(raw, email, prompt, request, candidates)

    async def triage(self, raw: RawMessage) -> Triaged:
        assert self.runs is not None and self.store is not None, "triage needs a run client and a store"
        prepared = self.prepare(raw)
        if isinstance(prepared, Unparseable):
            recorded = self.store.record_unparseable(raw, prepared.reason)
            outcome = Outcome("unparseable", problem=prepared.reason) if recorded else None
            return Triaged(raw, "", outcome)
        carried = self.store.carry_over(raw, prepared.email)
        if carried is not None:
            return Triaged(raw, prepared.email.subject, carried, carried_over=True)
        claim = Claim(
            prepared.prompt,
            self.renderer.template_hash,
            self.settings.langgraph.assistant_id,
            prepared.request["metadata"],
        )
        decision_pk = self.store.claim(raw, prepared.email, claim)
        if decision_pk is None:
            return Triaged(raw, prepared.email.subject, None)
        outcome = await self._run(prepared)
        self.store.record(decision_pk, outcome)
        return Triaged(raw, prepared.email.subject, outcome)

    async def _run(self, prepared: Prepared) -> Outcome:
        assert self.runs is not None
        try:
            result = await self.runs.wait(prepared.request)
        except RunError as error:
            return Outcome("error", error_kind=error.kind, error_text=error.detail, attempts=error.attempts)
        decision = parse_decision(result.state, {c.id for c in prepared.candidates})
        return Outcome(
            decision.status,
            decision.decision,
            decision.thread_id,
            decision.title,
            decision.reason,
            decision.confidence,
            decision.problem,
            result.state,
            result.run_id,
            attempts=result.attempts,
            latency_ms=result.latency_ms,
        )


async def backfill(
    source: Source,
    pipeline: Pipeline,
    plan: BackfillPlan,
    *,
    on_planned: Callable[[int], None] = lambda total: None,
    on_triaged: Callable[[Triaged], None] = lambda triaged: None,
    on_prepared: Callable[[Prepared | Unparseable], None] = lambda prepared: None,
) -> Summary:
    """Triage every message not yet decided, at most `plan.concurrency` runs in flight.

    IMAP clients are not thread-safe, so every source call runs on one dedicated thread; a bounded
    queue between it and the workers keeps memory flat however large the mailbox is.
    """
    summary = Summary()
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[RawMessage | None] = asyncio.Queue(maxsize=max(plan.concurrency * 2, 16))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="source") as source_thread:

        async def on_source(function: Callable[..., T], *args: Any) -> T:
            return await loop.run_in_executor(source_thread, function, *args)

        async def produce() -> None:
            remaining = plan.limit
            for mailbox in plan.mailboxes:
                todo = await _undecided_uids(on_source, source, pipeline.store, mailbox, plan)
                if remaining is not None:
                    todo = todo[:remaining]
                    remaining -= len(todo)
                summary.planned += len(todo)
                on_planned(summary.planned)
                messages = iter(await on_source(source.fetch, todo))
                while (raw := await on_source(next, messages, None)) is not None:
                    await queue.put(raw)

        async def work() -> None:
            while (raw := await queue.get()) is not None:
                if plan.dry_run:
                    on_prepared(pipeline.prepare(raw))
                    summary.statuses["dry-run"] += 1
                else:
                    triaged = await pipeline.triage(raw)
                    summary.add(triaged)
                    on_triaged(triaged)

        workers = [asyncio.create_task(work()) for _ in range(plan.concurrency)]
        try:
            await produce()
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
    summary.elapsed_s = time.monotonic() - started
    return summary


async def _undecided_uids(
    on_source: Callable[..., Any], source: Source, store: Store | None, mailbox: str, plan: BackfillPlan
) -> list[int]:
    uidvalidity: int = await on_source(source.select, mailbox)
    uids: list[int] = await on_source(source.uids, plan.since, plan.before)
    if plan.only_uids is not None:
        uids = [uid for uid in uids if uid in plan.only_uids.get(mailbox, set())]
    if store is None:
        return uids
    if not plan.dry_run:
        store.note_mailbox(source.account, mailbox, uidvalidity)
    decided = store.decided_uids(source.account, mailbox, uidvalidity)
    return [uid for uid in uids if uid not in decided]
