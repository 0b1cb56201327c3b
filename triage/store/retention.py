"""Retention: forgetting what old mail said (bodies, prompts and raw responses), or whole rows.

`triage purge` and the daemon (store.keep_bodies_days) both come here. Forgotten text is really gone:
the search index is merged and the database vacuumed afterwards (SQLite; on PostgreSQL the tables
are vacuumed, which frees the old row versions but leaves them in the write-ahead log and backups).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, delete, func, null, select, update

from triage.store import tables
from triage.store.decisions import Store
from triage.store.engine import writer
from triage.store.models import Correction, DecisionRecord, StoredMessage
from triage.store.tables import SEARCH_INDEX

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Purged:
    bodies: int  # messages whose body was removed
    prompts: int  # decisions before the date: their prompt and raw response are gone
    deleted_decisions: int = 0
    deleted_messages: int = 0
    kept: int = 0  # whole rows asked for but kept: other tables (the thread registry) name their message


def purge(store: Store, before: datetime, *, keep_decisions: bool) -> Purged:
    """Forget what mail said before a date: bodies, prompts and raw responses, or whole rows.

    Decisions still pending (a run in flight) are left alone. Whole rows go with their message
    and corrections, except where another table (the thread registry) names the message; those
    keep their decision, without body or prompt. A later backfill over that period would triage
    the deleted messages again.
    """
    old = select(DecisionRecord.id).where(
        DecisionRecord.created_at < before.astimezone(UTC), DecisionRecord.status != "pending"
    )
    # It reads before it writes: begun under the write lock, or another writer (a daemon's
    # heartbeat) in between makes SQLite refuse the upgrade at once, whatever the busy timeout.
    with writer(store.engine).begin() as connection:
        bodies = connection.execute(
            update(StoredMessage)
            .where(StoredMessage.id.in_(old.with_only_columns(DecisionRecord.message_pk)))
            .where(StoredMessage.body_excerpt.is_not(None))
            .values(body_excerpt=None)
        ).rowcount
        prompts = connection.execute(
            update(DecisionRecord)
            .where(DecisionRecord.id.in_(old))
            # null(): a plain None would be stored as the JSON text 'null'
            .values(prompt=None, raw_response=null(), updated_at=datetime.now(UTC))
        ).rowcount
        purged = Purged(bodies, prompts) if keep_decisions else _delete_rows(connection, old, bodies, prompts)
    _compact(store)  # after the commit: VACUUM cannot run inside a transaction
    return purged


def _delete_rows(connection: Connection, old: Select[Any], bodies: int, prompts: int) -> Purged:
    """Delete the old decisions, their corrections and messages, unless another table names the message."""
    named = [DecisionRecord.message_pk.not_in(select(c).where(c.is_not(None))) for c in _message_references()]
    doomed = connection.execute(old.add_columns(DecisionRecord.message_pk).where(*named)).all()
    total = connection.execute(select(func.count()).select_from(old.subquery())).scalar_one()
    deleted_decisions = deleted_messages = 0
    for chunk in _chunks(doomed, 500):
        decision_ids, message_ids = [d for d, _ in chunk], [m for _, m in chunk]
        connection.execute(delete(Correction).where(Correction.decision_pk.in_(decision_ids)))
        deleted_decisions += connection.execute(
            delete(DecisionRecord).where(DecisionRecord.id.in_(decision_ids))
        ).rowcount
        deleted_messages += connection.execute(
            delete(StoredMessage).where(StoredMessage.id.in_(message_ids))
        ).rowcount
    return Purged(bodies, prompts, deleted_decisions, deleted_messages, total - len(doomed))


def _message_references() -> list[Any]:
    """Columns of other tables than the log's own that name a message (they must not dangle)."""
    own = {tables.decisions.name, tables.corrections.name}
    return [
        key.parent
        for table in tables.metadata.tables.values()
        if table.name not in own
        for key in table.foreign_keys
        if key.column.table is tables.messages
    ]


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _compact(store: Store) -> None:
    """Make forgotten text really gone: merge the search index, vacuum, empty the WAL."""
    dialect = store.engine.dialect.name
    if dialect == "postgresql":
        _vacuum_postgresql(store)
    if dialect != "sqlite":
        return
    with store.engine.connect() as connection:
        # The driver's own connection begins no transaction (the store begins them): each of these
        # statements runs by itself, as VACUUM must.
        driver = connection.connection.dbapi_connection
        assert driver is not None
        driver.execute(f"INSERT INTO {SEARCH_INDEX}({SEARCH_INDEX}) VALUES ('optimize')")
        driver.execute("VACUUM")
        driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _vacuum_postgresql(store: Store) -> None:
    """Free the dead row versions still holding the old text (and their search documents) now,
    not at autovacuum's next visit. VACUUM runs outside a transaction, and blocks no writer."""
    names = ", ".join(t.name for t in (tables.messages, tables.decisions, tables.corrections))
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM {names}")
