"""IMAP through imapclient: TLS verified by default, BODY.PEEK[] so mail is never marked read."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import date

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from triage.config import ImapSettings
from triage.errors import ConfigError, TriageError
from triage.sources import RawMessage

FETCH_ITEMS = [b"BODY.PEEK[]", b"INTERNALDATE"]
_COMMAND_TIMEOUT_S = 60
# How long one idle_check blocks: the granularity at which a watcher notices a stop request.
_IDLE_SLICE_S = 1.0


class ConnectFailed(TriageError):
    """The server could not be reached or the TLS handshake failed: worth retrying."""


class MailboxUnavailable(ConnectFailed):
    """The mailbox cannot be selected (missing, or being recreated): worth retrying when watching."""


class LoginFailed(TriageError):
    """The server refused the credentials: retrying will not help until the config changes."""

    exit_code = 3


class ImapSource:
    """One logged-in connection; one selected mailbox at a time."""

    def __init__(self, settings: ImapSettings) -> None:
        if not settings.host:
            raise ConfigError("imap.host is not set (or pass --source PATH to read local files)")
        self.settings = settings
        self.account = settings.account_name
        self._mailbox = ""
        self._uidvalidity = 0
        self._client = _connect(settings)
        try:
            _login(self._client, settings)
        except BaseException:
            self._client.shutdown()
            raise

    def select(self, mailbox: str) -> int:
        try:
            info = self._client.select_folder(mailbox, readonly=True)
        except IMAPClientError as exc:
            raise MailboxUnavailable(f"cannot open mailbox {mailbox!r}: {_text(exc)}") from None
        self._mailbox = mailbox
        self._uidvalidity = int(info[b"UIDVALIDITY"])
        return self._uidvalidity

    def uids(self, since: date | None = None, before: date | None = None) -> list[int]:
        criteria: list[object] = []
        if since is not None:
            criteria += ["SINCE", since]
        if before is not None:
            criteria += ["BEFORE", before]
        return sorted(self._client.search(criteria or ["ALL"]))

    def fetch(self, uids: list[int]) -> Iterator[RawMessage]:
        batch_size = self.settings.fetch_batch
        for start in range(0, len(uids), batch_size):
            batch = uids[start : start + batch_size]
            # imapclient keeps only the UIDs asked for; a UID expunged meanwhile is simply absent.
            fetched = self._client.fetch(batch, FETCH_ITEMS)
            for uid in batch:
                data = fetched.get(uid)
                if data is None or b"BODY[]" not in data:
                    continue
                yield RawMessage(
                    self.account,
                    self._mailbox,
                    self._uidvalidity,
                    uid,
                    bytes(data[b"BODY[]"]),
                    data.get(b"INTERNALDATE"),
                )

    def highest_uid(self) -> int:
        """The highest UID in the selected mailbox (0 when empty)."""
        uids = self._client.search(["ALL"])
        return max(uids, default=0)

    def uids_above(self, uid: int) -> list[int]:
        # `UID n:*` always matches the highest UID, even below n (RFC 3501): filter.
        return sorted(u for u in self._client.search(["UID", f"{uid + 1}:*"]) if u > uid)

    @property
    def supports_idle(self) -> bool:
        return bool(self._client.has_capability("IDLE"))

    def idle_until_change(self, renew_s: float, stopping: Callable[[], bool]) -> bool:
        """IDLE for up to `renew_s`; True when the server reported new mail.

        imapclient's idle_check() swallows EOF and returns [] early: an empty answer that came
        before its timeout means the link is gone. Leaving IDLE waits for the server's reply, so a
        hung server is noticed there, through the socket timeout.
        """
        self._client.idle()
        deadline = time.monotonic() + renew_s
        changed = False
        while not changed and not stopping() and (left := deadline - time.monotonic()) > 0:
            slice_s = min(_IDLE_SLICE_S, left)
            started = time.monotonic()
            responses = self._client.idle_check(timeout=slice_s)
            if not responses and time.monotonic() - started < slice_s * 0.5:
                break  # EOF: idle_done() below raises
            changed = any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses)
        self._client.idle_done()
        return changed

    def noop(self) -> None:
        self._client.noop()

    def close(self) -> None:
        try:
            self._client.logout()
        except (IMAPClientError, OSError):
            self._client.shutdown()


def _connect(settings: ImapSettings) -> IMAPClient:
    where = f"{settings.host}:{settings.effective_port}"
    context = _ssl_context(settings) if settings.tls != "none" else None
    try:
        client = IMAPClient(
            settings.host,
            port=settings.effective_port,
            ssl=settings.tls == "implicit",
            ssl_context=context,
            timeout=settings.timeout_s,
        )
        if settings.tls == "starttls":
            client.starttls(context)
        return client
    except ssl.SSLCertVerificationError as exc:
        raise ConnectFailed(
            f"TLS certificate of IMAP server {where} not trusted: {exc.verify_message}"
            " (set imap.ca_file to its CA)"
        ) from None
    except ssl.SSLError as exc:
        raise ConnectFailed(f"TLS with IMAP server {where} failed: {exc.reason}") from None
    except TimeoutError:
        raise TriageError(f"IMAP server {where} did not answer within {settings.timeout_s:g} s") from None
    except (OSError, IMAPClientError) as exc:
        raise ConnectFailed(f"cannot connect to IMAP server {where}: {_text(exc)}") from None


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
    except LoginError as exc:
        raise LoginFailed(f"IMAP login failed for {where}: {_text(exc)}") from None
    except (IMAPClientError, OSError) as exc:
        raise ConnectFailed(f"IMAP connection lost during login to {where}: {_text(exc)}") from None


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


def _text(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return " ".join(text.split()) or type(exc).__name__
