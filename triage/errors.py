"""Every error triage raises: a user can cause each of them, and each ends in one clear line.

    TriageError                  exit status 1 unless its kind says otherwise
    ├── ConfigError              the configuration is invalid (2)
    ├── SourceError              the mail source
    │   ├── ConnectFailed        unreachable, or TLS failed: worth retrying
    │   │   └── MailboxUnavailable
    │   └── LoginFailed          credentials refused (3)
    │       └── InsecureRefused  credentials would go in clear: a configuration problem (2)
    ├── RunError                 the run server gave no usable answer (a kind for the log)
    └── StoreError               the decision log
        ├── StoreFailed          cannot be written: stop, lose nothing
        └── MailboxTaken         another live daemon watches the mailbox

The command line maps this tree to exit statuses in one place (triage.cli.main); a bug is not
a TriageError and keeps its traceback.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["connect", "timeout", "http", "bad-body", "graph-error", "no-answer", "bad-request"]
_RETRYABLE: frozenset[str] = frozenset({"connect", "timeout", "bad-body"})


class TriageError(Exception):
    """A problem with configuration, credentials or reachability, told in one line."""

    exit_code = 1


class ConfigError(TriageError):
    """The configuration is invalid: exit status 2."""

    exit_code = 2


class SourceError(TriageError):
    """The mail source cannot be reached, logged in to, or read."""


class ConnectFailed(SourceError):
    """The server could not be reached or the TLS handshake failed: worth retrying."""


class ConnectionLimited(ConnectFailed):
    """The server refused a login because the account holds as many connections as it allows:
    worth retrying once one is free, never a reason to stop."""


class MailboxUnavailable(ConnectFailed):
    """The mailbox cannot be selected (missing, or being recreated): worth retrying when watching."""


class LoginFailed(SourceError):
    """The server refused the credentials: retrying will not help until the config changes."""

    exit_code = 3


class InsecureRefused(LoginFailed):
    """triage refused to send credentials in clear: a configuration problem, never retried."""

    exit_code = 2


class RunError(TriageError):
    """A run that produced no usable final state, with its kind for the log."""

    def __init__(
        self,
        kind: ErrorKind,
        detail: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        attempts: int = 0,
        rate_limited: bool = False,
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.attempts = attempts
        self.rate_limited = rate_limited  # turned away by the server's or the model's rate limit

    @property
    def retryable(self) -> bool:
        if self.kind == "http":
            return self.http_status == 429 or (self.http_status or 0) >= 500
        return self.kind in _RETRYABLE


class CredentialsRefused(TriageError):
    """The run server refused triage's API key (HTTP 401 or 403): no retry mends that."""

    exit_code = 3


class StoreError(TriageError):
    """The decision log."""


class StoreFailed(StoreError):
    """The decision log cannot be written (locked too long, disk full, read-only): stop, lose nothing."""


class MailboxTaken(StoreError):
    """Another live daemon watches this mailbox in this store."""
