"""`triage watch`: a daemon that never misses a message and never triages one twice.

One MailboxWatcher per watched mailbox (triage.mailbox_watcher); the connections that serve them
run on threads, at most `imap.max_connections` per account (triage.account_watch); runs happen on
the asyncio loop of the main thread, bounded by `langgraph.max_concurrency` across all mailboxes.
The daemon holds each mailbox's lease, registers its process (so its claims live as long as it
does), writes heartbeats, applies the retention, and stops gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from triage.account_watch import AccountWatches
from triage.clock import utc_now
from triage.config import Settings
from triage.errors import ConfigError, MailboxTaken, TriageError
from triage.mailbox_shares import Mailbox, rebalance
from triage.mailbox_watcher import LoopBridge, MailboxWatcher, Target
from triage.pipeline import Pipeline, Triaged
from triage.prompt import PromptRenderer
from triage.run_settings import RunsSettings
from triage.runs import RunsClient
from triage.store import leases, processes
from triage.store.decisions import Store
from triage.store.engine import store_failed
from triage.store.retention import purge

if TYPE_CHECKING:  # prometheus_client is there only with the `metrics` extra
    from triage.metrics import Metrics

log = logging.getLogger("triage.watch")

_LEASE_WAIT_S = 1.0
_PURGE_EVERY_S = 6 * 3600


def _if_writable(write: Any, *args: Any, **kwargs: Any) -> None:
    """A last status write on the way out; a store that failed must not hide why the daemon stops."""
    try:
        write(*args, **kwargs)
    except SQLAlchemyError as exc:
        log.debug("final status not written: %s", exc)


def _metrics(settings: Settings) -> Metrics | None:
    """The daemon's metrics where watch.metrics_port asks for them."""
    if settings.watch.metrics_port is None:
        return None
    if importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError(
            "watch.metrics_port needs the prometheus-client package: pip install 'triage[metrics]'"
        )
    from triage.metrics import Metrics

    return Metrics()


class Daemon:
    """Leases, watchers, the shared run pool, heartbeats and a graceful stop."""

    def __init__(
        self,
        settings: Settings,
        targets: list[Target],
        *,
        wait_for_lease: bool = False,
        dry_run: bool = False,
    ) -> None:
        self.settings = settings
        self.targets = targets
        self.wait_for_lease = wait_for_lease
        self.dry_run = dry_run
        self.owner = leases.this_process()
        self._runs: RunsClient | None = None  # for the heartbeat and the metrics: its adaptive limit
        self._watchers: dict[Mailbox, MailboxWatcher] = {}  # the mailboxes whose leases it holds
        self._daemons = 1  # live daemons on the store, where they divide the mailboxes
        self.metrics = _metrics(settings)  # before anything starts: a missing library is a config error
        self.stop = threading.Event()
        self._inflight: set[asyncio.Task[Triaged | None]] = set()
        self._fatal: TriageError | None = None
        self._lost: list[Mailbox] = []  # leases found lost by the heartbeats, not yet dealt with

    @property
    def watchers(self) -> list[MailboxWatcher]:
        return list(self._watchers.values())

    def run(self) -> int:
        return asyncio.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop, sig)
        renderer = PromptRenderer(self.settings.prompt.template)
        store = Store.open(self.settings.store.url)
        watch = self.settings.watch
        try:
            if not watch.divide:
                try:
                    await self._acquire_leases(store)
                except SQLAlchemyError as exc:
                    raise store_failed(exc) from None
            if self.stop.is_set():
                return 0
            with (
                processes.registered(
                    store,
                    "watch",
                    heartbeat_s=watch.heartbeat_s,
                    lease_s=watch.lease_s,
                    run_concurrency=lambda: self._runs.concurrency if self._runs is not None else None,
                ),
                self._metrics_served(store),
            ):
                return await self._watch(store, renderer)
        finally:
            for target in self.targets:
                _if_writable(leases.release, store, target.account, target.mailbox, self.owner)
            store.close()

    async def _watch(self, store: Store, renderer: PromptRenderer) -> int:
        """Watchers on their threads, runs on this loop, heartbeats, until a stop."""
        loop = asyncio.get_running_loop()
        async with RunsClient(RunsSettings.of(self.settings.langgraph)) as runs:
            self._runs = runs
            pipeline = Pipeline(
                self.settings, renderer, runs, store, mailbox_actions=True, dry_run=self.dry_run
            )
            await pipeline.release_leftover_runs()
            semaphore = asyncio.Semaphore(self.settings.langgraph.max_concurrency)
            bridge = LoopBridge(loop, pipeline, semaphore, self.stop, self._inflight, self.metrics)
            watches = AccountWatches(
                self.settings, writable=self.settings.has_mailbox_actions and not self.dry_run
            )
            if not self.settings.watch.divide:
                self._watchers = {
                    t.key: MailboxWatcher(self.settings, t, store, bridge) for t in self.targets
                }
                watches.apply(self.watchers)
            await self._until_stopped(store, bridge, watches)
            await self._drain()
            await asyncio.to_thread(watches.stop_all)
            for watcher in self.watchers:
                _if_writable(
                    leases.heartbeat,
                    store,
                    watcher.account,
                    watcher.mailbox,
                    self.owner,
                    **watcher.status,
                )
            fatal = self._fatal or bridge.fatal or watches.fatal
            if fatal is not None:
                raise fatal
        log.info("stopped")
        return 0

    @contextlib.contextmanager
    def _metrics_served(self, store: Store) -> Iterator[None]:
        """The metrics endpoint (watch.metrics_port), while the daemon holds its leases."""
        watch = self.settings.watch
        if self.metrics is None or watch.metrics_port is None:
            yield
            return
        from triage.metrics import DaemonCollector

        state = DaemonCollector(store, self.owner, lambda: self._runs, lambda: self.watchers)
        with self.metrics.served(watch.metrics_host, watch.metrics_port, state):
            yield

    def _request_stop(self, sig: signal.Signals) -> None:
        if not self.stop.is_set():
            log.info(
                "%s: finishing in-flight runs (up to %g s), then stopping",
                sig.name,
                self.settings.watch.shutdown_grace_s,
            )
        self.stop.set()

    async def _acquire_leases(self, store: Store) -> None:
        for target in self.targets:
            while True:
                try:
                    leases.acquire(
                        store, target.account, target.mailbox, self.owner, self.settings.watch.lease_s
                    )
                    break
                except MailboxTaken:
                    if not self.wait_for_lease:
                        raise
                    if self.stop.is_set():
                        return
                    await asyncio.sleep(_LEASE_WAIT_S)

    async def _until_stopped(self, store: Store, bridge: LoopBridge, watches: AccountWatches) -> None:
        """Divide the mailboxes where asked (and apply the retention) until a stop is requested or
        a watcher failed; the leases' heartbeats go on beside, even while an account restarts."""
        beats = asyncio.create_task(self._beat_leases(store))
        next_purge = time.monotonic()
        try:
            while not self.stop.is_set():
                if self.settings.store.keep_bodies_days and time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + _PURGE_EVERY_S
                    await self._purge(store, self.settings.store.keep_bodies_days)
                lost, self._lost = self._lost, []
                try:
                    if self.settings.watch.divide:
                        await self._divide(store, bridge, watches, lost)
                    elif lost:
                        taken = f"lost the lease on mailbox {lost[0][1]!r} to another daemon"
                        self._fatal = MailboxTaken(taken)
                except SQLAlchemyError as exc:
                    self._fatal = self._fatal or store_failed(exc)
                self._fatal = self._fatal or watches.fatal
                if self._fatal is not None:
                    self.stop.set()
                    break
                await asyncio.to_thread(self.stop.wait, self.settings.watch.heartbeat_s)
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats

    async def _beat_leases(self, store: Store) -> None:
        """Each held mailbox's health, written with its lease every heartbeat; the leases lost to
        another daemon are collected for the loop above."""
        while not self.stop.is_set():
            try:
                for key, watcher in list(self._watchers.items()):
                    status = watcher.status
                    if not leases.heartbeat(store, watcher.account, watcher.mailbox, self.owner, **status):
                        self._lost.append(key)
            except SQLAlchemyError as exc:
                self._fatal = self._fatal or store_failed(exc)
                self.stop.set()
                return
            await asyncio.to_thread(self.stop.wait, self.settings.watch.heartbeat_s)

    async def _divide(
        self, store: Store, bridge: LoopBridge, watches: AccountWatches, lost: list[Mailbox]
    ) -> None:
        """Hold this daemon's fair share of the mailboxes (triage.mailbox_shares)."""
        watch = self.settings.watch
        for key in lost:
            if (gone := self._watchers.pop(key, None)) is not None:
                log.warning("%s: taken over by another daemon", gone.label)
        daemons = max(processes.live(store, "watch", watch.lease_s), 1)
        change = rebalance(
            [t.key for t in self.targets],
            set(self._watchers),
            leases.held_by_others(store, self.owner, watch.lease_s),
            daemons,
        )
        for key in change.drop:
            del self._watchers[key]
        targets = {t.key: t for t in self.targets}
        for key in change.take:
            try:
                leases.acquire(store, key[0], key[1], self.owner, watch.lease_s)
            except MailboxTaken:
                continue  # another daemon was quicker
            self._watchers[key] = MailboxWatcher(self.settings, targets[key], store, bridge)
        if change.take or change.drop or lost or daemons != self._daemons:
            self._daemons = daemons
            released = await asyncio.to_thread(watches.apply, self.watchers, daemons)
            for account, mailbox in released - set(self._watchers):
                leases.release(store, account, mailbox, self.owner)
            held = ", ".join(w.label for w in self.watchers) or "none"
            log.info("%d daemons on the store; watching %s", daemons, held)

    async def _purge(self, store: Store, days: int) -> None:
        """Forget old bodies and prompts (store.keep_bodies_days); decisions stay."""
        before = utc_now() - timedelta(days=days)
        try:
            purged = await asyncio.to_thread(purge, store, before, keep_decisions=True)
        except SQLAlchemyError as exc:
            self._fatal = self._fatal or store_failed(exc)
            self.stop.set()
            return
        if purged.bodies:
            log.info("retention: forgot the bodies of %d messages older than %d days", purged.bodies, days)

    async def _drain(self) -> None:
        """Let in-flight runs finish within the grace period; cancel the rest (they stay pending)."""
        pending = set(self._inflight)
        if not pending:
            return
        _, unfinished = await asyncio.wait(pending, timeout=self.settings.watch.shutdown_grace_s)
        for task in unfinished:
            task.cancel()
        if unfinished:
            log.warning("%d runs did not finish within the grace period; they stay pending", len(unfinished))
            await asyncio.wait(unfinished)
