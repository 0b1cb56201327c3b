"""Human corrections: recorded beside the decisions they correct, never over them; the queue to review.

The latest correction of a decision counts (corrections are append-only).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import exists, select

from triage.decision import normalise_kind
from triage.errors import TriageError
from triage.log.labels import KINDS
from triage.log.query import column_values
from triage.store import Store
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
    with store.sessions.begin() as session:  # under the write lock from its first read
        if session.get(DecisionRecord, decision_id) is None:
            raise TriageError(f"no decision with id {decision_id}")
        correction = Correction(
            decision_pk=decision_id,
            decision=kind,
            thread_id=thread_id,
            note=note,
            author=author,
            created_at=datetime.now(UTC),
        )
        session.add(correction)
        session.flush()
        return column_values(correction)


def review_queue(store: Store, *, include_all: bool, limit: int) -> list[int]:
    """Ids to walk through: uncorrected needs-review decisions, or with `include_all` recent ones."""
    query = select(DecisionRecord.id).order_by(DecisionRecord.id.desc()).limit(limit)
    if not include_all:
        uncorrected = ~exists().where(Correction.decision_pk == DecisionRecord.id)
        query = query.where(DecisionRecord.status == "needs-review", uncorrected)
    with store.engine.connect() as connection:
        return list(connection.scalars(query))
