"""NOTIFY (RFC 5465): one IMAP connection hears of new mail in many mailboxes.

imapclient 4.1 has no NOTIFY command (mjs/imapclient#617), so a subclass sends it the way the
client sends its own commands. While the connection IDLEs, the server reports each watched
mailbox that changed with an untagged `STATUS name (...)`, which imapclient parses like any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from imapclient import IMAPClient, imap_utf7
from imapclient.exceptions import IMAPClientError

# New and expunged mail: what a watcher acts on (flag changes are not news).
_EVENTS = b"(MessageNew MessageExpunge)"


class NotifyingClient(IMAPClient):
    """IMAPClient with `notify_set`."""

    def notify_set(self, mailboxes: Iterable[str]) -> None:
        """Ask to hear of new and expunged mail in these mailboxes (none in the selected one)."""
        names = b" ".join(_quoted(imap_utf7.encode(name)) for name in mailboxes)
        typ, data = self._raw_command(
            b"NOTIFY", [b"SET (mailboxes (" + names + b") " + _EVENTS + b")"], uid=False
        )
        if typ != "OK":
            raise IMAPClientError(f"NOTIFY failed: {data[0]!r}")


def _quoted(name: bytes) -> bytes:
    return b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def mailboxes_named(responses: Iterable[Any]) -> set[str]:
    """The mailboxes that untagged STATUS responses (NOTIFY's news) speak of."""
    named = set()
    for response in responses:
        if isinstance(response, tuple) and len(response) > 1 and response[0] == b"STATUS":
            name = response[1]
            named.add(imap_utf7.decode(name) if isinstance(name, bytes) else str(name))
    return named
