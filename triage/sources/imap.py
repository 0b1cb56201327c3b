"""IMAP through imapclient: TLS verified by default, BODY.PEEK[] so mail is never marked read."""

from __future__ import annotations

import logging
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, IMAPClientAbortError, IMAPClientError, LoginError

from triage.config import ActionSettings, ImapSettings
from triage.errors import (
    ConfigError,
    ConnectFailed,
    ConnectionLimited,
    InsecureRefused,
    LoginFailed,
    MailboxUnavailable,
    SourceError,
    TriageError,
)
from triage.hosts import is_loopback_host
from triage.sources import RawMessage
from triage.sources.imap_notify import NotifyingClient, mailboxes_named
from triage.sources.large_messages import first_text_part, stand_in

log = logging.getLogger("triage.imap")
FETCH_ITEMS = [b"BODY.PEEK[]", b"INTERNALDATE"]
# Gmail's thread id: where offered, it proves which thread a message belongs to.
GMAIL_THREAD = b"X-GM-THRID"
_COMMAND_TIMEOUT_S = 60
# How servers word a login refused because the account holds too many connections: RFC 5530's
# [LIMIT], Dovecot's "Maximum number of connections", Gmail's "Too many simultaneous connections".
_LIMIT_SIGNS = (
    "[limit]",
    "too many connections",
    "too many simultaneous connections",
    "maximum number of connections",
)
# How long one idle_check blocks: the granularity at which a watcher notices a stop request.
_IDLE_SLICE_S = 1.0


class ImapSource:
    """One logged-in connection; one selected mailbox at a time."""

    can_act = True  # flags, labels and moves (opened writable for them: see `writable`)

    def __init__(self, settings: ImapSettings, *, writable: bool = False) -> None:
        if not settings.host:
            raise ConfigError("imap.host is not set (or pass --source PATH to read local files)")
        self.settings = settings
        self.account = settings.account_name
        # EXAMINE (read-only) unless mailbox actions need to change flags or move mail.
        self.writable = writable
        self._mailbox = ""
        self._uidvalidity = 0
        self._highest_uid: int | None = None  # as SELECT said it, where it did
        self._client = _connect(settings)
        try:
            _login(self._client, settings)
        except BaseException:
            self._client.shutdown()
            raise
        self._extra_items = [GMAIL_THREAD] if self._client.has_capability("X-GM-EXT-1") else []

    def select(self, mailbox: str) -> int:
        with _mailbox_errors(mailbox):
            info = self._client.select_folder(mailbox, readonly=not self.writable)
        self._mailbox = mailbox
        self._uidvalidity = int(info[b"UIDVALIDITY"])
        # The highest UID now, where SELECT says (RFC 3501 requires UIDNEXT): 0 when it is empty.
        uidnext = int(info.get(b"UIDNEXT", 0))
        self._highest_uid = (uidnext - 1 if info.get(b"EXISTS", 1) else 0) if uidnext else None
        return self._uidvalidity

    def uids(self, since: date | None = None, before: date | None = None) -> list[int]:
        criteria: list[object] = []
        if since is not None:
            criteria += ["SINCE", since]
        if before is not None:
            criteria += ["BEFORE", before]
        return sorted(self._client.search(criteria or ["ALL"]))

    def fetch(self, uids: list[int]) -> Iterator[RawMessage]:
        """Messages in UID order; one over imap.max_message_bytes is read only in part.

        Sizes are asked first, so whole messages are fetched in groups of at most
        max_message_bytes and a larger one never crosses the wire whole.
        """
        batch_size, limit = self.settings.fetch_batch, self.settings.max_message_bytes
        for start in range(0, len(uids), batch_size):
            batch = uids[start : start + batch_size]
            sizes = {
                uid: int(data.get(b"RFC822.SIZE", 0))
                for uid, data in self._client.fetch(batch, [b"RFC822.SIZE"]).items()
            }
            group: list[int] = []
            for uid in (uid for uid in batch if uid in sizes):  # expunged meanwhile: absent
                if sizes[uid] > limit or sum(sizes[u] for u in group) + sizes[uid] > limit:
                    yield from self._fetch_whole(group)
                    group = []
                if sizes[uid] > limit:
                    yield from self._fetch_partial(uid, sizes[uid])
                else:
                    group.append(uid)
            yield from self._fetch_whole(group)

    def _fetch_whole(self, uids: list[int]) -> Iterator[RawMessage]:
        fetched = self._client.fetch(uids, FETCH_ITEMS + self._extra_items) if uids else {}
        for uid in uids:
            data = fetched.get(uid)
            if data is None or b"BODY[]" not in data:
                continue
            yield self._raw(uid, bytes(data[b"BODY[]"]), data)

    def _fetch_partial(self, uid: int, size: int) -> Iterator[RawMessage]:
        """Headers and the first text part of a message too large to load; attachments never."""
        limit = self.settings.max_message_bytes
        head_item = f"BODY.PEEK[HEADER]<0.{limit}>".encode()
        items = [head_item, b"BODYSTRUCTURE", b"INTERNALDATE", *self._extra_items]
        data = self._client.fetch([uid], items).get(uid)
        if data is None or b"BODY[HEADER]<0>" not in data:
            return
        part = first_text_part(data[b"BODYSTRUCTURE"])
        text = b""
        if part is not None:
            item = f"BODY.PEEK[{part.section}]<0.{limit}>".encode()
            found = self._client.fetch([uid], [item]).get(uid, {})
            text = bytes(found.get(f"BODY[{part.section}]<0>".encode(), b""))
        log.warning(
            "%s uid %d: %d bytes, over imap.max_message_bytes (%d); triaged from its headers and "
            "first text part",
            self._mailbox,
            uid,
            size,
            limit,
        )
        note = f"{size} bytes, over imap.max_message_bytes; only the headers and first text part were read"
        yield self._raw(uid, stand_in(bytes(data[b"BODY[HEADER]<0>"]), part, text), data, partial=note)

    def _raw(self, uid: int, raw: bytes, data: dict[bytes, Any], *, partial: str | None = None) -> RawMessage:
        return RawMessage(
            self.account,
            self._mailbox,
            self._uidvalidity,
            uid,
            raw,
            data.get(b"INTERNALDATE"),
            _gmail_thread_id(data.get(GMAIL_THREAD)),
            partial,
        )

    def highest_uid(self) -> int:
        """The highest UID the selected mailbox had when selected (0 when empty): UIDNEXT - 1,
        which SELECT reports (RFC 3501 requires it), else a SEARCH, whose answer lists every UID."""
        if self._highest_uid is not None:
            return self._highest_uid
        return max(self._client.search(["ALL"]), default=0)

    def uids_above(self, uid: int) -> list[int]:
        # `UID n:*` always matches the highest UID, even below n (RFC 3501): filter.
        return sorted(u for u in self._client.search(["UID", f"{uid + 1}:*"]) if u > uid)

    @property
    def supports_idle(self) -> bool:
        return bool(self._client.has_capability("IDLE"))

    @property
    def supports_notify(self) -> bool:
        return bool(self._client.has_capability("NOTIFY"))

    def status(self, mailbox: str) -> tuple[int, int]:
        """A mailbox's (UIDVALIDITY, UIDNEXT), without selecting it: whether it has news."""
        with _mailbox_errors(mailbox):
            info = self._client.folder_status(mailbox, [b"UIDVALIDITY", b"UIDNEXT"])
        return int(info[b"UIDVALIDITY"]), int(info[b"UIDNEXT"])

    def idle_until_change(self, renew_s: float, stopping: Callable[[], bool]) -> bool:
        """IDLE on the selected mailbox for up to `renew_s`; True when the server reported new mail."""
        return _reports_news(self._idle(renew_s, stopping, _reports_news))

    def listen(self, mailboxes: list[str]) -> None:
        """Hear of new mail in these mailboxes from now on (NOTIFY); see `wait_for_news`."""
        self._client.notify_set(mailboxes)

    def wait_for_news(self, renew_s: float, stopping: Callable[[], bool]) -> set[str]:
        """IDLE for up to `renew_s`; the mailboxes (of those `listen` named) that had news."""
        return mailboxes_named(self._idle(renew_s, stopping, lambda said: bool(mailboxes_named(said))))

    def _idle(
        self, renew_s: float, stopping: Callable[[], bool], is_news: Callable[[list[Any]], bool]
    ) -> list[Any]:
        """IDLE until the server says something `is_news`, `renew_s` passes or `stopping()`; what
        it said.

        News already waiting is asked for with NOOP first: a server sends it right behind IDLE's
        continuation, in the same read, where it sits in imaplib's buffer and polling the socket
        never sees it. (Mail landing in the round trip between the two is still reported, when
        IDLE ends.) imapclient's idle_check() swallows EOF and returns [] early: an empty answer
        that came before its timeout means the link is gone. Leaving IDLE waits for the server's
        reply, so a hung server is noticed there, through the socket timeout.
        """
        _, waiting = self._client.noop()
        if is_news(waiting):
            return list(waiting)
        self._client.idle()
        deadline = time.monotonic() + renew_s
        said: list[Any] = []
        while not is_news(said) and not stopping() and (left := deadline - time.monotonic()) > 0:
            slice_s = min(_IDLE_SLICE_S, left)
            started = time.monotonic()
            responses = self._client.idle_check(timeout=slice_s)
            if not responses and time.monotonic() - started < slice_s * 0.5:
                break  # EOF: idle_done() below raises
            said += responses
        _, last = self._client.idle_done()
        return said + list(last)

    def apply_actions(self, uid: int, actions: ActionSettings) -> list[str]:
        """Flags, Gmail labels, seen, then a move (MOVE, else COPY + \\Deleted + UID EXPUNGE)."""
        try:
            return self._apply_actions(uid, actions)
        except (IMAPClientError, OSError) as exc:
            raise SourceError(_text(exc)) from None

    def _apply_actions(self, uid: int, actions: ActionSettings) -> list[str]:
        client, done = self._client, []
        if actions.add_flags:
            client.add_flags([uid], actions.add_flags)
            done.append("flagged " + " ".join(actions.add_flags))
        if actions.mark_seen:
            client.add_flags([uid], [b"\\Seen"])
            done.append("marked seen")
        if actions.gmail_labels:
            if client.has_capability("X-GM-EXT-1"):
                client.add_gmail_labels([uid], actions.gmail_labels)
                done.append("labelled " + " ".join(actions.gmail_labels))
            else:
                done.append("labels skipped (the server is not Gmail)")
        if actions.move_to == self._mailbox:
            done.append(f"already in {actions.move_to}")
        elif actions.move_to:
            if not client.folder_exists(actions.move_to):
                client.create_folder(actions.move_to)
            if client.has_capability("MOVE"):
                client.move([uid], actions.move_to)
            else:
                client.copy([uid], actions.move_to)
                client.add_flags([uid], [b"\\Deleted"])
                if client.has_capability("UIDPLUS"):
                    client.uid_expunge([uid])
                else:
                    client.expunge()
            done.append(f"moved to {actions.move_to}")
        return done

    def noop(self) -> None:
        self._client.noop()

    def close(self) -> None:
        try:
            self._client.logout()
        except (IMAPClientError, OSError):
            self._client.shutdown()


def _gmail_thread_id(value: Any) -> int | None:
    """X-GM-THRID as imapclient hands it over (an int; bytes from a server that quotes it)."""
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, bytes) and value.isdigit() else None


@contextmanager
def _mailbox_errors(mailbox: str) -> Iterator[None]:
    """A mailbox the server will not open is MailboxUnavailable; a connection that failed stays
    the connection's failure."""
    try:
        yield
    except IMAPClientAbortError:
        raise
    except IMAPClientError as exc:
        raise MailboxUnavailable(f"cannot open mailbox {mailbox!r}: {_text(exc)}") from None


def check_transport(settings: ImapSettings) -> None:
    """Refuse, before connecting, to log in without TLS to a host that is not this machine."""
    if settings.tls == "none" and not is_loopback_host(settings.host) and not settings.allow_insecure:
        raise InsecureRefused(
            f'imap.tls = "none" would send the password for {settings.host} in clear'
            ' (use "implicit" or "starttls", or set imap.allow_insecure = true)'
        )


def _connect(settings: ImapSettings) -> NotifyingClient:
    check_transport(settings)
    where = f"{settings.host}:{settings.effective_port}"
    context = _ssl_context(settings) if settings.tls != "none" else None
    try:
        client = NotifyingClient(
            settings.host,
            port=settings.effective_port,
            ssl=settings.tls == "implicit",
            ssl_context=context,
            timeout=settings.timeout_s,
        )
        if settings.tls == "starttls":
            _starttls(client, context, where)
        return client
    except ssl.SSLCertVerificationError as exc:
        raise ConnectFailed(
            f"TLS certificate of IMAP server {where} not trusted: {exc.verify_message}"
            " (set imap.ca_file to its CA)"
        ) from None
    except ssl.SSLError as exc:
        raise ConnectFailed(f"TLS with IMAP server {where} failed: {exc.reason}") from None
    except TimeoutError:  # a host down or a network dropping packets: worth retrying
        raise ConnectFailed(f"IMAP server {where} did not answer within {settings.timeout_s:g} s") from None
    except (OSError, IMAPClientError) as exc:
        raise ConnectFailed(f"cannot connect to IMAP server {where}: {_text(exc)}") from None


def _starttls(client: IMAPClient, context: ssl.SSLContext | None, where: str) -> None:
    """Upgrade to TLS or give up: a failed STARTTLS never falls back to a plaintext login."""
    try:
        client.starttls(context)
    except CapabilityError:
        client.shutdown()
        raise InsecureRefused(
            f"IMAP server {where} does not offer STARTTLS; refusing to log in without TLS"
        ) from None


def _ssl_context(settings: ImapSettings) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=settings.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"imap.ca_file {settings.ca_file}: {exc}") from None


def _login(client: IMAPClient, settings: ImapSettings) -> None:
    where = f"{settings.username}@{settings.host}"
    try:
        if settings.oauth2_token_command:
            token = _run_secret_command(settings.oauth2_token_command, "imap.oauth2_token_command")
            client.oauth2_login(settings.username, token)
        else:
            client.login(settings.username, _password(settings))
    except (IMAPClientError, OSError) as exc:  # LoginError is an IMAPClientError
        text = _text(exc)
        if _at_connection_limit(text):
            raise ConnectionLimited(f"IMAP login refused for {where}: {text}") from None
        if isinstance(exc, LoginError):
            raise LoginFailed(f"IMAP login failed for {where}: {text}") from None
        raise ConnectFailed(f"IMAP connection lost during login to {where}: {text}") from None


def _at_connection_limit(refusal: str) -> bool:
    """Whether a refused login means "too many connections" (_LIMIT_SIGNS), not wrong credentials."""
    lowered = refusal.lower()
    return any(sign in lowered for sign in _LIMIT_SIGNS)


def _password(settings: ImapSettings) -> str:
    if settings.password is not None:
        return settings.password.get_secret_value()
    if settings.password_command:
        return _run_secret_command(settings.password_command, "imap.password_command")
    raise ConfigError(
        "no IMAP credential: set imap.password, imap.password_command or imap.oauth2_token_command"
    )


def _run_secret_command(command: str, key: str) -> str:
    """Run a password or token command; its output is the secret and is never shown."""
    try:
        done = subprocess.run(
            command, shell=True, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise TriageError(f"{key} did not finish within {_COMMAND_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise TriageError(f"{key} failed with exit status {done.returncode}")
    secret = done.stdout.strip()
    if not secret:
        raise TriageError(f"{key} printed nothing")
    return secret


def _reports_news(responses: list[Any]) -> bool:
    return any(isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses)


def _text(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return " ".join(text.split()) or type(exc).__name__
