"""Routing outcomes on decision rows: what is left to carry out, what was done, and who does it.

Routing is claimed like a run (store.processes): a process carries a decision out only while it
holds that decision's routing claim, so two processes never both start its thread's run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update

from triage.clock import utc_now
from triage.store.models import DecisionRecord, StoredMessage
from triage.store.processes import LIVE_OWNERS

if TYPE_CHECKING:
    from triage.store.decisions import Store

UNFINISHED = ("pending", "error")


def _free_for(owner: str) -> Any:
    """Routing no other live process holds."""
    holder = DecisionRecord.routing_claimed_by
    return or_(holder.is_(None), holder == owner, holder.not_in(LIVE_OWNERS))


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
    store: Store,
    account: str,
    mailbox: str,
    uidvalidity: int,
    uids: list[int] | None = None,
    statuses: tuple[str, ...] = UNFINISHED,
) -> list[RoutingJob]:
    """Unfinished routing of a mailbox's current generation (optionally of these UIDs only) that no
    other live process holds; or routing of other `statuses` (`dry-run`: never carried out)."""
    query = (
        select(DecisionRecord, StoredMessage)
        .join(StoredMessage, DecisionRecord.message_pk == StoredMessage.id)
        .where(
            StoredMessage.account == account,
            StoredMessage.mailbox == mailbox,
            StoredMessage.uidvalidity == uidvalidity,
            DecisionRecord.routing_status.in_(statuses),
            _free_for(store.owner),
        )
        .order_by(StoredMessage.uid)
    )
    if uids is not None:
        query = query.where(StoredMessage.uid.in_(uids))
    with store.read_sessions() as session:
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


def make_pending(store: Store, decision_pks: list[int]) -> int:
    """Routing recorded but never carried out (`dry-run`) becomes due; how many were."""
    if not decision_pks:
        return 0
    with store.sessions.begin() as session:
        made = session.execute(
            update(DecisionRecord)
            .where(DecisionRecord.id.in_(decision_pks), DecisionRecord.routing_status == "dry-run")
            .values(routing_status="pending", routing_claimed_by=None)
        )
        return int(made.rowcount)  # type: ignore[attr-defined]


def statuses_of(store: Store, decision_pks: list[int]) -> Counter[str]:
    """How many of these decisions' routing is in each status."""
    if not decision_pks:
        return Counter()
    query = select(DecisionRecord.routing_status).where(DecisionRecord.id.in_(decision_pks))
    with store.read_sessions() as session:
        return Counter(str(status) for status in session.scalars(query))


def claim(store: Store, decision_pk: int) -> bool:
    """Take a decision's unfinished routing for this process; False if another live one holds it."""
    with store.sessions.begin() as session:
        taken = session.execute(
            update(DecisionRecord)
            .where(
                DecisionRecord.id == decision_pk,
                DecisionRecord.routing_status.in_(UNFINISHED),
                _free_for(store.owner),
            )
            .values(routing_claimed_by=store.owner)
        )
        return bool(taken.rowcount)  # type: ignore[attr-defined]


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
    """Write a routing step's outcome beside the decision (never over it).

    Pending routing stays this process's (its mailbox actions are still to come); done or failed
    routing is let go, for any process to retry.
    """
    with store.sessions.begin() as session:
        row = session.get_one(DecisionRecord, decision_pk)
        row.routing_status = status
        row.routing_claimed_by = store.owner if status == "pending" else None
        row.routing_error = error
        row.routing_attempts = (row.routing_attempts or 0) + 1
        if thread_id is not None:
            row.routing_thread_id = thread_id
        if run_id is not None:
            row.routing_run_id = run_id
        if actions is not None:
            row.routing_actions = actions
        if status == "done":
            row.routed_at = utc_now()
