"""Local mail files: an mbox file, a Maildir, or a directory of .eml files (stdlib `mailbox`).

A file source has one mailbox, its path. UIDs are 1-based positions in a stable order (mbox
order, or sorted file names), so a file that only grows keeps its UIDs; UIDVALIDITY is 1.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from datetime import date, datetime
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.errors import SourceError, TriageError
from triage.sources import RawMessage

if TYPE_CHECKING:
    from triage.config import ActionSettings

FILES_ACCOUNT = "files"


class FileSource:
    """Reads mail from local files; never holds more than one message in memory."""

    account = FILES_ACCOUNT
    can_act = False  # local files are only read

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self._read = _reader(self.path)
        self._keys: list[str] = []

    @property
    def mailbox_name(self) -> str:
        return str(self.path)

    def select(self, mailbox: str) -> int:
        self._keys = self._read.keys()
        return 1

    def uids(self, since: date | None = None, before: date | None = None) -> list[int]:
        all_uids = list(range(1, len(self._keys) + 1))
        if since is None and before is None:
            return all_uids
        return [uid for uid in all_uids if _in_range(self._date(uid), since, before)]

    def apply_actions(self, uid: int, actions: ActionSettings) -> list[str]:
        raise SourceError("local files are only read: flags and moves need an IMAP mailbox")

    def fetch(self, uids: list[int]) -> Iterator[RawMessage]:
        for uid in uids:
            if 1 <= uid <= len(self._keys):
                yield RawMessage(self.account, self.mailbox_name, 1, uid, self._read.get(self._keys[uid - 1]))

    def close(self) -> None:
        self._read.close()

    def _date(self, uid: int) -> datetime | None:
        headers = BytesHeaderParser().parsebytes(self._read.get(self._keys[uid - 1]))
        try:
            return parsedate_to_datetime(str(headers.get("date", "")))
        except (TypeError, ValueError, IndexError):
            return None


def _in_range(when: datetime | None, since: date | None, before: date | None) -> bool:
    if when is None:
        return False
    day = when.date()
    return (since is None or day >= since) and (before is None or day < before)


class _MailboxReader:
    """Raw bytes by key from a stdlib mailbox, in a stable key order."""

    def __init__(self, box: mailbox.Mailbox[Any]) -> None:
        self._box = box

    def keys(self) -> list[str]:
        keys = [str(k) for k in self._box.iterkeys()]
        if isinstance(self._box, mailbox.mbox):
            return sorted(keys, key=int)
        return sorted(keys)

    def get(self, key: str) -> bytes:
        real_key: str | int = int(key) if isinstance(self._box, mailbox.mbox) else key
        return self._box.get_bytes(real_key)  # type: ignore[arg-type]  # an mbox's keys are ints

    def close(self) -> None:
        self._box.close()


class _EmlDirectoryReader:
    """A folder of `*.eml` files."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def keys(self) -> list[str]:
        return sorted(p.name for p in self._path.iterdir() if p.suffix.lower() == ".eml")

    def get(self, key: str) -> bytes:
        return (self._path / key).read_bytes()

    def close(self) -> None:
        pass


def _reader(path: Path) -> _MailboxReader | _EmlDirectoryReader:
    if path.is_file():
        return _MailboxReader(mailbox.mbox(path, create=False))
    if (path / "cur").is_dir() and (path / "new").is_dir():
        return _MailboxReader(mailbox.Maildir(path, factory=None, create=False))
    if path.is_dir():
        return _EmlDirectoryReader(path)
    raise TriageError(
        f"mail source not found: {path} (expected an mbox file, a Maildir or a folder of .eml files)"
    )
