"""What passes over a mailbox ask of the log: its UIDVALIDITY and watermark, and which UIDs are
decided, to be run again, or being run by another process; and `triage retry`'s choice."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from triage.clock import utc_now
from triage.store import tables
from triage.store.conflicts import inserted
from triage.store.decisions import FINAL_STATUSES, TAKEABLE
from triage.store.models import DecisionRecord, MailboxState, StoredMessage
from triage.store.processes import LIVE_OWNERS

if TYPE_CHECKING:
    from triage.store.decisions import Store

_MESSAGES = tables.messages
_DECISIONS = tables.decisions
_MAILBOXES = tables.mailboxes
# Built once (see store.decisions): the bound names below are not column names.
_UNFINISHED_MESSAGE_KEYS = select(_DECISIONS.c.message_pk).where(
    _DECISIONS.c.status.in_(("pending", "error")), TAKEABLE
)
_IDENTITIES_BY_KEY = select(
    _MESSAGES.c.account, _MESSAGES.c.mailbox, _MESSAGES.c.uidvalidity, _MESSAGES.c.uid
).where(_MESSAGES.c.id.in_(bindparam("keys", expanding=True)))
_KEYS_PER_QUERY = 500  # well under any database's limit on bound parameters


def note(store: Store, account: str, mailbox: str, uidvalidity: int, start_uid: int = 0) -> int | None:
    """Record the mailbox's UIDVALIDITY; return the one known before (None if new).

    A new mailbox's watermark starts at `start_uid`; a changed UIDVALIDITY resets it to 0,
    since every UID of the old generation is void.
    """
    with store.sessions.begin() as session:
        new = {"account": account, "name": mailbox, "uidvalidity": uidvalidity, "updated_at": utc_now()}
        if inserted(session.connection(), _MAILBOXES, {**new, "highest_recorded_uid": start_uid}):
            return None
        state = _mailbox_state(session, account, mailbox)
        assert state is not None, "the row exists: the insert found it"
        previous = state.uidvalidity
        if previous != uidvalidity:
            state.uidvalidity, state.highest_recorded_uid = uidvalidity, 0
            state.updated_at = utc_now()
        return previous


def watermark(store: Store, account: str, mailbox: str) -> int:
    """The highest UID below which every message of the mailbox has a recorded row."""
    with store.read_sessions() as session:
        state = _mailbox_state(session, account, mailbox)
        return state.highest_recorded_uid if state is not None else 0


def advance_watermark(store: Store, account: str, mailbox: str, uidvalidity: int, uid: int) -> None:
    with store.sessions.begin() as session:
        state = _mailbox_state(session, account, mailbox)
        if state is not None and state.uidvalidity == uidvalidity and uid > state.highest_recorded_uid:
            state.highest_recorded_uid = uid
            state.updated_at = utc_now()


def unfinished_uids(store: Store, account: str, mailbox: str, uidvalidity: int) -> list[int]:
    """Failed messages, and claims no live process holds: the ones to run again.

    Found through the status index, then their messages by key. As one join, SQLite's planner
    walks the whole mailbox generation instead: 68 ms at 200,000 messages, at every catch-up.
    """
    generation = (account, mailbox, uidvalidity)
    found: list[int] = []
    with store.engine.connect() as connection:
        keys = list(connection.execute(_UNFINISHED_MESSAGE_KEYS, {"owner": store.owner}).scalars())
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = {"keys": keys[start : start + _KEYS_PER_QUERY]}
            for *where, uid in connection.execute(_IDENTITIES_BY_KEY, chunk):
                if tuple(where) == generation:
                    found.append(uid)
    return sorted(found)


def decided_uids(store: Store, account: str, mailbox: str, uidvalidity: int, above: int = 0) -> set[int]:
    """UIDs (above `above`) whose outcome is final; the rest of the mailbox still needs triage."""
    query = _recorded_uids(account, mailbox, uidvalidity).where(
        StoredMessage.uid > above, DecisionRecord.status.in_(FINAL_STATUSES)
    )
    with store.read_sessions() as session:
        return set(session.scalars(query))


def held_elsewhere(store: Store, account: str, mailbox: str, uidvalidity: int, uids: list[int]) -> set[int]:
    """Those of `uids` whose run another live process is making now."""
    query = _recorded_uids(account, mailbox, uidvalidity).where(
        DecisionRecord.status == "pending",
        DecisionRecord.claimed_by != store.owner,
        DecisionRecord.claimed_by.in_(LIVE_OWNERS),
    )
    wanted = set(uids)
    with store.read_sessions() as session:
        return {uid for uid in session.scalars(query) if uid in wanted}


def reopenable(store: Store, account: str, status: str, since: date | None) -> dict[str, set[int]]:
    """The UIDs per mailbox that `reopen` would make pending (it changes nothing)."""
    chosen: dict[str, set[int]] = {}
    with store.read_sessions() as session:
        for _, mailbox, uid in session.execute(_reopen_query(account, status, since)):
            chosen.setdefault(mailbox, set()).add(uid)
    return chosen


def reopen(store: Store, account: str, status: str, since: date | None) -> dict[str, set[int]]:
    """Make chosen decisions of the mailboxes' current generation pending again, to be re-run.

    Returns the UIDs per mailbox; the next pass (or the daemon) runs them again.
    """
    chosen: dict[str, set[int]] = {}
    with store.sessions.begin() as session:
        for record, mailbox, uid in session.execute(_reopen_query(account, status, since)):
            record.status, record.claimed_by, record.updated_at = "pending", None, utc_now()
            chosen.setdefault(mailbox, set()).add(uid)
    return chosen


def _reopen_query(account: str, status: str, since: date | None) -> Select[DecisionRecord, str, int]:
    """Decisions of one status (recorded since a day) in the mailboxes' current generation."""
    query = (
        select(DecisionRecord, StoredMessage.mailbox, StoredMessage.uid)
        .join(StoredMessage, DecisionRecord.message_pk == StoredMessage.id)
        .join(
            MailboxState,
            (MailboxState.account == StoredMessage.account)
            & (MailboxState.name == StoredMessage.mailbox)
            & (MailboxState.uidvalidity == StoredMessage.uidvalidity),
        )
        .where(StoredMessage.account == account, DecisionRecord.status == status)
    )
    if since is not None:
        query = query.where(DecisionRecord.updated_at >= datetime.combine(since, time.min, UTC))
    return query


def _recorded_uids(account: str, mailbox: str, uidvalidity: int) -> Select[int]:
    """UIDs of one mailbox generation that have a decision row."""
    return (
        select(StoredMessage.uid)
        .join(DecisionRecord, DecisionRecord.message_pk == StoredMessage.id)
        .where(
            StoredMessage.account == account,
            StoredMessage.mailbox == mailbox,
            StoredMessage.uidvalidity == uidvalidity,
        )
    )


def _mailbox_state(session: Session, account: str, mailbox: str) -> MailboxState | None:
    return session.scalar(
        select(MailboxState).where(MailboxState.account == account, MailboxState.name == mailbox)
    )
