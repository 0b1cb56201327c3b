"""The daemon's IMAP connections to one account, each on a thread of its own (imapclient blocks).

A MailboxLink is a mailbox's own connection: catch up, IDLE (or poll), again. A SharedLink serves
in turn the mailboxes that have no connection of their own (triage.shared_mailboxes), looking with
STATUS whether one has news before selecting it. A NotifyLink only listens: NOTIFY tells it which
of those mailboxes changed. Every link reconnects on any sign of a dead link, with backoff; a login
refused before any success ends the daemon (no retry mends a wrong password).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import CancelledError

from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from sqlalchemy.exc import SQLAlchemyError

from triage.clock import backoff_s
from triage.config import ImapSettings, Settings
from triage.errors import ConnectFailed, ConnectionLimited, LoginFailed, MailboxUnavailable, TriageError
from triage.mailbox_watcher import MailboxWatcher
from triage.shared_mailboxes import SharedMailboxes
from triage.sources.imap import ImapSource
from triage.store.engine import store_failed

log = logging.getLogger("triage.watch")

# Every sign of a dead or hung link: reconnect.
LINK_ERRORS = (ConnectFailed, IMAPClientError, OSError)
_RECONNECT_BASE_S = 1.0


class Link(ABC):
    """One connection: log in, `serve`, and reconnect with backoff when the link dies."""

    def __init__(
        self,
        label: str,
        settings: Settings,
        imap: ImapSettings,
        stop: threading.Event,
        logged_in: threading.Event,
    ) -> None:
        self.label = label
        self.settings = settings
        self.imap = imap
        self.stop = stop
        self.writable = False  # EXAMINE unless mailbox actions change flags or move mail
        self.fatal: TriageError | None = None
        self.up = False  # logged in now
        # Told of a login refused for the connection limit; True: the account plans with fewer
        # connections and this link ends, instead of knocking again.
        self.on_refused: Callable[[], bool] | None = None
        # Set once any connection to the account has logged in (shared by its links, whatever
        # their round): a refused login after that is passing, before it a wrong credential.
        self.logged_in = logged_in
        self._failures = 0

    @abstractmethod
    def serve(self, source: ImapSource) -> None:
        """What the connection does once logged in, until a stop request (or it is done)."""

    def connected(self) -> None:  # noqa: B027 (a hook: nothing to do unless a link says)
        """The connection is logged in (again)."""

    def recovered(self) -> None:  # noqa: B027
        """The session works again after failures (see `settled`)."""

    def down(self, reason: str, failures: int) -> None:  # noqa: B027
        """The connection is lost, `failures` times in a row."""

    def run(self) -> None:
        """Thread body: sessions until stopped; a refused login before any success is fatal."""
        while not self.stop.is_set():
            try:
                self._session()
                return
            except LoginFailed as exc:
                if not self.logged_in.is_set():
                    self._fail(exc)
                    return
                self._lost(str(exc))
            except ConnectionLimited as exc:  # the account's other clients hold what the server allows
                if self.on_refused is not None and self.on_refused():
                    return
                self._lost(str(exc), "the server allows this account no more connections")
            except LINK_ERRORS as exc:
                self._lost(_describe(exc))
            except CancelledError:
                return
            except SQLAlchemyError as exc:
                self._fail(store_failed(exc))
                return
            except Exception:
                log.exception("%s: watcher failed", self.label)
                self._fail(TriageError(f"the watcher of {self.label!r} failed (traceback logged above)"))
                return

    def _session(self) -> None:
        source = ImapSource(self.imap, writable=self.writable)
        self.up = True
        self.logged_in.set()
        try:
            self.connected()
            self.serve(source)
        finally:
            self.up = False
            source.close()

    def settled(self) -> None:
        """The session does its work (its mailbox opened, NOTIFY set): failures in a row end here,
        so a link that logs in but cannot open its mailbox still backs off further each time."""
        if self._failures:
            log.info("%s: reconnected after %d attempts", self.label, self._failures)
            self.recovered()
        self._failures = 0

    def _fail(self, error: TriageError) -> None:
        self.fatal = error
        self.stop.set()

    def _lost(self, reason: str, what: str = "connection lost") -> None:
        """Log the change of state once, not once per retry, and wait before reconnecting."""
        if self._failures == 0:
            log.warning("%s: %s (%s); reconnecting", self.label, what, reason)
        self._failures += 1
        self.down(reason, self._failures)
        self.stop.wait(
            backoff_s(self._failures, _RECONNECT_BASE_S, self.settings.watch.reconnect_backoff_cap_s)
        )


class MailboxLink(Link):
    """A mailbox's own connection: catch up, then IDLE (or poll) until news, a retry or a stop."""

    def __init__(
        self, watcher: MailboxWatcher, stop: threading.Event, logged_in: threading.Event, *, writable: bool
    ) -> None:
        super().__init__(watcher.label, watcher.settings, watcher.imap, stop, logged_in)
        self.watcher = watcher
        self.writable = writable

    def recovered(self) -> None:
        self.watcher.reconnects += 1

    def down(self, reason: str, failures: int) -> None:
        self.watcher.set(
            state="reconnecting", connected=False, failures=failures, last_error=reason, idle_since=None
        )

    def serve(self, source: ImapSource) -> None:
        watch = self.settings.watch
        uidvalidity = self.watcher.open(source)
        self.settled()
        self.watcher.set(state="catching-up", connected=True, failures=0, last_error=None)
        use_idle = watch.mode == "idle" or (watch.mode == "auto" and source.supports_idle)
        if not self.watcher.announced:
            log.info("%s: watching (%s)", self.label, "IDLE" if use_idle else "polling")
            self.watcher.announced = True
        while not self.stop.is_set():
            if self.watcher.catch_up(source, uidvalidity, self.stop):
                continue  # news of mail landing meanwhile came inside its commands' replies: look again
            if self.stop.is_set():
                break
            retry_in = self.watcher.retries.next_due_in()
            if use_idle:
                renew = watch.idle_renew_s if retry_in is None else min(retry_in, watch.idle_renew_s)
                source.idle_until_change(max(renew, 0.1), self.stop.is_set)
            else:
                self.stop.wait(
                    watch.poll_interval_s if retry_in is None else min(retry_in, watch.poll_interval_s)
                )
                source.noop()


class SharedMailboxesLink(Link):
    """A connection for the mailboxes that share connections."""

    def __init__(
        self,
        label: str,
        shared: SharedMailboxes,
        settings: Settings,
        imap: ImapSettings,
        stop: threading.Event,
        logged_in: threading.Event,
        *,
        writable: bool = False,
    ) -> None:
        super().__init__(label, settings, imap, stop, logged_in)
        self.shared = shared
        self.writable = writable


class SharedLink(SharedMailboxesLink):
    """A connection serving, in turn, whichever shared mailbox needs a look."""

    def connected(self) -> None:
        self.shared.link_up(self)

    def down(self, reason: str, failures: int) -> None:
        self.shared.link_down(
            self, state="reconnecting", connected=False, failures=failures, last_error=reason, idle_since=None
        )

    def serve(self, source: ImapSource) -> None:
        self.settled()
        while (watcher := self.shared.take(self.stop)) is not None:
            finished = False
            try:
                finished = self._look(source, watcher)
            except MailboxUnavailable as exc:  # this mailbox's trouble: the others go on
                if watcher.status.get("state") != "unavailable":
                    log.warning("%s: %s; checked again every %g s", watcher.label, exc, self.shared.sweep_s)
                watcher.set(state="unavailable", last_error=str(exc))
                finished = True  # looked at again at the next sweep, not at once
            finally:
                self.shared.done(watcher, again=not finished)

    def _look(self, source: ImapSource, watcher: MailboxWatcher) -> bool:
        """Catch up on a mailbox where STATUS shows news since the last look (or a retry is due);
        False when a stop cut the catch-up short (the mailbox still needs a look)."""
        now = source.status(watcher.mailbox)
        if watcher.status.get("state") == "unavailable":
            watcher.set(state="idle", last_error=None)
        retry_in = watcher.retries.next_due_in()
        if now == watcher.seen and (retry_in is None or retry_in > 0):
            return True
        uidvalidity = watcher.open(source)
        watcher.catch_up(source, uidvalidity, self.stop)
        if self.stop.is_set():
            return False
        watcher.seen = now
        return True


class NotifyLink(SharedMailboxesLink):
    """A connection that only listens: NOTIFY names the shared mailboxes with news."""

    def serve(self, source: ImapSource) -> None:
        try:
            if not source.supports_idle:
                raise IMAPClientError("NOTIFY's news comes during IDLE, which the server does not offer")
            source.listen(self.shared.names)
        except IMAPClientAbortError:
            raise  # the link itself failed: reconnect
        except IMAPClientError as exc:
            log.warning(
                "%s: NOTIFY cannot be used (%s); checking every %g s instead",
                self.label,
                _describe(exc),
                self.settings.watch.poll_interval_s,
            )
            return
        self.settled()
        self.shared.mark(self.shared.names)  # whatever came while nobody listened
        while not self.stop.is_set():
            self.shared.mark(source.wait_for_news(self.settings.watch.idle_renew_s, self.stop.is_set))


class CapabilityProbe(Link):
    """A connection made only to learn whether the server offers NOTIFY."""

    notify = False

    def serve(self, source: ImapSource) -> None:
        self.notify = source.supports_notify


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the server stopped answering (socket timeout)"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
