"""Where raw mail comes from: an IMAP server or local files. Both yield RawMessage values."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from triage.config import ActionSettings


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message's bytes and its identity in a mailbox: (account, mailbox, uidvalidity, uid)."""

    account: str
    mailbox: str
    uidvalidity: int
    uid: int
    raw: bytes
    internaldate: datetime | None = None
    gmail_thread_id: int | None = None  # X-GM-THRID, where the server is Gmail
    partial: str | None = None  # why only part of the message was fetched, where it was

    @property
    def identity(self) -> dict[str, str | int]:
        return {
            "account": self.account,
            "mailbox": self.mailbox,
            "uidvalidity": self.uidvalidity,
            "uid": self.uid,
        }


class Source(Protocol):
    """A mail store triage can read, one mailbox at a time, by UID; and, where `can_act`, change.

    Mailbox actions (flags, labels, a move) are a capability: a source that lacks it says so in
    `can_act`, and its `apply_actions` raises SourceError.
    """

    account: str
    can_act: bool

    def select(self, mailbox: str) -> int:
        """Open a mailbox; return its UIDVALIDITY."""
        ...

    def uids(self, since: date | None = None, before: date | None = None) -> list[int]:
        """UIDs of the selected mailbox, ascending, optionally limited by date."""
        ...

    def fetch(self, uids: list[int]) -> Iterator[RawMessage]:
        """The messages of the selected mailbox with these UIDs (gone ones are skipped)."""
        ...

    def apply_actions(self, uid: int, actions: ActionSettings) -> list[str]:
        """Carry out a decision's mailbox actions on a message of the selected mailbox; what was done.

        Raises SourceError when they could not be (the message stays as it was).
        """
        ...

    def close(self) -> None: ...
