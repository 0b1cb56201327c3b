"""One decision, found and explained: `triage show` and the web's decision page.

Everything known about it: what the model saw, what it said, what was done, who corrected it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.errors import TriageError
from triage.log.query import in_utc
from triage.store.decisions import Store
from triage.store.models import Correction, DecisionRecord, StoredMessage


def resolve(store: Store, ref: str) -> int:
    """A decision id, or the Message-ID of exactly one recorded message (brackets optional)."""
    with Session(store.engine) as session:
        if ref.strip().isdigit():
            if session.get(DecisionRecord, int(ref)) is None:
                raise TriageError(f"no decision with id {ref}")
            return int(ref)
        bare = ref.strip().strip("<>")
        found = list(
            session.scalars(
                select(DecisionRecord.id)
                .join(StoredMessage, StoredMessage.id == DecisionRecord.message_pk)
                .where(StoredMessage.message_id.in_((bare, f"<{bare}>")))
                .order_by(DecisionRecord.id)
            )
        )
    if not found:
        raise TriageError(f"no decision with id or Message-ID {ref!r}")
    if len(found) > 1:
        raise TriageError(f"Message-ID {ref!r} was recorded {len(found)} times (ids {found}): give an id")
    return found[0]


def column_values(row: Any) -> dict[str, Any]:
    """A mapped row's columns by name, its times in UTC."""
    return {attr.key: in_utc(getattr(row, attr.key)) for attr in row.__mapper__.column_attrs}


def explain(store: Store, decision_id: int) -> dict[str, Any]:
    """Everything known about one decision: what the model saw, what it said, what was done."""
    with Session(store.engine) as session:
        record = session.get(DecisionRecord, decision_id)
        if record is None:
            raise TriageError(f"no decision with id {decision_id}")
        message = session.get_one(StoredMessage, record.message_pk)
        corrections = session.scalars(
            select(Correction).where(Correction.decision_pk == decision_id).order_by(Correction.id)
        )
        decision = column_values(record)
        # What routing did (threads, IMAP actions), where the store records it; None when nothing.
        routing = {k: v for k, v in decision.items() if k.startswith(("routing_", "routed_"))}
        apart = ("prompt", "raw_response", *routing)
        return {
            "id": decision_id,
            "message": column_values(message),
            "decision": {k: v for k, v in decision.items() if k not in apart},
            "prompt": record.prompt,
            "raw_response": record.raw_response,
            "decided_by": _decided_by(record),
            "routing": routing if any(v not in (None, 0) for v in routing.values()) else None,
            "corrections": [column_values(c) for c in corrections],
        }


def _decided_by(record: DecisionRecord) -> str:
    """Which part of triage settled it: the parser, a rule, the headers, a run, or an earlier twin."""
    by, replayed = record.decided_by, record.decided_by.startswith("replay:")
    if replayed:
        by = by.removeprefix("replay:")
    if by == "parser":
        text = "the message parser: the bytes are not an email, no run was made"
    elif by.startswith("carried-over:"):
        text = (
            f"carried over from decision {by.partition(':')[2]} (the same mail under an earlier UIDVALIDITY)"
        )
    elif by.startswith("filing:"):
        text = f"the user's filing: the mail of decision {by.partition(':')[2]} moved by hand, without a run"
    elif by.startswith("moved:"):
        text = f"decision {by.partition(':')[2]}, which moved the mail here, without a run"
    elif by.startswith("rule:"):
        text = f"the configured rule {by.partition(':')[2]!r}, without a run"
    elif by == "headers":
        text = (
            "the headers: In-Reply-To / References (or Gmail's thread id) tie it to the thread, without a run"
        )
    else:
        run = f"run {record.run_id}" if record.run_id else "a run"
        text = f"{run} of assistant {record.assistant_id!r} with template {record.template_hash}"
    return f"a replay: {text}" if replayed else text
