"""The whole chain for one message, and the bounded-concurrency driver for many.

source -> message -> prompt -> run -> decision -> store. This is the only module that knows every
stage; each stage hands the next a plain value.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

from triage.config import RoutingSettings, Settings
from triage.decision import parse_decision
from triage.message import Email, Unparseable, parse_email
from triage.prompt import PromptRenderer
from triage.routing import Router, apply_mailbox_actions, initial_status, planned, would_do
from triage.rules import first_match
from triage.runs import RunError, RunsClient, build_request
from triage.sources import RawMessage, Source
from triage.sources.imap import ImapSource
from triage.store import Claim, Outcome, Store
from triage.store import routing as routing_log
from triage.store import threads as thread_registry
from triage.store.routing import RoutingJob
from triage.store.threads import ThreadAssignment
from triage.threads import ThreadCandidate, thread_id_for

T = TypeVar("T")
_SOURCE_CHUNK = 16  # messages read from the source per trip to its thread
log = logging.getLogger("triage.pipeline")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A parsed message and the exact request that would be sent for it."""

    raw: RawMessage
    email: Email
    prompt: str
    request: dict[str, Any]
    candidates: list[ThreadCandidate]
    without_run: Outcome | None  # a rule, or headers in `decide` mode, settle it: no run is sent


@dataclass(frozen=True, slots=True)
class Triaged:
    """What happened to one message; `outcome` is None when another pass had already decided it."""

    raw: RawMessage
    subject: str
    outcome: Outcome | None
    carried_over: bool = False  # decided before, under an earlier UIDVALIDITY
    routing: RoutingJob | None = None  # mailbox actions left for whoever holds the connection
    planned: tuple[str, ...] = ()  # in a dry run: what carrying the decision out would have done


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
    """Triage single messages: parse, render, decide (rules, headers or a run), record, route."""

    def __init__(
        self,
        settings: Settings,
        renderer: PromptRenderer,
        runs: RunsClient | None,
        store: Store | None,
        *,
        mailbox_actions: bool = False,
        dry_run: bool = False,
    ) -> None:
        self.settings = settings
        self.renderer = renderer
        self.runs = runs
        self.store = store
        # Flags and moves need an IMAP connection: a file source cannot carry them out.
        self.mailbox_actions = mailbox_actions
        # A dry run decides and records, and carries nothing out: it says what it would have done.
        self.dry_run = dry_run
        self.routing = (
            settings.routing.model_copy(update={"execute": False, "actions": {}})
            if dry_run
            else settings.routing
        )
        self.router = Router(self.routing, runs, store) if runs is not None and store is not None else None
        self._in_flight = InFlight()

    def prepare(self, raw: RawMessage) -> Prepared | Unparseable:
        email = parse_email(raw.raw, self.settings.prompt.max_body_chars)
        if isinstance(email, Unparseable):
            return email
        return self.render(raw, email)

    def render(
        self, raw: RawMessage, email: Email, candidates: list[ThreadCandidate] | None = None
    ) -> Prepared:
        """The prompt and request for an email; the thread registry's candidates unless given."""
        if candidates is None:
            candidates = (
                thread_registry.candidates(
                    self.store, raw.account, email, self.settings.routing.max_candidates, raw.gmail_thread_id
                )
                if self.store is not None
                else []
            )
        prompt = self.renderer.render(email, account=raw.account, mailbox=raw.mailbox, threads=candidates)
        identity = {**raw.identity, "message_id": email.message_id}
        request = build_request(self.settings.langgraph, prompt, identity)
        return Prepared(
            raw, email, prompt, request, candidates, decide_without_run(self.routing, email, candidates)
        )

    def plan_for(self, raw: RawMessage, outcome: Outcome) -> list[str]:
        """What carrying this decision out does, ignoring any dry run."""
        return planned(self.settings.routing, raw, outcome, mailbox_actions=self.mailbox_actions)

    async def triage(self, raw: RawMessage) -> Triaged:
        assert self.runs is not None and self.store is not None, "triage needs a run client and a store"
        email = parse_email(raw.raw, self.settings.prompt.max_body_chars)
        if isinstance(email, Unparseable):
            recorded = self.store.record_unparseable(raw, email.reason)
            outcome = Outcome("unparseable", problem=email.reason, decided_by="parser") if recorded else None
            return Triaged(raw, "", outcome)
        done = self._in_flight.start(raw, email)
        try:
            await self._in_flight.parents_done(raw, email)
            return await self._triage_parsed(raw, self.render(raw, email))
        finally:
            done()

    async def _triage_parsed(self, raw: RawMessage, prepared: Prepared) -> Triaged:
        assert self.store is not None
        carried = self.store.carry_over(raw, prepared.email)
        if carried is not None:
            return Triaged(raw, prepared.email.subject, carried, carried_over=True)
        claim = Claim(
            prepared.prompt,
            self.renderer.template_hash,
            self.settings.langgraph.assistant_id,
            prepared.request["metadata"],
            [candidate.as_record() for candidate in prepared.candidates],
        )
        claimed = self.store.claim(raw, prepared.email, claim)
        if claimed is None:
            return Triaged(raw, prepared.email.subject, None)
        outcome = prepared.without_run or await self.run(prepared)
        status = initial_status(self.routing, outcome, mailbox_actions=self.mailbox_actions)
        self.store.record(claimed, outcome, thread=_assignment(prepared, outcome), routing_status=status)
        routing = await self._route(raw, outcome, status)
        plan = tuple(self.plan_for(raw, outcome)) if self.dry_run else ()
        return Triaged(raw, prepared.email.subject, outcome, routing=routing, planned=plan)

    async def _route(self, raw: RawMessage, outcome: Outcome, status: str | None) -> RoutingJob | None:
        """Carry the decision out; the job comes back when mailbox actions remain."""
        assert self.router is not None and self.store is not None
        if status == "dry-run":
            log.debug("uid %d: routing.execute is off; would %s", raw.uid, would_do(raw, outcome))
        if status != "pending":
            return None
        jobs = routing_log.jobs(self.store, raw.account, raw.mailbox, raw.uidvalidity, [raw.uid])
        return jobs[0] if jobs and await self.router.carry_out(jobs[0]) else None

    async def retry_routing(self, account: str, mailbox: str, uidvalidity: int) -> list[RoutingJob]:
        """Routing left unfinished by an earlier failure or crash; never asks the triage again."""
        assert self.router is not None and self.store is not None
        return [
            job
            for job in routing_log.jobs(self.store, account, mailbox, uidvalidity)
            if await self.router.carry_out(job)
        ]

    def apply_mailbox_actions(self, source: Source, job: RoutingJob) -> None:
        """Blocking: call on the thread that owns the source's connection."""
        assert self.router is not None and self.store is not None
        actions = self.router.actions_for(job)
        if actions is not None and isinstance(source, ImapSource):
            apply_mailbox_actions(self.store, source, job, actions)

    async def run(self, prepared: Prepared) -> Outcome:
        """Ask the assistant; a failed run is an error outcome, never an exception."""
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


class InFlight:
    """Messages being triaged now, so a reply waits for the message it answers.

    In a concurrent backfill a reply and its parent can be in flight together; the reply's thread
    candidates are only right once the parent's decision (and thread) is recorded. A parent is a
    message named by In-Reply-To / References (lower UID, or another mailbox), or an older message
    of the same Gmail thread in the same mailbox: only older ones are waited for, so no two
    messages wait on each other.
    """

    def __init__(self) -> None:
        self._running: dict[str, list[tuple[RawMessage, asyncio.Event]]] = {}

    def start(self, raw: RawMessage, email: Email) -> Callable[[], None]:
        entry = (raw, asyncio.Event())
        keys = [key for key in (email.message_id, _gmail_key(raw)) if key is not None]
        for key in keys:
            self._running.setdefault(key, []).append(entry)

        def done() -> None:
            entry[1].set()
            for key in keys:
                left = [other for other in self._running.get(key, []) if other is not entry]
                if left:
                    self._running[key] = left
                else:
                    self._running.pop(key, None)

        return done

    async def parents_done(self, raw: RawMessage, email: Email) -> None:
        named = {email.in_reply_to, *email.references} - {None, email.message_id}
        for parent_id in named:
            for parent, finished in list(self._running.get(parent_id, ())):  # type: ignore[arg-type]
                if parent.mailbox != raw.mailbox or parent.uid < raw.uid:
                    await finished.wait()
        gmail_key = _gmail_key(raw)
        for sibling, finished in list(self._running.get(gmail_key, ()) if gmail_key else ()):
            if sibling.mailbox == raw.mailbox and sibling.uid < raw.uid:
                await finished.wait()


def _gmail_key(raw: RawMessage) -> str | None:
    if raw.gmail_thread_id is None:
        return None
    return f"gmail-thread {raw.account} {raw.gmail_thread_id}"


def decide_without_run(
    settings: RoutingSettings, email: Email, candidates: list[ThreadCandidate]
) -> Outcome | None:
    """A configured rule, or (in `decide` mode) a reply its headers prove, decides without a run."""
    proved = next((c for c in candidates if c.proved_by_headers), None)
    rule = first_match(settings.rules, email)
    if rule is not None:
        by = f"rule:{rule.name}"
        if rule.decision == "existing-thread":
            if proved is None:
                problem = f"rule {rule.name} says existing-thread but no offered thread is proved by headers"
                return Outcome("needs-review", rule.decision, problem=problem, decided_by=by)
            return Outcome("ok", rule.decision, proved.id, reason=f"rule {rule.name}", decided_by=by)
        title = (rule.title or email.subject or "(no subject)") if rule.decision == "new-task" else None
        return Outcome("ok", rule.decision, title=title, reason=f"rule {rule.name}", decided_by=by)
    if settings.header_match == "decide" and proved is not None:
        reason = "its headers (In-Reply-To / References, or Gmail's thread id) tie it to this thread"
        return Outcome("ok", "existing-thread", proved.id, reason=reason, decided_by="headers")
    return None


def _assignment(prepared: Prepared, outcome: Outcome) -> tuple[Email, ThreadAssignment] | None:
    """A new task starts its thread; a reply joins the chosen one."""
    email = prepared.email
    if outcome.status != "ok":
        return None
    if outcome.decision == "new-task":
        title = outcome.title or email.subject or "(no subject)"
        return email, ThreadAssignment(thread_id_for(prepared.raw), email.message_id, title)
    if outcome.decision == "existing-thread" and outcome.thread_id:
        return email, ThreadAssignment(outcome.thread_id, email.message_id)
    return None


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
    queue between it and the workers keeps memory flat however large the mailbox is. Mailboxes are
    done one after the other: mailbox actions need their mailbox selected.
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
            workers = [asyncio.create_task(work(queue, leftover)) for _ in range(plan.concurrency)]
            try:
                messages = iter(await on_source(source.fetch, todo))
                # A few at a time: each trip to the source's thread costs a thread switch.
                while chunk := await on_source(_take, messages, _SOURCE_CHUNK):
                    for raw in chunk:
                        await queue.put(raw)
                for _ in workers:
                    await queue.put(None)
                await asyncio.gather(*workers)
            finally:
                for worker in workers:
                    worker.cancel()
            for job in leftover:
                await on_source(pipeline.apply_mailbox_actions, source, job)
    summary.elapsed_s = time.monotonic() - started
    return summary


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
