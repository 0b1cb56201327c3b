"""The mailboxes that shared connections serve in turn: which need a look, and who is looking.

A mailbox needs a look when NOTIFY says it changed, when the sweep comes round (every
`watch.poll_interval_s`: the only news where the server lacks NOTIFY, a safety net where it has it),
and when one of its failed messages is due to be tried again. One connection looks at a mailbox at a
time; INBOX and the config's first mailboxes go first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from triage.mailbox_watcher import MailboxWatcher

# How often a waiting connection checks for a stop request.
_STOP_CHECK_S = 1.0


class SharedMailboxes:
    def __init__(self, watchers: list[MailboxWatcher], sweep_s: float) -> None:
        self.watchers = {watcher.mailbox: watcher for watcher in watchers}  # in priority order
        self.sweep_s = sweep_s
        self._changed = threading.Condition()
        self._wanted = set(self.watchers)  # everything, at first: mail may have come meanwhile
        self._busy: set[str] = set()
        self._next_sweep = time.monotonic() + sweep_s
        self._links_up: set[object] = set()

    @property
    def names(self) -> list[str]:
        return list(self.watchers)

    def mark(self, names: Iterable[str]) -> None:
        """These mailboxes had news (names not served here are ignored)."""
        with self._changed:
            self._wanted |= set(names) & self.watchers.keys()
            self._changed.notify_all()

    def take(self, stop: threading.Event) -> MailboxWatcher | None:
        """The next mailbox that needs a look, once one does; None on a stop request."""
        with self._changed:
            while not stop.is_set():
                now = time.monotonic()
                if now >= self._next_sweep:
                    self._wanted |= self.watchers.keys()
                    self._next_sweep = now + self.sweep_s
                waits = [self._next_sweep - now, _STOP_CHECK_S]
                for name, watcher in self.watchers.items():
                    if name in self._busy:  # its retries are for the look under way
                        continue
                    retry_in = watcher.retries.next_due_in()
                    if retry_in is not None:
                        if retry_in <= 0:
                            self._wanted.add(name)
                        waits.append(retry_in)
                ready = next((n for n in self.watchers if n in self._wanted and n not in self._busy), None)
                if ready is not None:
                    self._wanted.discard(ready)
                    self._busy.add(ready)
                    return self.watchers[ready]
                self._changed.wait(max(min(waits), 0.01))
            return None

    def done(self, watcher: MailboxWatcher, *, again: bool = False) -> None:
        """A look is over; `again` when it was cut short (the mailbox still needs one)."""
        with self._changed:
            self._busy.discard(watcher.mailbox)
            if again:
                self._wanted.add(watcher.mailbox)
            self._changed.notify_all()

    def link_up(self, link: object) -> None:
        with self._changed:
            self._links_up.add(link)
        for watcher in self.watchers.values():
            if watcher.status["state"] == "reconnecting":
                watcher.set(state="idle")
        self._set_all(connected=True, failures=0, last_error=None)

    def link_down(self, link: object, **status: Any) -> None:
        """A connection is lost; the mailboxes are without one only when every connection is."""
        with self._changed:
            self._links_up.discard(link)
            none_left = not self._links_up
        if none_left:
            self._set_all(**status)

    def _set_all(self, **status: Any) -> None:
        for watcher in self.watchers.values():
            watcher.set(**status)
