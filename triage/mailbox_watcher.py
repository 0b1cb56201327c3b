"""One watched mailbox: its catch-up, retries and status, whichever connection serves it.

A MailboxWatcher runs on the thread of the connection serving it (triage.watch_links; imapclient
blocks) and asks the daemon's asyncio loop to triage what it fetched, through a LoopBridge. Per
mailbox the store keeps a watermark: the highest UID below which every message has a row. A watcher
looks for UIDs above it, triages them in ascending batches, and raises the watermark only once a
whole batch is recorded. Failed runs keep their rows (status `error`) and are tried again with
backoff.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from triage.clock import backoff_s, utc_now
from triage.config import ImapSettings, Settings
from triage.errors import CredentialsRefused
from triage.pipeline import Pipeline, Triaged
from triage.run_replies import refused_credentials
from triage.sources import RawMessage
from triage.sources.imap import ImapSource
from triage.store import mailboxes
from triage.store.decisions import Store
from triage.store.routing_log import RoutingJob

if TYPE_CHECKING:  # prometheus_client is there only with the `metrics` extra
    from triage.metrics import Metrics

log = logging.getLogger("triage.watch")

_RETRY_BASE_S = 5.0


@dataclass(frozen=True)
class Target:
    """One mailbox of one account."""

    imap: ImapSettings
    mailbox: str
    label: str  # how logs name it: the mailbox, or account/mailbox when several accounts are watched

    @property
    def account(self) -> str:
        return self.imap.account_name

    @property
    def key(self) -> tuple[str, str]:
        return self.account, self.mailbox


@dataclass
class RetrySchedule:
    """When each failed message of a mailbox may be tried again (in this process's memory)."""

    cap_s: float
    failures: dict[int, int] = field(default_factory=dict)
    due: dict[int, float] = field(default_factory=dict)

    def failed(self, uid: int) -> None:
        self.failures[uid] = self.failures.get(uid, 0) + 1
        self.due[uid] = time.monotonic() + backoff_s(self.failures[uid], _RETRY_BASE_S, self.cap_s)

    def succeeded(self, uid: int) -> None:
        self.failures.pop(uid, None)
        self.due.pop(uid, None)

    def keep_only(self, uids: set[int] | list[int]) -> None:
        for uid in [uid for uid in self.due if uid not in uids]:
            self.succeeded(uid)

    def is_due(self, uid: int) -> bool:
        return self.due.get(uid, 0.0) <= time.monotonic()

    def next_due_in(self) -> float | None:
        if not self.due:
            return None
        return max(0.0, min(self.due.values()) - time.monotonic())


class LoopBridge:
    """What watcher threads ask of the asyncio loop; each call blocks until the loop is done."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pipeline: Pipeline,
        semaphore: asyncio.Semaphore,
        stop: threading.Event,
        inflight: set[asyncio.Task[Triaged | None]],
        metrics: Metrics | None = None,
    ) -> None:
        self.loop = loop
        self.pipeline = pipeline
        self.semaphore = semaphore
        self.stop = stop
        self.inflight = inflight
        self.metrics = metrics  # watch.metrics_port: each recorded decision is counted
        self.fatal: CredentialsRefused | None = None  # stops the daemon: no retry would mend it

    def triage_batch(
        self, raws: list[RawMessage], on_triaged: Callable[[Triaged], None], stop: threading.Event
    ) -> list[Triaged | None]:
        """None for a message not triaged because the daemon, or the connection asking (`stop`), is
        stopping: it stays unclaimed, and runs already started are waited for.

        `on_triaged` is called on the loop's thread as each message is done, not when all are.
        """
        batch = self._batch(raws, on_triaged, stop)
        return asyncio.run_coroutine_threadsafe(batch, self.loop).result()

    def retry_routing(self, account: str, mailbox: str, uidvalidity: int) -> list[RoutingJob]:
        return asyncio.run_coroutine_threadsafe(
            self.pipeline.retry_routing(account, mailbox, uidvalidity), self.loop
        ).result()

    async def _one(
        self, raw: RawMessage, on_triaged: Callable[[Triaged], None], stop: threading.Event
    ) -> Triaged | None:
        async with self.semaphore:
            if self.stop.is_set() or stop.is_set():
                return None
            triaged = await self.pipeline.triage(raw)
        outcome = triaged.outcome
        if outcome is not None and self.metrics is not None:
            self.metrics.decided(outcome)
        if outcome is not None and outcome.status == "error":
            refused = refused_credentials(outcome.error_kind, outcome.error_text)
            if refused is not None and self.fatal is None:
                self.fatal = CredentialsRefused(refused)
                self.stop.set()
        on_triaged(triaged)
        return triaged

    async def _batch(
        self, raws: list[RawMessage], on_triaged: Callable[[Triaged], None], stop: threading.Event
    ) -> list[Triaged | None]:
        tasks = [asyncio.create_task(self._one(raw, on_triaged, stop)) for raw in raws]
        self.inflight.update(tasks)
        try:
            results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self.inflight.difference_update(tasks)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result  # a bug, not a stop: the watcher logs it and the daemon exits
        return [r if isinstance(r, Triaged) else None for r in results]


class MailboxWatcher:
    """One mailbox's catch-up, retries and status; the connections that serve it are its links'."""

    def __init__(self, settings: Settings, target: Target, store: Store, bridge: LoopBridge) -> None:
        self.settings = settings
        self.imap = target.imap
        self.mailbox = target.mailbox
        self.account = target.imap.account_name
        self.label = target.label
        self.store = store
        self.bridge = bridge
        self.retries = RetrySchedule(settings.watch.retry_backoff_cap_s)
        # What `triage status` shows, written with each heartbeat. `failures` counts the link's
        # failed connections, or the runs that failed in a row, whichever is happening now.
        self.status: dict[str, Any] = {"state": "starting", "connected": False, "backlog": 0, "failures": 0}
        self.reconnects = 0  # connections made again after one was lost (for the metrics)
        # (UIDVALIDITY, UIDNEXT) when a shared connection last caught up: unchanged, nothing is new.
        self.seen: tuple[int, int] | None = None
        self.announced = False  # "watching (IDLE)" is logged once, however often it is re-planned

    def set(self, **status: Any) -> None:
        self.status.update(status)

    def open(self, source: ImapSource) -> int:
        """Select the mailbox and note its UIDVALIDITY; return it."""
        uidvalidity = source.select(self.mailbox)
        start_uid = source.highest_uid()
        previous = mailboxes.note(self.store, self.account, self.mailbox, uidvalidity, start_uid=start_uid)
        if previous is None and start_uid:
            log.info("%s: first watch; mail up to UID %d is left to `triage backfill`", self.label, start_uid)
        elif previous is not None and previous != uidvalidity:
            log.warning(
                "%s: UIDVALIDITY changed from %s to %s; mail decided before is recognised by "
                "Message-ID, date and size and not triaged again",
                self.label,
                previous,
                uidvalidity,
            )
        return uidvalidity

    def catch_up(self, source: ImapSource, uidvalidity: int, stop: threading.Event) -> bool:
        """Triage every UID above the watermark, and every failed one whose retry is due; whether
        there was any (mail landing meanwhile was told in replies to its commands, and lost)."""
        self.set(state="catching-up", idle_since=None)
        worked = self._catch_up(source, uidvalidity, stop)
        self.set(state="idle", idle_since=utc_now())
        return worked

    def _catch_up(self, source: ImapSource, uidvalidity: int, stop: threading.Event) -> bool:
        watermark = mailboxes.watermark(self.store, self.account, self.mailbox)
        fresh = source.uids_above(watermark)
        decided = mailboxes.decided_uids(self.store, self.account, self.mailbox, uidvalidity, above=watermark)
        unfinished = mailboxes.unfinished_uids(self.store, self.account, self.mailbox, uidvalidity)
        self.retries.keep_only(unfinished)  # decided meanwhile (by another process): nothing to retry
        due = {uid for uid in unfinished if self.retries.is_due(uid)}
        todo = sorted({uid for uid in fresh if uid not in decided} | due)
        self.set(
            backlog=len(todo) + len(unfinished) - len(due),
            last_seen_uid=max(fresh, default=watermark) or None,
        )
        for job in self.bridge.retry_routing(self.account, self.mailbox, uidvalidity):
            self.bridge.pipeline.apply_mailbox_actions(source, job)
        batch_size = self.imap.fetch_batch
        for start in range(0, len(todo), batch_size):
            if stop.is_set():
                return True
            batch = todo[start : start + batch_size]
            raws = list(source.fetch(batch))
            for gone in due.intersection(batch).difference(raw.uid for raw in raws):
                self.retries.failed(gone)  # expunged since it failed: tried again later, not at once
            results = self.bridge.triage_batch(raws, self._note, stop)
            if any(result is None for result in results):
                return True  # stopping: the rest stays for the next start
            for result in results:
                if result is not None and result.routing is not None:
                    self.bridge.pipeline.apply_mailbox_actions(source, result.routing)
            highest_fresh = max((uid for uid in batch if uid > watermark), default=0)
            if highest_fresh:
                mailboxes.advance_watermark(
                    self.store, self.account, self.mailbox, uidvalidity, highest_fresh
                )
        self.set(backlog=len(mailboxes.unfinished_uids(self.store, self.account, self.mailbox, uidvalidity)))
        return bool(todo)

    def _note(self, result: Triaged) -> None:
        """One message done (called on the loop's thread): the log line, and status at once."""
        self.set(backlog=max(self.status["backlog"] - 1, 0))
        if result.outcome is None:
            return
        outcome, uid = result.outcome, result.raw.uid
        if outcome.status == "error":
            self.retries.failed(uid)
            self.set(
                failures=self.status["failures"] + 1,
                last_error=f"run failed: {outcome.error_kind}: {outcome.error_text}",
            )
            log.warning(
                "%s uid %d: run failed (%s: %s); will retry",
                self.label,
                uid,
                outcome.error_kind,
                outcome.error_text,
            )
        else:
            self.retries.succeeded(uid)
            self.set(failures=0, last_error=None)
            verdict = outcome.decision if outcome.status == "ok" else outcome.status
            how = " (carried over)" if result.carried_over else ""
            log.info("%s uid %d: %s%s - %s", self.label, uid, verdict, how, result.subject or "(no subject)")
            if result.planned:
                log.info("%s uid %d: dry run, would: %s", self.label, uid, "; ".join(result.planned))
        self.set(last_decision_at=utc_now())
