"""Labels from people: corrections and confirmations, recorded beside the decisions, never over
them; the queue to review.

The latest label of a decision counts (labels are append-only). A confirmation is a label as much as
a correction: both become examples for later prompts (triage.examples).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, exists, select

from triage.decision import normalise_kind
from triage.errors import TriageError
from triage.log.labels import KINDS
from triage.store.decisions import Store
from triage.store.labels import add_label
from triage.store.models import Correction, DecisionRecord


def correct(
    store: Store,
    decision_id: int,
    decision: str,
    *,
    thread_id: str | None,
    note: str | None,
    author: str | None,
) -> dict[str, Any]:
    """Record a correction beside the decision; the decision row itself is never changed."""
    kind = normalise_kind(decision)
    if kind is None:
        raise TriageError(f"unknown decision {decision!r}: use one of {', '.join(KINDS)}")
    if kind == "existing-thread" and not thread_id:
        raise TriageError("a correction to existing-thread needs --thread THREAD_ID")
    if kind == "ignore" and thread_id:
        raise TriageError("an ignored message belongs to no thread: drop --thread")
    with store.writing() as connection:  # under the write lock from its first read
        _recorded(connection, decision_id)
        return add_label(
            connection, decision_id, "correction", kind, thread_id=thread_id, note=note, author=author
        )


def confirm(store: Store, decision_id: int, *, note: str | None, author: str | None) -> dict[str, Any]:
    """Record that a person accepts the decision as recorded (a label, like a correction); also a
    needs-review decision whose answer named one, which the person vouches for."""
    with store.writing() as connection:
        status, recorded, thread_id = _recorded(connection, decision_id)
        kind = normalise_kind(recorded or "")
        if kind is None:
            raise TriageError(
                f"decision {decision_id} is {status} with no decision to confirm: correct it with --decision"
            )
        return add_label(
            connection, decision_id, "confirmation", kind, thread_id=thread_id, note=note, author=author
        )


def _recorded(connection: Connection, decision_id: int) -> tuple[str, str | None, str | None]:
    """The decision's status, decision and thread, as recorded."""
    query = select(DecisionRecord.status, DecisionRecord.decision, DecisionRecord.thread_id)
    row = connection.execute(query.where(DecisionRecord.id == decision_id)).first()
    if row is None:
        raise TriageError(f"no decision with id {decision_id}")
    return row[0], row[1], row[2]


def review_queue(store: Store, *, include_all: bool, limit: int) -> list[int]:
    """Ids to walk through: uncorrected needs-review decisions, or with `include_all` recent ones."""
    query = select(DecisionRecord.id).order_by(DecisionRecord.id.desc()).limit(limit)
    if not include_all:
        uncorrected = ~exists().where(Correction.decision_pk == DecisionRecord.id)
        query = query.where(DecisionRecord.status == "needs-review", uncorrected)
    with store.engine.connect() as connection:
        return list(connection.scalars(query))
