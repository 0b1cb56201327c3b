"""Carry a recorded decision out: LangGraph threads and runs, then actions in the mailbox.

A decision is carried out only by the process holding its routing claim (store.routing_log), so two
processes never take the same step. Every step is also safe to repeat after a crash. A new task's
thread has a deterministic id and is created with `if_exists: do_nothing`; before starting a run on
a thread, the thread's runs are searched for one carrying this message's key, so a crash between
"run started" and "run recorded" never starts a second one. Mailbox actions (flags, labels, a move)
are idempotent on the server.
"""

from __future__ import annotations

import logging
from typing import Any

from triage.config import ActionSettings, RoutingSettings
from triage.errors import RunError, SourceError
from triage.runs import Runs
from triage.sources import RawMessage, Source
from triage.store import routing_log
from triage.store.decisions import Outcome, Store
from triage.store.routing_log import RoutingJob
from triage.threads import message_key, thread_id_for

log = logging.getLogger("triage.routing")

THREAD_DECISIONS = ("new-task", "existing-thread")


def initial_status(settings: RoutingSettings, outcome: Outcome, *, mailbox_actions: bool) -> str | None:
    """What a freshly recorded decision leaves to do: pending, dry-run (execution off) or nothing."""
    on_thread, actions = _thread_and_actions(settings, outcome)
    has_actions = mailbox_actions and actions is not None and not actions.empty
    if (settings.execute and on_thread) or has_actions:
        return "pending"
    return "dry-run" if on_thread else None


def may_act(settings: RoutingSettings, *, mailbox_actions: bool) -> bool:
    """Whether any decision can leave something to do (initial_status `pending`)."""
    has_actions = mailbox_actions and any(not actions.empty for actions in settings.actions.values())
    return settings.execute or has_actions


def _thread_and_actions(settings: RoutingSettings, outcome: Outcome) -> tuple[bool, ActionSettings | None]:
    """Whether the outcome goes to a LangGraph thread, and the mailbox actions configured for it."""
    kind = outcome.decision if outcome.status == "ok" else outcome.status
    on_thread = outcome.status == "ok" and kind in THREAD_DECISIONS
    return on_thread, settings.actions.get(kind)  # type: ignore[call-overload]


def would_do(raw: RawMessage, outcome: Outcome) -> str:
    """What execution would have done, for the log when it is off."""
    if outcome.decision == "new-task":
        return f"create thread {thread_id_for(raw)} and start a run on it"
    return f"start a run on thread {outcome.thread_id}"


def planned(
    settings: RoutingSettings, raw: RawMessage, outcome: Outcome, *, mailbox_actions: bool
) -> list[str]:
    """Every step carrying this decision out takes under these settings, in words (for dry runs)."""
    on_thread, actions = _thread_and_actions(settings, outcome)
    steps = [would_do(raw, outcome)] if settings.execute and on_thread else []
    if mailbox_actions and actions is not None:
        steps += actions.describe()
    return steps


def job_identity(job: RoutingJob) -> RawMessage:
    return RawMessage(job.account, job.mailbox, job.uidvalidity, job.uid, b"")


def job_thread_id(job: RoutingJob) -> str | None:
    """The thread a decision routes to: a new one for a new task, the chosen one for a reply."""
    if job.status != "ok":
        return None
    if job.decision == "new-task":
        return thread_id_for(job_identity(job))
    return job.thread_id if job.decision == "existing-thread" else None


class Router:
    """The LangGraph half of routing; the mailbox half runs where the IMAP connection lives."""

    def __init__(self, settings: RoutingSettings, runs: Runs, store: Store, *, mailbox_actions: bool) -> None:
        self.settings = settings
        self.runs = runs
        self.store = store
        self.mailbox_actions = mailbox_actions  # whether this process's source can flag and move

    def actions_for(self, job: RoutingJob) -> ActionSettings | None:
        actions = self.settings.actions.get(job.decision)  # type: ignore[call-overload]
        return None if actions is None or actions.empty else actions

    async def carry_out(self, job: RoutingJob) -> bool:
        """Threads and runs; True when mailbox actions remain for the caller to do.

        False, and nothing done, where another live process holds the job, or where what is left
        needs a mailbox connection this process lacks. A job with nothing left to do is recorded done.
        """
        thread_id = job_thread_id(job)
        needs_run = self.settings.execute and job.run_id is None and thread_id is not None
        has_actions = self.actions_for(job) is not None
        if not needs_run and has_actions and not self.mailbox_actions:
            return False
        if not routing_log.claim(self.store, job.decision_pk):
            return False
        run_id = None
        if needs_run and thread_id is not None:
            try:
                run_id = await self._start_run(job, thread_id)
            except RunError as error:
                log.warning("uid %d: routing failed (%s); will retry", job.uid, error)
                routing_log.record(
                    self.store, job.decision_pk, "error", thread_id=thread_id, error=str(error)
                )
                return False
            log.info("uid %d: %s -> thread %s, run %s", job.uid, job.decision, thread_id, run_id)
        remaining = self.mailbox_actions and has_actions
        if run_id is not None or not remaining:
            routing_log.record(
                self.store,
                job.decision_pk,
                "pending" if remaining else "done",
                thread_id=thread_id if run_id is not None else None,
                run_id=run_id,
            )
        return remaining

    async def _start_run(self, job: RoutingJob, thread_id: str) -> str:
        key = message_key(job_identity(job))
        if job.decision == "new-task":
            metadata = {
                "account": job.account,
                "mailbox": job.mailbox,
                "message_id": job.message_id,
                "subject": job.subject,
                "from": job.sender,
                "triage_message": key,
            }
            await self.runs.api(
                "POST", "/threads", {"thread_id": thread_id, "metadata": metadata, "if_exists": "do_nothing"}
            )
        existing = await self.runs.api("GET", f"/threads/{thread_id}/runs?limit=1000")
        for run in existing if isinstance(existing, list) else []:
            if isinstance(run, dict) and (run.get("metadata") or {}).get("triage_message") == key:
                return str(run["run_id"])
        run = await self.runs.api("POST", f"/threads/{thread_id}/runs", self._run_body(job, key))
        if not isinstance(run, dict) or "run_id" not in run:
            raise RunError("bad-body", "the new run has no run_id")
        return str(run["run_id"])

    def _run_body(self, job: RoutingJob, key: str) -> dict[str, Any]:
        text = f"From: {job.sender}\nSubject: {job.subject}\nMessage-ID: {job.message_id or ''}\n\n{job.body}"
        return {
            "assistant_id": self.settings.task_assistant_id,
            "input": {"messages": [{"role": "user", "content": text}]},
            "metadata": {
                "triage_message": key,
                "account": job.account,
                "mailbox": job.mailbox,
                "message_id": job.message_id,
                "decision": job.decision,
            },
            "multitask_strategy": self.settings.multitask_strategy,
        }


def apply_mailbox_actions(store: Store, source: Source, job: RoutingJob, actions: ActionSettings) -> None:
    """Flags, labels and a move for one message (blocking: call it on the source's thread)."""
    try:
        done = source.apply_actions(job.uid, actions)
    except SourceError as exc:  # recorded and retried later; the message stays put
        log.warning("uid %d: mailbox actions failed (%s); will retry", job.uid, exc)
        routing_log.record(
            store, job.decision_pk, "error", actions={"done": job.done_actions}, error=str(exc)
        )
        return
    log.info("uid %d: %s", job.uid, "; ".join(done))
    # Where the mail went: its next sighting there is triage's own move, elsewhere the user's.
    moved = {"moved_to": actions.move_to} if actions.move_to and actions.move_to != job.mailbox else {}
    routing_log.record(store, job.decision_pk, "done", actions={"done": done, **moved})
