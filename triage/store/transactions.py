"""How the store's modules reach the database: connections and sessions to read and write with,
and a backfill's writes sharing transactions (`batched()`).

Store (store.decisions) builds on this; the other store modules write through the same
`writing()` and `sessions`, so a batch stays the store's one writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from sqlalchemy import Connection, Engine, bindparam
from sqlalchemy.orm import Session, sessionmaker

from triage.store.engine import existing_engine, migrated_engine, writer
from triage.store.processes import LIVE_OWNERS, new_owner_id

_OTHER_PROCESSES = LIVE_OWNERS.where(LIVE_OWNERS.selected_columns[0] != bindparam("owner")).limit(1)
_BATCH_MOST = 128  # writes (two or three a message) before a batch commits on its own


class Transactions:
    """A store's engine, the sessions and connections its modules read and write with, and its batch."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine  # for reading; writes go through `_writer`, which locks at BEGIN
        self._writer = writer(engine)
        self._session = sessionmaker(self._writer, expire_on_commit=False)
        self._reader = sessionmaker(engine, expire_on_commit=False)
        # Who this process's claims name (store.processes registers it while it works).
        self.owner = new_owner_id()
        self._batch: Connection | None = None  # see batched()
        self._batch_writes = 0
        self._batch_paused = False

    @classmethod
    def open(cls, url: str) -> Self:
        """Connect and bring the schema up to date."""
        engine = migrated_engine(url)
        return cls(engine)

    @classmethod
    @contextmanager
    def existing(cls, url: str) -> Iterator[Self | None]:
        """For reading: None where an SQLite file does not exist yet (nothing is created); else
        the store, closed at the end (exit collects nothing: see triage.cli.run)."""
        engine = existing_engine(url)
        store = None if engine is None else cls(engine)
        try:
            yield store
        finally:
            if store is not None:
                store.close()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Let the per-message writes share transactions until `commit_batch()`, for a backfill.

        A commit per write is most of what SQLite costs a backfill, and each one re-indexes the
        message for search. In a batch, claims, outcomes and thread assignments go to one
        connection, which also serves `reading()`, so a reply still finds the thread its parent
        was given a moment ago. What a crash leaves uncommitted was never recorded: those messages
        are undecided and triaged again, as after a crash mid-run. Anything that acts on a decision
        (routing, mailbox actions) must see it committed first, so batches are for runs that only
        record. The batch commits at its end and every _BATCH_MOST writes, and is rolled back if
        an error ends it.

        A batch holds the store's write lock from one commit to the next, which would starve any
        other process writing to the store. So while another process is registered (a daemon, a
        second backfill), each commit pauses the batch, and writes commit one by one.
        """
        with self._writer.connect() as connection:
            self._batch, self._batch_writes = connection, 0
            self._batch_paused = self._others_working()
            try:
                yield
                connection.commit()
            finally:
                self._batch = None

    def commit_batch(self) -> None:
        """Commit what the batch holds so far (a no-op outside a batch), and pause or resume it."""
        if self._batch is None:
            return
        if self._batch.in_transaction():
            self._batch.commit()
        self._batch_writes = 0
        self._batch_paused = self._others_working()

    def _others_working(self) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(_OTHER_PROCESSES, {"owner": self.owner}).first() is not None

    @property
    def batching(self) -> bool:
        """Whether a write made now waits for the batch's next commit to be durable."""
        return self._open_batch is not None

    @property
    def _open_batch(self) -> Connection | None:
        return None if self._batch_paused else self._batch

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection to read with: the batch's, which sees its own writes, or a new one."""
        batch = self._open_batch
        if batch is not None:
            yield batch
            return
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A connection in a transaction for one write: the batch's, or one committed at the end.

        Store modules that write beside the decisions (labels) use it too, so a batch stays one writer.
        """
        batch = self._open_batch
        if batch is None:
            with self._writer.begin() as connection:
                yield connection
            return
        yield batch
        self._batch_writes += 1
        if self._batch_writes >= _BATCH_MOST:
            self.commit_batch()

    @property
    def sessions(self) -> sessionmaker[Session]:
        """For modules that keep their own tables in this store: sessions that write."""
        return self._session

    @property
    def read_sessions(self) -> sessionmaker[Session]:
        """Sessions that only read: they take no lock (and work on a read-only file)."""
        return self._reader
