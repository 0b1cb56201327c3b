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
from triage.mailbox_watcher import MailboxWatcher
from triage.shared_mailboxes import SharedMailboxes
from triage.watch_links import CapabilityProbe, Link, MailboxLink, NotifyLink, SharedLink
from triage.watch_plan import LinkPlan, needs_capabilities, plan_links

log = logging.getLogger("triage.watch")


class AccountWatch:
    def __init__(
        self,
        settings: Settings,
        imap: ImapSettings,
        watchers: list[MailboxWatcher],
        *,
        budget: int,
        writable: bool,
    ) -> None:
        self.settings = settings
        self.imap = imap
        self.watchers = {watcher.mailbox: watcher for watcher in watchers}
        self.budget = budget
        self.stop = threading.Event()  # set by the daemon, or by a link that failed for good
        self.writable = writable
        self.label = imap.account_name
        self.links: list[Link] = []
        self.fatal: TriageError | None = None

    def run(self) -> None:
        """Thread body: plan, then run the links until they stop."""
        watch, budget = self.settings.watch, self.budget
        notify = False
        if needs_capabilities(list(self.watchers), budget, watch.mode):
            probe = CapabilityProbe(self.label, self.settings, self.imap, self.stop)
            probe.run()
            if probe.fatal is not None or self.stop.is_set():
                self.fatal = probe.fatal
                return
            notify = probe.notify
        plan = plan_links(list(self.watchers), budget, watch.mode, notify)
        if plan.shared:
            log.info(
                "%s: %d mailboxes over %s",
                self.label,
                len(self.watchers),
                plan.describe(watch.poll_interval_s),
            )
        self.links = self._links(plan)
        threads = [
            threading.Thread(target=link.run, name=f"watch {link.label}", daemon=True) for link in self.links
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.fatal = next((link.fatal for link in self.links if link.fatal is not None), None)

    def _links(self, plan: LinkPlan) -> list[Link]:
        links: list[Link] = [
            MailboxLink(self.watchers[name], self.stop, writable=self.writable) for name in plan.own
        ]
        if not plan.shared:
            return links
        shared = SharedMailboxes(
            [self.watchers[name] for name in plan.shared], self.settings.watch.poll_interval_s
        )
        if plan.notify:
            links.append(NotifyLink(f"{self.label} (NOTIFY)", shared, self.settings, self.imap, self.stop))
        links += [
            SharedLink(
                f"{self.label} (shared {n + 1})",
                shared,
                self.settings,
                self.imap,
                self.stop,
                writable=self.writable,
            )
            for n in range(plan.fetchers)
        ]
        return links


class AccountWatches:
    """The account watches running now, one per account, each on a thread."""

    def __init__(self, settings: Settings, *, writable: bool) -> None:
        self.settings = settings
        self.writable = writable
        self._running: dict[str, tuple[AccountWatch, threading.Thread]] = {}
        self._failed: TriageError | None = None  # of an account watch stopped since

    @property
    def fatal(self) -> TriageError | None:
        running = (watch.fatal for watch, _ in self._running.values() if watch.fatal is not None)
        return self._failed or next(running, None)

    def apply(self, watchers: list[MailboxWatcher], budget: int | None = None) -> set[tuple[str, str]]:
        """Watch exactly these mailboxes, each account within `budget` connections (default its
        imap.max_connections); return the (account, mailbox) no longer watched.

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
            limit = budget or (group[0].imap.max_connections if group else 0)
            if running is not None:
                if set(running[0].watchers) == {w.mailbox for w in group} and running[0].budget == limit:
                    continue
                self._stop(account)
                dropped |= {(account, name) for name in running[0].watchers} - {
                    (account, w.mailbox) for w in group
                }
            if group:
                watch = AccountWatch(
                    self.settings, group[0].imap, group, budget=limit, writable=self.writable
                )
                thread = threading.Thread(target=watch.run, name=f"watch {watch.label}", daemon=True)
                self._running[account] = (watch, thread)
                thread.start()
        return dropped

    def stop_all(self) -> None:
        for account in list(self._running):
            self._stop(account)

    def _stop(self, account: str) -> None:
        watch, thread = self._running.pop(account)
        watch.stop.set()
        thread.join(watch.imap.timeout_s)
        self._failed = self._failed or watch.fatal
