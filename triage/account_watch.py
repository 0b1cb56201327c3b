"""One account's watched mailboxes over at most `imap.max_connections` connections.

Where the plan depends on NOTIFY (more mailboxes than connections), one connection asks the server
first and logs out; then the links of the plan (triage.watch_plan) run, each on a thread.
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
        stop: threading.Event,
        *,
        writable: bool,
    ) -> None:
        self.settings = settings
        self.imap = imap
        self.watchers = {watcher.mailbox: watcher for watcher in watchers}
        self.stop = stop
        self.writable = writable
        self.label = imap.account_name
        self.links: list[Link] = []
        self.fatal: TriageError | None = None

    def run(self) -> None:
        """Thread body: plan, then run the links until they stop."""
        watch, budget = self.settings.watch, self.imap.max_connections
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
