"""Routing outcomes on decision rows: what is left to carry out, and what was done."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from triage.store.models import DecisionRecord, StoredMessage

if TYPE_CHECKING:
    from triage.store import Store

UNFINISHED = ("pending", "error")


@dataclass(frozen=True, slots=True)
class RoutingJob:
    """A recorded decision whose routing is not done, with what carrying it out needs."""

    decision_pk: int
    account: str
    mailbox: str
    uidvalidity: int
    uid: int
    decision: str
    status: str
    thread_id: str | None
    title: str | None
    message_id: str | None
    subject: str
    sender: str
    body: str
    run_id: str | None
    done_actions: list[str]


def jobs(
    store: Store, account: str, mailbox: str, uidvalidity: int, uids: list[int] | None = None
) -> list[RoutingJob]:
    """Unfinished routing of a mailbox's current generation (optionally of these UIDs only)."""
    query = (
        select(DecisionRecord, StoredMessage)
        .join(StoredMessage, DecisionRecord.message_pk == StoredMessage.id)
        .where(
            StoredMessage.account == account,
            StoredMessage.mailbox == mailbox,
            StoredMessage.uidvalidity == uidvalidity,
            DecisionRecord.routing_status.in_(UNFINISHED),
        )
        .order_by(StoredMessage.uid)
    )
    if uids is not None:
        query = query.where(StoredMessage.uid.in_(uids))
    with store.sessions() as session:
        return [
            RoutingJob(
                decision_pk=d.id,
                account=m.account,
                mailbox=m.mailbox,
                uidvalidity=m.uidvalidity,
                uid=m.uid,
                decision=d.decision or d.status,
                status=d.status,
                thread_id=d.thread_id,
                title=d.title,
                message_id=m.message_id,
                subject=m.subject or "",
                sender=m.sender or "",
                body=m.body_excerpt or "",
                run_id=d.routing_run_id,
                done_actions=list((d.routing_actions or {}).get("done", [])),
            )
            for d, m in session.execute(query)
        ]


def record(
    store: Store,
    decision_pk: int,
    status: str,
    *,
    thread_id: str | None = None,
    run_id: str | None = None,
    actions: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Write a routing step's outcome beside the decision (never over it)."""
    with store.sessions.begin() as session:
        row = session.get_one(DecisionRecord, decision_pk)
        row.routing_status = status
        row.routing_error = error
        row.routing_attempts = (row.routing_attempts or 0) + 1
        if thread_id is not None:
            row.routing_thread_id = thread_id
        if run_id is not None:
            row.routing_run_id = run_id
        if actions is not None:
            row.routing_actions = actions
        if status == "done":
            row.routed_at = datetime.now(UTC)
