"""Store queries the daemon runs at every catch-up, against a real SQLite log."""

from __future__ import annotations

from pathlib import Path

from triage.message import Email, parse_email
from triage.sources import RawMessage
from triage.store import Claim, Outcome, Store, mailboxes


def _email(uid: int) -> Email:
    email = parse_email(
        f"From: a@example.com\r\nSubject: s{uid}\r\nMessage-ID: <q{uid}@x>\r\n\r\nhi".encode(), 100
    )
    assert isinstance(email, Email)
    return email


def test_unfinished_uids_are_this_generations_pending_and_failed_ones(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'triage.db'}")
    expected: list[int] = []
    # More failures than one query takes keys (500), spread over two mailboxes and two generations.
    for uid in range(1, 1301):
        for mailbox, uidvalidity in (("INBOX", 1), ("INBOX", 2), ("Other", 1)):
            claimed = store.claim(
                RawMessage("acct", mailbox, uidvalidity, uid, b"x"), _email(uid), Claim("p", "h", "a", {})
            )
            assert claimed is not None
            if uid % 5 == 0:
                continue  # claimed, never finished: pending
            status = "error" if uid % 2 else "ok"
            store.record(claimed, Outcome(status, "new-task" if status == "ok" else None))
        if uid % 5 == 0 or uid % 2:
            expected.append(uid)
    assert mailboxes.unfinished_uids(store, "acct", "INBOX", 1) == expected
    assert mailboxes.unfinished_uids(store, "acct", "INBOX", 3) == []
    store.close()
