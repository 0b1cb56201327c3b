"""Store queries the daemon runs at every catch-up, against a real log (SQLite and PostgreSQL)."""

from __future__ import annotations

from triage.message import Email, parse_email
from triage.sources import RawMessage
from triage.store import mailboxes
from triage.store.decisions import Claim, Outcome, Store


def _email(uid: int) -> Email:
    email = parse_email(
        f"From: a@example.com\r\nSubject: s{uid}\r\nMessage-ID: <q{uid}@x>\r\n\r\nhi".encode(), 100
    )
    assert isinstance(email, Email)
    return email


def test_unfinished_uids_are_this_generations_pending_and_failed_ones(any_store: Store) -> None:
    store = any_store
    expected: list[int] = []
    # More failures than one query takes keys (500), spread over two mailboxes and two generations.
    # Written as a backfill writes them, in batches: a commit each would be most of the test's time.
    with store.batched():
        for uid in range(1, 1301):
            email = _email(uid)
            for mailbox, uidvalidity in (("INBOX", 1), ("INBOX", 2), ("Other", 1)):
                raw = RawMessage("acct", mailbox, uidvalidity, uid, b"x")
                claimed = store.claim(raw, email, Claim("p", "h", "a", {}))
                assert claimed is not None
                if uid % 5 == 0:
                    continue  # claimed, never finished: pending
                status = "error" if uid % 2 else "ok"
                store.record(claimed, Outcome(status, "new-task" if status == "ok" else None))
            if uid % 5 == 0 or uid % 2:
                expected.append(uid)
    assert mailboxes.unfinished_uids(store, "acct", "INBOX", 1) == expected
    assert mailboxes.unfinished_uids(store, "acct", "INBOX", 3) == []


def test_uids_and_uidvalidity_as_large_as_imap_allows_are_kept(any_store: Store) -> None:
    largest = 2**32 - 1  # unsigned 32-bit: past a signed 32-bit column
    raw = RawMessage("acct", "INBOX", largest, largest, b"x")
    claimed = any_store.claim(raw, _email(1), Claim("p", "h", "a", {}))
    assert claimed is not None
    any_store.record(claimed, Outcome("error"))
    mailboxes.note(any_store, "acct", "INBOX", largest)
    assert mailboxes.unfinished_uids(any_store, "acct", "INBOX", largest) == [largest]
