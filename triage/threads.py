"""Thread identity and matching keys, as pure functions."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from triage.sources import RawMessage

if TYPE_CHECKING:
    from triage.message import Email

# A fixed namespace: the same message identity always names the same LangGraph thread.
_NAMESPACE = uuid.UUID("0b5d9c2e-7f1a-5b8e-9c3d-2a4f6e8b1c7d")
_PREFIXES = re.compile(r"^\s*(?:(?:re|fwd?|aw|sv|vs|wg|tr|antw|odp|r)\s*(?:\[\d+\])?\s*:\s*)+", re.I)
_LIST_TAG = re.compile(r"^\s*\[[^\]]{1,40}\]\s*")


@dataclass(frozen=True, slots=True)
class ThreadCandidate:
    """An existing thread the assistant may route to."""

    id: str
    title: str
    last_activity: datetime | None
    proved_by_headers: bool = False

    def as_record(self) -> dict[str, Any]:
        """As stored with a decision: what was offered, to explain and replay it."""
        return {
            "id": self.id,
            "title": self.title,
            "proved_by_headers": self.proved_by_headers,
            "last_activity": self.last_activity.isoformat() if self.last_activity else None,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ThreadCandidate:
        when = record.get("last_activity")
        return cls(
            str(record["id"]),
            str(record.get("title") or ""),
            datetime.fromisoformat(when) if when else None,
            bool(record.get("proved_by_headers")),
        )


def thread_id_for(raw: RawMessage) -> str:
    """The deterministic id of the thread a new task from this message starts (uuid5)."""
    key = f"{raw.account}\x00{raw.mailbox}\x00{raw.uidvalidity}\x00{raw.uid}"
    return str(uuid.uuid5(_NAMESPACE, key))


def message_key(raw: RawMessage) -> str:
    """The message's identity as one string, carried in run metadata to recognise our own runs."""
    return f"{raw.account}/{raw.mailbox}/{raw.uidvalidity}/{raw.uid}"


def subject_key(subject: str) -> str:
    """A subject without reply/forward prefixes (Re:, Fwd:, AW:, SV: ...) and list tags, casefolded."""
    text = subject
    while True:
        stripped = _LIST_TAG.sub("", _PREFIXES.sub("", text))
        if stripped == text:
            break
        text = stripped
    return " ".join(text.split()).casefold()


def participants(email: Email) -> list[str]:
    """Lower-cased addresses of everyone on the message."""
    found = {a.email.lower() for a in [*email.from_, *email.to, *email.cc, *email.reply_to] if a.email}
    return sorted(found)
