"""The thread registry: threads new tasks started, the messages in them, and candidate ranking."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from triage.errors import TriageError
from triage.message import Email
from triage.store.models import Thread, ThreadMessage, ThreadParticipant, as_utc
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
    people = participants(email)
    thread = session.get(Thread, assignment.thread_id)
    created = thread is None and assignment.title is not None
    if created:
        thread = Thread(
            id=assignment.thread_id,
            account=account,
            mailbox=mailbox,
            title=assignment.title,
            subject_key=subject_key(email.subject),
            participants=people,
            started_by=message_pk,
            status="open",
            created_at=now,
            last_activity_at=now,
        )
        session.add(thread)
        session.flush()
    elif thread is not None:  # a reply joins it, or a retried new task finds the one it started
        thread.last_activity_at = now
        thread.participants = sorted(set(thread.participants) | set(people))
    if thread is not None:
        listed = ThreadParticipant.address.in_(people) & (ThreadParticipant.thread_id == thread.id)
        known = set() if created else set(session.scalars(select(ThreadParticipant.address).where(listed)))
        session.add_all(ThreadParticipant(thread_id=thread.id, address=a) for a in people if a not in known)
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
    normalised subject or a thread its sender took part in, then the most recently active. Each
    tier is one indexed query of at most `limit` rows, however large the registry grows.
    """
    if limit <= 0:
        return []
    ids = [i for i in [email.in_reply_to, *reversed(email.references)] if i]
    key = subject_key(email.subject)
    senders = sorted({a.email.lower() for a in [*email.from_, *email.reply_to] if a.email})
    open_threads = select(Thread).where(Thread.account == account, Thread.status == "open")
    newest_first = Thread.last_activity_at.desc()
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
        by_proof = list(session.scalars(open_threads.where(Thread.id.in_(proved)))) if proved else []
        shared_people = Thread.id.in_(
            select(ThreadParticipant.thread_id).where(ThreadParticipant.address.in_(senders))
        )
        alike = or_(Thread.subject_key == key, shared_people) if key else shared_people
        related = list(session.scalars(open_threads.where(alike).order_by(newest_first).limit(limit)))
        recent = list(session.scalars(open_threads.order_by(newest_first).limit(limit)))
    ranked: dict[str, Thread] = {}
    for tier in (sorted(by_proof, key=lambda t: proved.index(t.id)), related, recent):
        for thread in tier:
            ranked.setdefault(thread.id, thread)
    best = list(ranked.values())[:limit]
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
