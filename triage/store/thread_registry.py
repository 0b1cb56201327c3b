"""The thread registry: threads new tasks started, the messages in them, and candidate ranking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, select, union_all, update

from triage.clock import utc_now
from triage.errors import TriageError
from triage.store import tables
from triage.store.conflicts import inserted
from triage.store.models import Thread
from triage.store.tables import as_utc
from triage.threads import ThreadCandidate, participants, subject_key

if TYPE_CHECKING:
    from triage.message import Email
    from triage.store.decisions import Claimed, Store

_THREADS = tables.threads
_MEMBERS = tables.thread_messages
_PARTICIPANTS = tables.thread_participants
_MESSAGES = tables.messages
# Built once (see triage.store): the bound names below are not column names.
_THREAD_PARTICIPANTS = select(_THREADS.c.participants).where(_THREADS.c.id == bindparam("thread_id"))
_TOUCH_THREAD = update(_THREADS).where(_THREADS.c.id == bindparam("thread_id"))
_TOUCH_PARTICIPANTS = update(_PARTICIPANTS).where(_PARTICIPANTS.c.thread_id == bindparam("touched"))
_MEMBER = select(_MEMBERS.c.id).where(_MEMBERS.c.message_pk == bindparam("member_pk"))
_MOVE_MEMBER = update(_MEMBERS).where(_MEMBERS.c.message_pk == bindparam("member_pk"))
_MEMBERS_BY_MESSAGE_ID = select(_MEMBERS.c.message_id, _MEMBERS.c.thread_id).where(
    _MEMBERS.c.message_id.in_(bindparam("ids", expanding=True))
)
_MEMBERS_BY_GMAIL_THREAD = (
    select(_MEMBERS.c.thread_id)
    .distinct()
    .join(_MESSAGES, _MESSAGES.c.id == _MEMBERS.c.message_pk)
    .where(
        _MESSAGES.c.account == bindparam("account"),
        _MESSAGES.c.gmail_thread_id == bindparam("gmail_thread_id"),
    )
)
_OPEN = select(_THREADS.c.id, _THREADS.c.title, _THREADS.c.last_activity_at).where(
    _THREADS.c.account == bindparam("account"), _THREADS.c.status == "open"
)
_OPEN_BY_ID = _OPEN.where(_THREADS.c.id.in_(bindparam("ids", expanding=True)))
# Each of these walks one index in order of activity and stops after `limit` rows.
_NEWEST_FIRST = _THREADS.c.last_activity_at.desc()
_SAME_SUBJECT = (
    _OPEN.where(_THREADS.c.subject_key == bindparam("subject_key"))
    .order_by(_NEWEST_FIRST)
    .limit(bindparam("limit"))
)
_SAME_PERSON = (
    _OPEN.join(_PARTICIPANTS, _PARTICIPANTS.c.thread_id == _THREADS.c.id)
    .where(_PARTICIPANTS.c.address == bindparam("address"))
    .order_by(_PARTICIPANTS.c.last_activity_at.desc())
    .limit(bindparam("limit"))
)
_RECENT = _OPEN.order_by(_NEWEST_FIRST).limit(bindparam("limit"))
# Both in one statement, each side still its own walk; a subject or sender that is absent is NULL,
# which matches nothing.
_SAME_SUBJECT_OR_PERSON = union_all(select(_SAME_SUBJECT.subquery()), select(_SAME_PERSON.subquery()))


@dataclass(frozen=True, slots=True)
class ThreadAssignment:
    """A message joining a thread; `title` set means the message starts it (a new task)."""

    thread_id: str
    message_id: str | None
    title: str | None = None


def assign(connection: Connection, claimed: Claimed, email: Email, assignment: ThreadAssignment) -> None:
    """Record the assignment inside the caller's transaction (with the decision itself)."""
    message_pk = claimed.message_pk
    now = utc_now()
    people = participants(email)
    thread = {"thread_id": assignment.thread_id}
    # A new task's thread id is its message's (thread_id_for), and a thread keeps the message that
    # started it (threads.started_by): a message whose row this claim made has started none yet.
    starts_afresh = claimed.fresh and assignment.title is not None
    found = None if starts_afresh else connection.execute(_THREAD_PARTICIPANTS, thread).first()
    if found is None and assignment.title is not None:
        started = {
            "id": assignment.thread_id,
            "account": claimed.account,
            "mailbox": claimed.mailbox,
            "title": assignment.title,
            "subject_key": subject_key(email.subject),
            "participants": people,
            "started_by": message_pk,
            "status": "open",
            "created_at": now,
            "last_activity_at": now,
        }
        if inserted(connection, _THREADS, started):
            _add_participants(connection, assignment.thread_id, people, now, known=set())
        else:  # recorded a moment ago by another process
            found = connection.execute(_THREAD_PARTICIPANTS, thread).first()
    if found is not None:  # a reply joins it, or a retried new task finds the one it started
        everyone = sorted(set(found[0]) | set(people))
        connection.execute(_TOUCH_THREAD, {**thread, "last_activity_at": now, "participants": everyone})
        connection.execute(_TOUCH_PARTICIPANTS, {"touched": assignment.thread_id, "last_activity_at": now})
        _add_participants(connection, assignment.thread_id, people, now, known=set(found[0]))
    member = {"member_pk": message_pk}
    joins = {"thread_id": assignment.thread_id, "message_pk": message_pk, "message_id": assignment.message_id}
    if (claimed.fresh or connection.execute(_MEMBER, member).first() is None) and inserted(
        connection, _MEMBERS, joins
    ):
        return
    connection.execute(_MOVE_MEMBER, {**member, "thread_id": assignment.thread_id})


def _add_participants(
    connection: Connection, thread_id: str, people: list[str], now: datetime, known: set[str]
) -> None:
    """Index the addresses not yet listed for the thread (its JSON list mirrors the index)."""
    new = [
        {"thread_id": thread_id, "address": address, "last_activity_at": now}
        for address in people
        if address not in known
    ]
    if new:
        inserted(connection, _PARTICIPANTS, new)


def carry_membership(connection: Connection, from_message_pk: int, to_message_pk: int) -> None:
    """A message recorded again under a new identity stays in its thread."""
    member = connection.execute(
        select(_MEMBERS.c.thread_id, _MEMBERS.c.message_id).where(_MEMBERS.c.message_pk == from_message_pk)
    ).first()
    if member is not None:
        inserted(
            connection,
            _MEMBERS,
            {"thread_id": member[0], "message_pk": to_message_pk, "message_id": member[1]},
        )


def candidates(
    store: Store, account: str, email: Email, limit: int, gmail_thread_id: int | None = None
) -> list[ThreadCandidate]:
    """Open threads this email may belong to, best first.

    Proved by headers (In-Reply-To / References naming a message in a thread, or Gmail's thread id
    shared with one), then the same normalised subject or a thread its sender took part in, then
    the most recently active. Each tier is one indexed query of at most `limit` rows, however large
    the registry grows.
    """
    if limit <= 0:
        return []
    ids = [i for i in [email.in_reply_to, *reversed(email.references)] if i]
    key = subject_key(email.subject)
    senders = sorted({a.email.lower() for a in [*email.from_, *email.reply_to] if a.email})
    where = {"account": account, "limit": limit}
    with store.reading() as connection:
        proved: list[str] = []
        if ids:
            rows = connection.execute(_MEMBERS_BY_MESSAGE_ID, {"ids": ids}).all()
            by_message = {message_id: thread_id for message_id, thread_id in rows}
            proved = [by_message[i] for i in ids if i in by_message]
        if gmail_thread_id is not None:
            same = {"account": account, "gmail_thread_id": gmail_thread_id}
            proved += connection.execute(_MEMBERS_BY_GMAIL_THREAD, same).scalars()
        proved = list(dict.fromkeys(proved))
        by_proof = connection.execute(_OPEN_BY_ID, {**where, "ids": proved}).all() if proved else []
        first_sender = senders[0] if senders else None
        related_to = {**where, "subject_key": key or None, "address": first_sender}
        related = list(connection.execute(_SAME_SUBJECT_OR_PERSON, related_to))
        for address in senders[1:]:  # a Reply-To apart from the sender
            related += connection.execute(_SAME_PERSON, {**where, "address": address}).all()
        related.sort(key=lambda row: as_utc(row[2]), reverse=True)
        proof_first = sorted(by_proof, key=lambda row: proved.index(row[0]))
        ranked: dict[str, tuple[str, datetime]] = {}
        for thread_id, title, last_activity in [*proof_first, *related]:
            ranked.setdefault(thread_id, (title, last_activity))
        if len(ranked) < limit:  # the most recent threads come last: only asked for when there is room
            for thread_id, title, last_activity in connection.execute(_RECENT, where):
                ranked.setdefault(thread_id, (title, last_activity))
    best = list(ranked.items())[:limit]
    return [
        ThreadCandidate(thread_id, title, as_utc(last_activity), thread_id in proved)
        for thread_id, (title, last_activity) in best
    ]


def list_threads(store: Store, status: str | None = None) -> list[Thread]:
    query = select(Thread).order_by(Thread.last_activity_at.desc())
    if status is not None:
        query = query.where(Thread.status == status)
    with store.read_sessions() as session:
        return list(session.scalars(query))


def close(store: Store, thread_id: str) -> None:
    with store.sessions.begin() as session:
        done = session.execute(update(Thread).where(Thread.id == thread_id).values(status="closed"))
        if not done.rowcount:  # type: ignore[attr-defined]
            raise TriageError(f"no thread with id {thread_id!r}")
