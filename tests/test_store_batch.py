"""Batched writes (Store.batched): visible to the batch at once, to anyone else only once committed."""

from __future__ import annotations

import pytest

from tests.support.postgres import committed_rows
from triage.message import Email, parse_email
from triage.sources import RawMessage
from triage.store import thread_registry as registry
from triage.store.decisions import Claim, Outcome, Store
from triage.store.thread_registry import ThreadAssignment
from triage.threads import thread_id_for


def _email(uid: int, *, replies_to: int | None = None) -> Email:
    answers = f"In-Reply-To: <m{uid - 1}@x>\r\n" if replies_to else ""
    raw = f"From: a@example.com\r\nSubject: S{uid}\r\nMessage-ID: <m{uid}@x>\r\n{answers}\r\nBody.\r\n"
    email = parse_email(raw.encode(), 4000)
    assert isinstance(email, Email)
    return email


def _new_task(store: Store, uid: int) -> str:
    raw = RawMessage("acct", "INBOX", 1, uid, b"x" * uid)
    email = _email(uid)
    claimed = store.claim(raw, email, Claim("prompt", "hash", "agent", {}))
    assert claimed is not None
    thread_id = thread_id_for(raw)
    assignment = ThreadAssignment(thread_id, email.message_id, email.subject)
    store.record(claimed, Outcome("ok", "new-task", title="T"), thread=(email, assignment))
    return thread_id


def _committed(url: str) -> list[tuple[object, ...]]:
    """What another process sees: its own connection, outside the batch."""
    query = "SELECT m.uid, d.status FROM messages m JOIN decisions d ON d.message_pk = m.id ORDER BY m.uid"
    return committed_rows(url, query)


def test_the_batch_reads_its_own_writes_and_others_see_them_once_committed(
    any_store: Store, store_url: str
) -> None:
    store = any_store
    with store.batched():
        thread_id = _new_task(store, 1)
        # A reply triaged next is offered its parent's thread, though nothing is committed yet.
        reply = registry.candidates(store, "acct", _email(2, replies_to=1), 10)
        assert [(c.id, c.proved_by_headers) for c in reply] == [(thread_id, True)]
        assert _committed(store_url) == []
        store.commit_batch()
        assert _committed(store_url) == [(1, "ok")]
        _new_task(store, 2)
        assert _committed(store_url) == [(1, "ok")]
    assert _committed(store_url) == [(1, "ok"), (2, "ok")]  # the end of the batch commits the rest


def test_an_error_ending_the_batch_records_nothing_of_it(any_store: Store, store_url: str) -> None:
    store = any_store
    with store.batched():
        _new_task(store, 1)
        store.commit_batch()
    with pytest.raises(RuntimeError), store.batched():
        _new_task(store, 2)
        raise RuntimeError("the backfill stops")
    assert _committed(store_url) == [(1, "ok")]  # message 2 is undecided: the next pass triages it
    _new_task(store, 2)  # and the store still works without a batch, committing each write
    assert _committed(store_url) == [(1, "ok"), (2, "ok")]


def test_a_batch_commits_on_its_own_after_so_many_writes(any_store: Store, store_url: str) -> None:
    store = any_store
    with store.batched():
        uid = 0
        while not _committed(store_url):
            uid += 1
            assert uid <= 200, "a batch must not grow without bound"
            _new_task(store, uid)
    assert len(_committed(store_url)) == uid
