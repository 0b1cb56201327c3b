"""The thread registry: threads new tasks started, the messages in them, and candidate ranking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from triage.errors import TriageError
from triage.message import Email
from triage.store.models import Thread, ThreadMessage, as_utc
from triage.threads import ThreadCandidate, participants, subject_key

if TYPE_CHECKING:
    from triage.store import Store

# How many recently active threads are looked at for subject and participant matches.
_RECENT_WINDOW = 500


@dataclass(frozen=True, slots=True)
class ThreadAssignment:
    """A message joining a thread; `title` set means the message starts it (a new task)."""

    thread_id: str
    message_id: str | None
    title: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def assign(
    session: Session, message_pk: int, account: str, mailbox: str, email: Email, assignment: ThreadAssignment
) -> None:
    """Record the assignment inside the caller's transaction (with the decision itself)."""
    now = _now()
    if assignment.title is not None and session.get(Thread, assignment.thread_id) is None:
        session.add(
            Thread(
                id=assignment.thread_id,
                account=account,
                mailbox=mailbox,
                title=assignment.title,
                subject_key=subject_key(email.subject),
                participants=participants(email),
                started_by=message_pk,
                status="open",
                created_at=now,
                last_activity_at=now,
            )
        )
        session.flush()
    else:
        thread = session.get(Thread, assignment.thread_id)
        if thread is not None:
            thread.last_activity_at = now
            thread.participants = sorted(set(thread.participants) | set(participants(email)))
    existing = session.scalar(select(ThreadMessage).where(ThreadMessage.message_pk == message_pk))
    if existing is None:
        session.add(
            ThreadMessage(
                thread_id=assignment.thread_id, message_pk=message_pk, message_id=assignment.message_id
            )
        )
    else:
        existing.thread_id = assignment.thread_id


def carry_membership(session: Session, from_message_pk: int, to_message_pk: int) -> None:
    """A message recorded again under a new identity stays in its thread."""
    member = session.scalar(select(ThreadMessage).where(ThreadMessage.message_pk == from_message_pk))
    if member is not None:
        session.add(
            ThreadMessage(thread_id=member.thread_id, message_pk=to_message_pk, message_id=member.message_id)
        )


def candidates(store: Store, account: str, email: Email, limit: int) -> list[ThreadCandidate]:
    """Open threads this email may belong to, best first.

    Proved by headers (In-Reply-To / References naming a message in a thread), then the same
    normalised subject or a shared participant, then the most recently active.
    """
    if limit <= 0:
        return []
    ids = [i for i in [email.in_reply_to, *reversed(email.references)] if i]
    key = subject_key(email.subject)
    people = set(participants(email))
    with store.sessions() as session:
        proved: list[str] = []
        if ids:
            rows = session.execute(
                select(ThreadMessage.message_id, ThreadMessage.thread_id).where(
                    ThreadMessage.message_id.in_(ids)
                )
            ).all()
            by_message = {message_id: thread_id for message_id, thread_id in rows}
            proved = list(dict.fromkeys(by_message[i] for i in ids if i in by_message))
        open_threads = select(Thread).where(Thread.account == account, Thread.status == "open")
        found: dict[str, Thread] = {
            t.id: t for t in session.scalars(open_threads.where(Thread.id.in_(proved)))
        }
        if key:
            found.update(
                {t.id: t for t in session.scalars(open_threads.where(Thread.subject_key == key).limit(limit))}
            )
        recent = session.scalars(open_threads.order_by(Thread.last_activity_at.desc()).limit(_RECENT_WINDOW))
        found.update({t.id: t for t in recent if t.id not in found})

    def rank(thread: Thread) -> tuple[int, float]:
        if thread.id in proved:
            tier = 0
        elif (key and thread.subject_key == key) or people & set(thread.participants):
            tier = 1
        else:
            tier = 2
        return tier, -as_utc(thread.last_activity_at).timestamp()

    best = sorted(found.values(), key=rank)[:limit]
    return [ThreadCandidate(t.id, t.title, as_utc(t.last_activity_at), t.id in proved) for t in best]


def list_threads(store: Store, status: str | None = None) -> list[Thread]:
    query = select(Thread).order_by(Thread.last_activity_at.desc())
    if status is not None:
        query = query.where(Thread.status == status)
    with store.sessions() as session:
        return list(session.scalars(query))


def close(store: Store, thread_id: str) -> None:
    with store.sessions.begin() as session:
        done = session.execute(update(Thread).where(Thread.id == thread_id).values(status="closed"))
        if not done.rowcount:  # type: ignore[attr-defined]
            raise TriageError(f"no thread with id {thread_id!r}")
