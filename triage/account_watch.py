"""One account's watched mailboxes over at most `imap.max_connections` connections.

Where the plan depends on NOTIFY (more mailboxes than connections), one connection asks the server
first and logs out; then the links of the plan (triage.watch_plan) run, each on a thread.
AccountWatches keeps one AccountWatch running per account, and starts it again when the daemon's
mailboxes of that account change (daemons dividing the mailboxes: triage.mailbox_shares).
"""

from __future__ import annotations

import logging
import threading

from triage.config import ImapSettings, Settings
from triage.errors import TriageError
from triage.mailbox_shares import connections_each
from triage.mailbox_watcher import MailboxWatcher
from triage.shared_mailboxes import SharedMailboxes
from triage.watch_links import CapabilityProbe, Link, MailboxLink, NotifyLink, SharedLink
from triage.watch_plan import LinkPlan, needs_capabilities, plan_links

log = logging.getLogger("triage.watch")


class AccountWatch:
    """An account's links, planned within its budget; planned again, with fewer connections, when
    the server refuses one past what it allows while others are up."""

    def __init__(
        self,
        settings: Settings,
        imap: ImapSettings,
        watchers: list[MailboxWatcher],
        *,
        budget: int,
        writable: bool,
        logged_in: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.imap = imap
        # Whether the account ever logged in: kept across rounds, and across restarts by AccountWatches.
        self.logged_in = logged_in or threading.Event()
        self.watchers = {watcher.mailbox: watcher for watcher in watchers}
        self.budget = budget
        self.stop = threading.Event()  # for good: set through halt()
        self.writable = writable
        self.label = imap.account_name
        self.links: list[Link] = []
        self.fatal: TriageError | None = None
        self._round = threading.Event()  # ends the current links: a stop, a failure, a new plan
        self._lowered: int | None = None  # the connections the server allowed, when it refused more
        self._told = False  # the first refusal is logged as a warning, the ones after as debug
        self._lock = threading.Lock()

    def halt(self) -> None:
        self.stop.set()
        self._round.set()

    def run(self) -> None:
        """Thread body: plan, run the links; again with fewer connections after a refusal, and
        with the whole budget again `watch.reconnect_backoff_cap_s` later."""
        watch = self.settings.watch
        notify: bool | None = None
        while not self.stop.is_set():
            budget = self._lowered or self.budget
            if notify is None and needs_capabilities(list(self.watchers), budget, watch.mode):
                probe = CapabilityProbe(self.label, self.settings, self.imap, self.stop, self.logged_in)
                probe.run()
                if probe.fatal is not None or self.stop.is_set():
                    self.fatal = probe.fatal
                    return
                notify = probe.notify
            plan = plan_links(list(self.watchers), budget, watch.mode, bool(notify))
            if plan.shared:
                log.info(
                    "%s: %d mailboxes over %s",
                    self.label,
                    len(self.watchers),
                    plan.describe(watch.poll_interval_s),
                )
            self._run_round(plan)
            if self.fatal is not None:
                return

    def _run_round(self, plan: LinkPlan) -> None:
        with self._lock:
            self._round = threading.Event()
            if self.stop.is_set():
                return
            self.links = self._links(plan)
        threads = [
            threading.Thread(target=link.run, name=f"watch {link.label}", daemon=True) for link in self.links
        ]
        for thread in threads:
            thread.start()
        lowered = self._lowered is not None
        if not self._round.wait(self.settings.watch.reconnect_backoff_cap_s if lowered else None):
            log.debug("%s: trying %d connections again", self.label, self.budget)
            self._lowered = None
            self._round.set()
        for thread in threads:
            thread.join()
        self.fatal = next((link.fatal for link in self.links if link.fatal is not None), None)

    def _refused(self) -> bool:
        """A link's login was refused for the connection limit: plan with the connections that
        are up, where any are (True: the link ends; else it retries on its own)."""
        with self._lock:
            up = sum(1 for link in self.links if link.up)
            if up == 0 or self._round.is_set():
                return False
            self._lowered = up
            self._round.set()
            told, self._told = self._told, True
        log.log(
            logging.DEBUG if told else logging.WARNING,
            "%s: the server refused a connection past %d (imap.max_connections = %d); watching with "
            "those, trying %d again every %g s",
            self.label,
            up,
            self.imap.max_connections,
            self.budget,
            self.settings.watch.reconnect_backoff_cap_s,
        )
        return True

    def _links(self, plan: LinkPlan) -> list[Link]:
        links: list[Link] = [
            MailboxLink(self.watchers[name], self._round, self.logged_in, writable=self.writable)
            for name in plan.own
        ]
        if plan.shared:
            shared = SharedMailboxes(
                [self.watchers[name] for name in plan.shared], self.settings.watch.poll_interval_s
            )
            if plan.notify:
                label = f"{self.label} (NOTIFY)"
                links.append(NotifyLink(label, shared, self.settings, self.imap, self._round, self.logged_in))
            links += [
                SharedLink(
                    f"{self.label} (shared {n + 1})",
                    shared,
                    self.settings,
                    self.imap,
                    self._round,
                    self.logged_in,
                    writable=self.writable,
                )
                for n in range(plan.fetchers)
            ]
        for link in links:
            link.on_refused = self._refused
        return links


class AccountWatches:
    """The account watches running now, one per account, each on a thread."""

    def __init__(self, settings: Settings, *, writable: bool) -> None:
        self.settings = settings
        self.writable = writable
        self._running: dict[str, tuple[AccountWatch, threading.Thread]] = {}
        self._logged_in: dict[str, threading.Event] = {}  # per account, across restarts
        self._failed: TriageError | None = None  # of an account watch stopped since

    @property
    def fatal(self) -> TriageError | None:
        running = (watch.fatal for watch, _ in self._running.values() if watch.fatal is not None)
        return self._failed or next(running, None)

    def apply(self, watchers: list[MailboxWatcher], daemons: int = 1) -> set[tuple[str, str]]:
        """Watch exactly these mailboxes, each account within its part of imap.max_connections
        among `daemons` daemons; return the (account, mailbox) no longer watched.

        An account whose mailboxes or budget change is stopped and started again (its links wait
        for their current batch); the others run on untouched. Blocks while one stops.
        """
        wanted: dict[str, list[MailboxWatcher]] = {}
        for watcher in watchers:
            wanted.setdefault(watcher.account, []).append(watcher)
        dropped: set[tuple[str, str]] = set()
        for account in set(self._running) | set(wanted):
            group = wanted.get(account, [])
            running = self._running.get(account)
            limit = connections_each(group[0].imap.max_connections, daemons) if group else 0
            if running is not None:
                if set(running[0].watchers) == {w.mailbox for w in group} and running[0].budget == limit:
                    continue
                self._stop(account)
                dropped |= {(account, name) for name in running[0].watchers} - {
                    (account, w.mailbox) for w in group
                }
            if group:
                watch = AccountWatch(
                    self.settings,
                    group[0].imap,
                    group,
                    budget=limit,
                    writable=self.writable,
                    logged_in=self._logged_in.setdefault(account, threading.Event()),
                )
                thread = threading.Thread(target=watch.run, name=f"watch {watch.label}", daemon=True)
                self._running[account] = (watch, thread)
                thread.start()
        return dropped

    def stop_all(self) -> None:
        for account in list(self._running):
            self._stop(account)

    def _stop(self, account: str) -> None:
        """Stop an account's links and wait for them: they start no new run, and finish the runs
        they started (within langgraph.timeout_s), so its mailboxes are never served twice."""
        watch, thread = self._running.pop(account)
        watch.halt()
        thread.join()
        self._failed = self._failed or watch.fatal
