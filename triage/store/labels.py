"""Labels: the decisions a person corrected, confirmed or re-filed, as the examples read them.

A decision's latest label counts (labels are append-only rows of the corrections table). The
examples read the newest labels of the whole store at once and keep them in memory, so what this
module answers is one query when labels change, and one tiny one to tell whether they have.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import aliased

from triage.clock import utc_now
from triage.store import tables
from triage.store.tables import as_utc

_CORRECTIONS = tables.corrections
_DECISIONS = tables.decisions
_MESSAGES = tables.messages


@dataclass(frozen=True, slots=True)
class Label:
    """A decision's latest label, with the message fields an example shows."""

    decision_pk: int
    label_id: int
    kind: str  # correction | confirmation | filing
    decision: str
    thread_id: str | None
    note: str | None
    recorded_status: str
    recorded_decision: str | None
    decided_at: datetime
    account: str
    from_addresses: list[list[str]] | None
    list_id: str | None
    subject: str | None
    body: str | None


@dataclass(frozen=True, slots=True)
class NewLabel:
    """A label to add to an earlier decision along with a message's outcome (the user's filing)."""

    decision_pk: int
    kind: str
    decision: str
    note: str | None = None


def last_label_id(connection: Connection) -> int:
    """The newest label's id (0 for none): labels changed since a reading when this did."""
    return connection.execute(select(func.coalesce(func.max(_CORRECTIONS.c.id), 0))).scalar_one()


def latest_labels(connection: Connection, limit: int) -> Iterator[Label]:
    """The latest label of each labelled decision, newest first, at most `limit` of them."""
    newer = aliased(_CORRECTIONS)
    latest = select(func.max(newer.c.id)).where(newer.c.decision_pk == _CORRECTIONS.c.decision_pk)
    query = (
        select(
            _CORRECTIONS.c.decision_pk,
            _CORRECTIONS.c.id,
            _CORRECTIONS.c.kind,
            _CORRECTIONS.c.decision,
            _CORRECTIONS.c.thread_id,
            _CORRECTIONS.c.note,
            _DECISIONS.c.status,
            _DECISIONS.c.decision,
            _DECISIONS.c.created_at,
            _MESSAGES.c.account,
            _MESSAGES.c.from_addresses,
            _MESSAGES.c.list_id,
            _MESSAGES.c.subject,
            _MESSAGES.c.body_excerpt,
        )
        .join(_DECISIONS, _DECISIONS.c.id == _CORRECTIONS.c.decision_pk)
        .join(_MESSAGES, _MESSAGES.c.id == _DECISIONS.c.message_pk)
        .where(_CORRECTIONS.c.id == latest.scalar_subquery())
        .order_by(_CORRECTIONS.c.id.desc())
        .limit(limit)
    )
    for row in connection.execute(query):
        pk, label_id, kind, decision, thread_id, note, status, recorded, decided_at, *message = row
        account, addresses, list_id, subject, body = message
        yield Label(
            pk,
            label_id,
            kind,
            decision,
            thread_id,
            note,
            status,
            recorded,
            as_utc(decided_at),
            account,
            addresses,
            list_id,
            subject,
            body,
        )


def add_label(
    connection: Connection,
    decision_pk: int,
    kind: str,
    decision: str,
    *,
    thread_id: str | None = None,
    note: str | None = None,
    author: str | None = None,
) -> dict[str, Any]:
    """Append a label to a decision (in the caller's transaction); the row as written."""
    row = {
        "decision_pk": decision_pk,
        "kind": kind,
        "decision": decision,
        "thread_id": thread_id,
        "note": note,
        "author": author,
        "created_at": utc_now(),
    }
    inserted = connection.execute(_CORRECTIONS.insert().values(**row)).inserted_primary_key
    assert inserted is not None, "an insert has a primary key"
    return {**row, "id": inserted[0]}
