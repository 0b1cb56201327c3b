"""Messages in flight together: a reply waits for the message it answers (see InFlight)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from triage.message import Email
from triage.sources import RawMessage


class InFlight:
    """Messages being triaged now, so a reply waits for the message it answers.

    In a concurrent backfill a reply and its parent can be in flight together; the reply's thread
    candidates are only right once the parent's decision (and thread) is recorded. A parent is a
    message named by In-Reply-To / References (lower UID, or another mailbox), or an older message
    of the same Gmail thread in the same mailbox: only older ones are waited for, so no two
    messages wait on each other.
    """

    def __init__(self) -> None:
        self._running: dict[str, list[tuple[RawMessage, asyncio.Event]]] = {}

    def start(self, raw: RawMessage, email: Email) -> Callable[[], None]:
        entry = (raw, asyncio.Event())
        keys = [key for key in (email.message_id, _gmail_key(raw)) if key is not None]
        for key in keys:
            self._running.setdefault(key, []).append(entry)

        def done() -> None:
            entry[1].set()
            for key in keys:
                left = [other for other in self._running.get(key, []) if other is not entry]
                if left:
                    self._running[key] = left
                else:
                    self._running.pop(key, None)

        return done

    async def parents_done(self, raw: RawMessage, email: Email) -> None:
        named = {email.in_reply_to, *email.references} - {None, email.message_id}
        for parent_id in named:
            for parent, finished in list(self._running.get(parent_id, ())):  # type: ignore[arg-type]
                if parent.mailbox != raw.mailbox or parent.uid < raw.uid:
                    await finished.wait()
        gmail_key = _gmail_key(raw)
        for sibling, finished in list(self._running.get(gmail_key, ()) if gmail_key else ()):
            if sibling.mailbox == raw.mailbox and sibling.uid < raw.uid:
                await finished.wait()


def _gmail_key(raw: RawMessage) -> str | None:
    if raw.gmail_thread_id is None:
        return None
    return f"gmail-thread {raw.account} {raw.gmail_thread_id}"
