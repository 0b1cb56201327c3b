"""The whole chain for one message: message -> prompt -> run -> decision -> store -> routing.

This is the only module that knows every stage; each stage hands the next a plain value. Driving it
over a mailbox is `triage.backfill`'s job (and the daemon's).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from triage.config import RoutingSettings, Settings
from triage.decision import parse_decision
from triage.errors import RunError, TriageError
from triage.examples import Example, Examples
from triage.filing import Filed, Filing
from triage.in_flight import InFlight
from triage.message import Email, Unparseable, parse_email
from triage.prompt import PromptRenderer
from triage.routing import Router, apply_mailbox_actions, initial_status, may_act, planned, would_do
from triage.rules import first_match
from triage.runs import RunRef, Runs, build_request, run_is_over
from triage.sources import RawMessage, Source
from triage.store import routing_log, thread_registry
from triage.store.decisions import Claim, Claimed, Outcome, Store
from triage.store.moves import COPY, MOVED, copy_of, earlier_decision
from triage.store.routing_log import RoutingJob
from triage.store.thread_registry import ThreadAssignment
from triage.threads import ThreadCandidate, message_key, thread_id_for
from triage.tokens import estimator, tokens_of

log = logging.getLogger("triage.pipeline")
# In the metadata of each stateless run of a claimed message: its identity (threads.message_key).
RUN_MARKER = "triage_decision_of"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A parsed message and the exact request that would be sent for it."""

    raw: RawMessage
    email: Email
    prompt: str
    request: dict[str, Any]
    candidates: list[ThreadCandidate]
    examples: list[Example]
    without_run: Outcome | None  # a rule, or headers in `decide` mode, settle it: no run is sent


@dataclass(frozen=True, slots=True)
class Triaged:
    """What happened to one message; `outcome` is None when another pass had decided it already,
    or another process holds it."""

    raw: RawMessage
    subject: str
    outcome: Outcome | None
    carried_over: bool = False  # decided before: under an earlier UIDVALIDITY, or moved here by triage
    routing: RoutingJob | None = None  # mailbox actions left for whoever holds the connection
    planned: tuple[str, ...] = ()  # in a dry run: what carrying the decision out would have done


class Pipeline:
    """Triage single messages: parse, render, decide (rules, headers or a run), record, route."""

    def __init__(
        self,
        settings: Settings,
        renderer: PromptRenderer,
        runs: Runs | None,
        store: Store | None,
        *,
        mailbox_actions: bool = False,
        dry_run: bool = False,
        dedupe: bool = True,
    ) -> None:
        self.settings = settings
        self.renderer = renderer
        self.runs = runs
        self.store = store
        # Flags and moves need an IMAP connection: a file source cannot carry them out.
        self.mailbox_actions = mailbox_actions
        # A dry run decides and records, and carries nothing out: it says what it would have done.
        self.dry_run = dry_run
        # A copy of mail decided elsewhere in the store keeps that decision, without a run.
        self.dedupe = dedupe
        self.routing = (
            settings.routing.model_copy(update={"execute": False, "actions": {}})
            if dry_run
            else settings.routing
        )
        self.router = (
            Router(self.routing, runs, store, mailbox_actions=mailbox_actions)
            if runs is not None and store is not None
            else None
        )
        self.examples = Examples(store, settings.prompt.max_examples)
        if runs is not None:
            estimator()  # loads the token encoding now, not while the first answer waits to be recorded
        self.filing = Filing(settings)
        self._in_flight = InFlight()
        # Runs whose outcome is recorded but maybe not committed yet: their threads go once it is.
        self._to_release: list[tuple[int, RunRef]] = []

    @property
    def only_records(self) -> bool:
        """Whether triage here records decisions and acts on none (so its writes may be batched)."""
        return not may_act(self.routing, mailbox_actions=self.mailbox_actions)

    def parse(self, raw: RawMessage) -> Email | Unparseable:
        """The message as the prompt sees it (body cut to size, quoted history apart as configured)."""
        options = self.settings.prompt
        return parse_email(
            raw.raw, options.max_body_chars, partial=raw.partial, strip_quoted=options.strip_quoted
        )

    def prepare(self, raw: RawMessage) -> Prepared | Unparseable:
        email = self.parse(raw)
        if isinstance(email, Unparseable):
            return email
        return self.render(raw, email)

    def render(
        self,
        raw: RawMessage,
        email: Email,
        candidates: list[ThreadCandidate] | None = None,
        examples: list[Example] | None = None,
    ) -> Prepared:
        """The prompt and request for an email; the thread registry's candidates and the examples
        chosen now, unless given."""
        if examples is None:
            examples = self.examples.choose(raw.account, email)
        if candidates is None:
            candidates = (
                thread_registry.candidates(
                    self.store, raw.account, email, self.settings.routing.max_candidates, raw.gmail_thread_id
                )
                if self.store is not None
                else []
            )
        prompt = self.renderer.render(
            email, account=raw.account, mailbox=raw.mailbox, threads=candidates, examples=examples
        )
        identity = {**raw.identity, "message_id": email.message_id}
        request = build_request(self.settings.langgraph, prompt, identity)
        without_run = decide_without_run(self.routing, email, candidates)
        return Prepared(raw, email, prompt, request, candidates, examples, without_run)

    def plan_for(self, raw: RawMessage, outcome: Outcome) -> list[str]:
        """What carrying this decision out does, ignoring any dry run."""
        return planned(self.settings.routing, raw, outcome, mailbox_actions=self.mailbox_actions)

    async def triage(self, raw: RawMessage) -> Triaged:
        assert self.runs is not None and self.store is not None, "triage needs a run client and a store"
        email = self.parse(raw)
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
        filed = self._filed(raw, prepared.email)
        twin, why = (
            (filed.carry_from, MOVED) if filed is not None else (self._copy_of(raw, prepared.email), COPY)
        )
        if twin is not None:
            again = self.store.carry_from(raw, prepared.email, twin, why)
            return Triaged(raw, prepared.email.subject, again, carried_over=again is not None)
        claim = Claim(
            prepared.prompt,
            self.renderer.template_hash,
            self.settings.langgraph.assistant_id,
            prepared.request["metadata"],
            [candidate.as_record() for candidate in prepared.candidates],
            [example.as_record() for example in prepared.examples],
        )
        claimed = self.store.claim(raw, prepared.email, claim)
        if claimed is None:
            return Triaged(raw, prepared.email.subject, None)
        users = filed.outcome if filed is not None else None
        outcome = users or prepared.without_run or await self.run(prepared, claimed)
        status = initial_status(self.routing, outcome, mailbox_actions=self.mailbox_actions)
        label = filed.label if filed is not None else None
        if not self.store.record(
            claimed, outcome, thread=_assignment(prepared, outcome), routing_status=status, label=label
        ):
            log.warning("uid %d: taken over by another process while its run was made", raw.uid)
            return Triaged(raw, prepared.email.subject, None)
        if label is not None:
            log.info(
                "uid %d: %s; decision %d labelled %s",
                raw.uid,
                outcome.reason,
                label.decision_pk,
                label.decision,
            )
            self.examples.stale()
        if outcome.status != "error" and outcome.run_thread_id and outcome.run_id:
            self._to_release.append((claimed.decision_pk, RunRef(outcome.run_thread_id, outcome.run_id)))
            if not self.store.batching:
                await self.release_runs()
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

    def _filed(self, raw: RawMessage, email: Email) -> Filed | None:
        """What a sighting of mail that routing may have moved means (triage.filing), if anything."""
        if not self.filing.active or email.message_id is None or self.store is None:
            return None
        earlier = earlier_decision(self.store, raw, email.message_id)
        return None if earlier is None else self.filing.read(raw, email, earlier)

    def _copy_of(self, raw: RawMessage, email: Email) -> int | None:
        if not self.dedupe or email.message_id is None or self.store is None:
            return None
        return copy_of(self.store, raw, email.message_id, email.date)

    def is_copy(self, raw: RawMessage, email: Email) -> bool:
        """Whether the message is a copy of mail decided elsewhere in the store (and deduped)."""
        return self._copy_of(raw, email) is not None

    def leaves_work(self, job: RoutingJob) -> bool:
        """Whether a recorded decision has something to carry out under the current settings."""
        outcome = Outcome(job.status, job.decision, job.thread_id)
        return initial_status(self.routing, outcome, mailbox_actions=self.mailbox_actions) == "pending"

    async def retry_routing(self, account: str, mailbox: str, uidvalidity: int) -> list[RoutingJob]:
        """Routing left unfinished by an earlier failure or crash; never asks the triage again.

        A dry run carries nothing out, so it leaves such routing for a process that does.
        """
        assert self.router is not None and self.store is not None
        if self.dry_run:
            return []
        return [
            job
            for job in routing_log.jobs(self.store, account, mailbox, uidvalidity)
            if await self.router.carry_out(job)
        ]

    def apply_mailbox_actions(self, source: Source, job: RoutingJob) -> None:
        """Blocking: call on the thread that owns the source's connection."""
        assert self.router is not None and self.store is not None
        actions = self.router.actions_for(job)
        if actions is not None and source.can_act:
            apply_mailbox_actions(self.store, source, job, actions)

    async def run(self, prepared: Prepared, claimed: Claimed | None = None) -> Outcome:
        """Ask the assistant; a failed run is an error outcome, never an exception.

        For a claimed message, the run is recorded as soon as the server acknowledges it, and a run
        an earlier claim started (by a process that died, or a pass whose wait failed) is joined,
        not started again.
        """
        assert self.runs is not None
        store, runs = self.store, self.runs
        request = prepared.request
        known = None
        if claimed is not None:
            # Its kept thread is found by this, should a crash lose the acknowledgement.
            marker = {RUN_MARKER: message_key(prepared.raw)}
            request = {**request, "metadata": {**request["metadata"], **marker}}
            known = await self._earlier_run(claimed, marker)
        alive: list[RunRef | None] = [known]

        def on_started(ref: RunRef) -> None:  # only for a claimed message, which has a store
            alive.append(ref)
            assert store is not None and claimed is not None
            store.note_run(claimed, ref.thread_id, ref.run_id)

        durable = on_started if claimed is not None else None
        try:
            result = await runs.run(request, known=known, on_started=durable)
        except RunError as error:
            joinable = None if run_is_over(error) else alive[-1]  # the next pass joins it
            return Outcome(
                "error",
                run_id=joinable.run_id if joinable else None,
                run_thread_id=joinable.thread_id if joinable else None,
                error_kind=error.kind,
                error_text=error.detail,
                attempts=error.attempts,
            )
        decision = parse_decision(result.state, {c.id for c in prepared.candidates})
        tokens = tokens_of(result.state, prepared.prompt)
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
            result.ref.thread_id if result.ref else None,
            attempts=result.attempts,
            latency_ms=result.latency_ms,
            prompt_tokens=tokens.prompt,
            output_tokens=tokens.output,
            tokens_measured=tokens.measured,
        )

    async def _earlier_run(self, claimed: Claimed, marker: dict[str, str]) -> RunRef | None:
        """The run an earlier claim started: recorded, or (when its process died before recording
        it) found on the server by the marker its metadata carries. Any others found are deleted."""
        if claimed.known_run is not None:
            return RunRef(*claimed.known_run)
        if not claimed.abandoned or self.runs is None or self.store is None:
            return None
        found = await self.runs.find_runs(marker)
        if not found:
            return None
        newest, *older = found
        if older:
            await self.runs.release(older)
        self.store.note_run(claimed, newest.thread_id, newest.run_id)
        log.info("decision %d: joining run %s, started before a crash", claimed.decision_pk, newest.run_id)
        return newest

    async def release_runs(self) -> None:
        """Delete the server threads of runs whose outcome is committed (see RunsClient.release).

        Call after the store's batch commits; outside a batch, records commit at once and this
        runs after each. A thread whose deletion fails stays noted and is tried again later.
        """
        if not self._to_release or self.runs is None or self.store is None:
            return
        due, self._to_release = self._to_release, []
        try:
            released = set(await self.runs.release([ref for _, ref in due]))
        except TriageError as error:  # they stay noted on their decisions: the next start tries again
            log.warning("%d run threads not deleted yet: %s", len(due), error)
            return
        self.store.runs_released([pk for pk, ref in due if ref in released])

    async def release_leftover_runs(self) -> None:
        """Threads a crash left between a recorded outcome and their deletion."""
        if self.runs is None or self.store is None:
            return
        self._to_release += [(pk, RunRef(thread, run)) for pk, thread, run in self.store.unreleased_runs()]
        await self.release_runs()


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
