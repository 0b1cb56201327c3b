"""Examples: past decisions a person labelled, chosen for a new message's prompt.

The assistant keeps no memory between stateless runs, so what it should know of this user's
corrections arrives in the prompt: up to `prompt.max_examples` labelled decisions of the same
account, most relevant first: the same sender address, then the same list or sender domain, then the
most similar subject and text (shared words, rarer words weighing more).

The newest labels (at most `POOL_LIMIT`) are held in memory, indexed by sender, list, domain and
word, so choosing costs a few dictionary look-ups per message instead of queries. The pool is read
again when the labels change: checked every `RECHECK_S`, and at once after this process adds one.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from triage.log.labels import label
from triage.message import Email, list_key
from triage.store.decisions import Store
from triage.store.labels import Label, last_label_id, latest_labels

POOL_LIMIT = 20_000
RECHECK_S = 5.0
EXCERPT_CHARS = 240
_WORD = re.compile(r"[^\W\d_]{4,}")
# Words in more than this share of the pool say nothing about similarity.
_COMMON_SHARE = 0.05


def _words(text: str) -> set[str]:
    return {word.casefold() for word in _WORD.findall(text)}


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled past decision, as offered in a prompt and stored with the decision it informed."""

    decision_id: int
    kind: str  # correction | confirmation | filing
    sender: str  # the address, lower-case
    list_id: str  # list_key() of its List-Id, or ""
    subject: str
    excerpt: str
    decision: str  # the label's: the decision after the person's word
    thread_id: str | None
    was: str | None  # what was recorded before a correction changed it
    note: str | None
    decided_at: datetime  # when the labelled decision was made (replay leaves out later ones)

    @property
    def domain(self) -> str:
        return self.sender.rpartition("@")[2]

    def as_record(self) -> dict[str, Any]:
        """As stored with the decision it informed (JSON)."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**record, "decided_at": self.decided_at.isoformat()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Example:
        values: dict[str, Any] = {f.name: record.get(f.name) for f in fields(cls)}
        return cls(**{**values, "decided_at": datetime.fromisoformat(record["decided_at"])})

    @classmethod
    def of(cls, found: Label) -> Example:
        addresses = found.from_addresses or []
        sender = addresses[0][1].lower() if addresses and len(addresses[0]) > 1 else ""
        recorded = label(found.recorded_status, found.recorded_decision)
        body = " ".join((found.body or "").split())
        return cls(
            found.decision_pk,
            found.kind,
            sender,
            list_key(found.list_id),
            found.subject or "",
            body[:EXCERPT_CHARS],
            found.decision,
            found.thread_id,
            recorded if found.kind != "confirmation" and recorded != found.decision else None,
            found.note,
            found.decided_at,
        )


class ExamplePool:
    """Labelled decisions indexed for choosing; one per decision (its latest label)."""

    def __init__(self, examples: Iterable[tuple[str, Example]]) -> None:
        self._by_sender: dict[tuple[str, str], list[Example]] = defaultdict(list)
        self._by_list: dict[tuple[str, str], list[Example]] = defaultdict(list)
        self._by_domain: dict[tuple[str, str], list[Example]] = defaultdict(list)
        self._by_word: dict[tuple[str, str], list[Example]] = defaultdict(list)
        size = 0
        for account, example in examples:
            size += 1
            if example.sender:
                self._by_sender[account, example.sender].append(example)
                self._by_domain[account, example.domain].append(example)
            if example.list_id:
                self._by_list[account, example.list_id].append(example)
            for word in _words(f"{example.subject} {example.excerpt}"):
                self._by_word[account, word].append(example)
        self._common = max(20, int(size * _COMMON_SHARE))
        self.size = size

    def choose(
        self,
        account: str,
        email: Email,
        limit: int,
        *,
        before: datetime | None = None,
        leave_out: int | None = None,
    ) -> list[Example]:
        """Up to `limit` examples for this email, most relevant first (newest first within a kind).

        `before` and `leave_out` are replay's: only decisions made before a time, and not one's own.
        """
        if limit <= 0 or not self.size:
            return []
        chosen: dict[int, Example] = {}

        def offer(candidates: Iterable[Example]) -> bool:
            for example in candidates:
                if example.decision_id == leave_out or (before is not None and example.decided_at >= before):
                    continue
                chosen.setdefault(example.decision_id, example)
                if len(chosen) >= limit:
                    return True
            return False

        sender = email.from_[0].email.lower() if email.from_ else ""
        listed = list_key(email.list_id)
        domain = sender.rpartition("@")[2]
        if (
            offer(self._by_sender.get((account, sender), ()) if sender else ())
            or offer(self._by_list.get((account, listed), ()) if listed else ())
            or offer(self._by_domain.get((account, domain), ()) if domain else ())
        ):
            return list(chosen.values())
        offer(self._similar(account, email))
        return list(chosen.values())

    def _similar(self, account: str, email: Email) -> list[Example]:
        scores: dict[int, float] = defaultdict(float)
        found: dict[int, Example] = {}
        for word in _words(f"{email.subject} {email.body[: EXCERPT_CHARS * 2]}"):
            sharing = self._by_word.get((account, word), ())
            if not sharing or len(sharing) > self._common:
                continue
            weight = 1.0 / len(sharing)
            for example in sharing:
                scores[example.decision_id] += weight
                found[example.decision_id] = example
        return [found[pk] for pk in sorted(scores, key=scores.__getitem__, reverse=True)]


class Examples:
    """The examples of one process: the pool, read again when the store's labels change."""

    def __init__(self, store: Store | None, limit: int) -> None:
        self.store = store
        self.limit = limit
        self._pool = ExamplePool(())
        self._read_at_label = -1
        self._checked_at = float("-inf")

    def stale(self) -> None:
        """This process added a label: read the pool again before the next choice."""
        self._checked_at = float("-inf")

    def pool(self) -> ExamplePool:
        if self.store is None or self.limit <= 0:
            return self._pool
        now = time.monotonic()
        if now - self._checked_at >= RECHECK_S:
            self._checked_at = now
            with self.store.reading() as connection:
                newest = last_label_id(connection)
                if newest != self._read_at_label:
                    labels = list(latest_labels(connection, POOL_LIMIT))
                    self._pool = ExamplePool((found.account, Example.of(found)) for found in labels)
                    self._read_at_label = newest
        return self._pool

    def choose(self, account: str, email: Email, **replay: Any) -> list[Example]:
        return self.pool().choose(account, email, self.limit, **replay)
