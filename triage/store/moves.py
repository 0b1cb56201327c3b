"""The same mail seen again under another identity: moved, or a copy.

A message moved between mailboxes (by triage's routing, or by the user) arrives under a new identity
with its Message-ID unchanged. Its earlier decision says what it was, and the routing log says
whether triage moved it; triage.filing makes of that a label or the same decision again. A copy (a
Gmail label and the inbox; one mail to two watched accounts) is the same Message-ID, date and size
already decided elsewhere in the store: it keeps that decision, without a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, not_, select
from sqlalchemy.orm import aliased

from triage.sources import RawMessage
from triage.store import tables
from triage.store.decisions import FINAL_STATUSES, Store

MOVED = "moved"  # decided_by of a sighting that is triage's own move (MOVED:ID of what it copies)
COPY = "copy"  # decided_by of a copy of mail decided elsewhere (COPY:ID)
_CORRECTIONS = tables.corrections
_DECISIONS = tables.decisions
_MESSAGES = tables.messages


@dataclass(frozen=True, slots=True)
class Earlier:
    """A message's decision under an earlier identity, after its latest label."""

    decision_pk: int
    mailbox: str
    decision: str | None  # None for a needs-review decision nobody labelled
    moved_to: str | None  # where triage's routing moved it, if it did


def _same_identity(raw: RawMessage) -> ColumnElement[bool]:
    """Within an account: the message itself."""
    return and_(
        _MESSAGES.c.mailbox == raw.mailbox,
        _MESSAGES.c.uidvalidity == raw.uidvalidity,
        _MESSAGES.c.uid == raw.uid,
    )


def earlier_decision(store: Store, raw: RawMessage, message_id: str) -> Earlier | None:
    """The newest decided message (`ok` or `needs-review`) of this account with this Message-ID,
    under another identity; a sighting recorded as triage's own move stands for what it copied."""
    newer = aliased(_CORRECTIONS)
    latest = select(func.max(newer.c.id)).where(newer.c.decision_pk == _DECISIONS.c.id).scalar_subquery()
    query = (
        select(
            _DECISIONS.c.id,
            _MESSAGES.c.mailbox,
            func.coalesce(_CORRECTIONS.c.decision, _DECISIONS.c.decision),
            _DECISIONS.c.routing_actions,
        )
        .join(_MESSAGES, _MESSAGES.c.id == _DECISIONS.c.message_pk)
        .outerjoin(_CORRECTIONS, _CORRECTIONS.c.id == latest)
        .where(
            _MESSAGES.c.message_id == message_id,
            _MESSAGES.c.account == raw.account,
            _DECISIONS.c.status.in_(("ok", "needs-review")),
            not_(_DECISIONS.c.decided_by.startswith(f"{MOVED}:")),
            not_(_same_identity(raw)),
        )
        .order_by(_DECISIONS.c.id.desc())
        .limit(1)
    )
    with store.reading() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    pk, mailbox, decision, actions = row
    return Earlier(pk, mailbox, decision, (actions or {}).get("moved_to"))


def copy_of(store: Store, raw: RawMessage, message_id: str, sent_at: datetime | None) -> int | None:
    """The decision of the same mail (Message-ID, date, size) decided elsewhere in the store, if any:
    a final one, not itself a copy or a sighting of a move."""
    same_date = _MESSAGES.c.sent_at.is_(None) if sent_at is None else _MESSAGES.c.sent_at == sent_at
    query = (
        select(_DECISIONS.c.id)
        .join(_MESSAGES, _MESSAGES.c.id == _DECISIONS.c.message_pk)
        .where(
            _MESSAGES.c.message_id == message_id,
            _MESSAGES.c.size == len(raw.raw),
            same_date,
            _DECISIONS.c.status.in_(FINAL_STATUSES),
            not_(_DECISIONS.c.decided_by.startswith(f"{COPY}:")),
            not_(_DECISIONS.c.decided_by.startswith(f"{MOVED}:")),
            not_(and_(_MESSAGES.c.account == raw.account, _same_identity(raw))),
        )
        .order_by(_DECISIONS.c.id)
        .limit(1)
    )
    with store.reading() as connection:
        found: int | None = connection.execute(query).scalar()
    return found
