"""Candidate threads for a message, best first, from a real (SQLite) thread registry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from triage.message import Email, parse_email
from triage.sources import RawMessage
from triage.store import mailboxes
from triage.store import thread_registry as registry
from triage.store.decisions import Claim, Outcome, Store
from triage.store.thread_registry import ThreadAssignment
from triage.threads import ThreadCandidate, subject_key, thread_id_for


def _email(uid: int, sender: str, subject: str, *, replies_to: int | None = None) -> Email:
    answers = f"In-Reply-To: <m{replies_to}@x>\r\n" if replies_to else ""
    raw = f"From: {sender}\r\nSubject: {subject}\r\nMessage-ID: <m{uid}@x>\r\n{answers}\r\nBody {uid}.\r\n"
    email = parse_email(raw.encode(), 4000)
    assert isinstance(email, Email)
    return email


def _record(store: Store, uid: int, email: Email, *, joins: str | None = None) -> str:
    """Record a decision as the pipeline does: a new task starts a thread, a reply joins one."""
    raw = RawMessage("acct", "INBOX", 1, uid, b"x" * uid)
    claimed = store.claim(raw, email, Claim("prompt", "hash", "agent", {}))
    assert claimed is not None
    thread_id = joins or thread_id_for(raw)
    decision = "existing-thread" if joins else "new-task"
    assignment = ThreadAssignment(thread_id, email.message_id, None if joins else email.subject)
    store.record(claimed, Outcome("ok", decision, joins), thread=(email, assignment))
    return thread_id


def _ids(store: Store, email: Email, limit: int = 10) -> list[str]:
    return [candidate.id for candidate in registry.candidates(store, "acct", email, limit)]


def test_proof_then_subject_or_people_then_recent(store: Store) -> None:
    export = _record(store, 1, _email(1, "ann@example.com", "Export fails"))
    invoice = _record(store, 2, _email(2, "bob@example.com", "Invoice 7"))
    other = _record(store, 3, _email(3, "cat@example.com", "Lunch"))

    reply = _email(4, "dan@example.com", "Re: something else", replies_to=2)
    found = registry.candidates(store, "acct", reply, 10)
    assert [c.id for c in found] == [invoice, other, export]  # proved first, then the newest
    assert [c.proved_by_headers for c in found] == [True, False, False]

    assert _ids(store, _email(5, "eve@example.com", "RE: Export fails")) == [export, other, invoice]
    assert _ids(store, _email(6, "Ann@Example.com", "New question")) == [export, other, invoice]
    assert _ids(store, _email(7, "eve@example.com", "Unrelated"), limit=2) == [other, invoice]


def test_a_persons_recently_active_thread_comes_first_and_closed_ones_never(store: Store) -> None:
    older = _record(store, 1, _email(1, "ann@example.com", "First matter"))
    newer = _record(store, 2, _email(2, "ann@example.com", "Second matter"))
    unrelated = _record(store, 3, _email(3, "zed@example.com", "Zed's matter"))
    assert _ids(store, _email(9, "ann@example.com", "Third")) == [newer, older, unrelated]

    # Ann replies on her older thread: it is now her most recently active one.
    _record(store, 4, _email(4, "ann@example.com", "Re: First matter", replies_to=1), joins=older)
    assert _ids(store, _email(9, "ann@example.com", "Third"), limit=2) == [older, newer]

    registry.close(store, older)
    assert _ids(store, _email(9, "ann@example.com", "Third")) == [newer, unrelated]


def test_a_new_task_decided_again_keeps_its_one_thread(store: Store) -> None:
    """Reopened and run again, a message that started a thread finds it (its row is not new)."""
    email = _email(1, "ann@example.com", "Export fails")
    thread_id = _record(store, 1, email)
    mailboxes.note(store, "acct", "INBOX", 1)
    assert mailboxes.reopen(store, "acct", "ok", None) == {"INBOX": {1}}
    assert _record(store, 1, email) == thread_id
    threads = registry.list_threads(store)
    assert [(t.id, t.title) for t in threads] == [(thread_id, "Export fails")]
    assert _ids(store, _email(2, "bob@example.com", "Re: Export fails")) == [thread_id]


@pytest.mark.parametrize(
    ("subject", "key"),
    [
        ("Export fails", "export fails"),
        ("RE: Fwd:  Export\tfails ", "export fails"),
        ("[dev-list] Re: AW: Export fails", "export fails"),
        ("Re: [dev-list] SV[2]: [ops] Export fails", "export fails"),
        ("Große Straße", "grosse strasse"),  # casefolded, not only lower-cased
        ("Reply needed: [urgent] fix", "reply needed: [urgent] fix"),  # not a prefix, not at the start
    ],
)
def test_a_subject_key_drops_reply_prefixes_and_list_tags_wherever_they_nest(subject: str, key: str) -> None:
    assert subject_key(subject) == key


def test_a_candidate_is_recorded_with_what_was_offered_and_read_back_the_same() -> None:
    when = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    proved = ThreadCandidate("t-1", "Invoice", when, proved_by_headers=True)
    record = proved.as_record()
    assert record == {
        "id": "t-1",
        "title": "Invoice",
        "proved_by_headers": True,
        "last_activity": "2026-11-01T09:30:00+00:00",
    }
    assert ThreadCandidate.from_record(record) == proved
    quiet = ThreadCandidate("t-2", "", None)
    assert quiet.as_record()["last_activity"] is None
    assert ThreadCandidate.from_record(quiet.as_record()) == quiet


def test_an_older_or_sparser_record_still_reads_as_a_candidate() -> None:
    assert ThreadCandidate.from_record({"id": 7}) == ThreadCandidate("7", "", None, False)
    sparse = {"id": "t", "title": None, "last_activity": "", "proved_by_headers": 1}
    assert ThreadCandidate.from_record(sparse) == ThreadCandidate("t", "", None, True)
