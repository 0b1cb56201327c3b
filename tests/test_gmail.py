"""Gmail-only behaviour end to end, against the fake Gmail peer (Dovecot offers no X-GM-EXT-1):
X-GM-THRID proves a message's thread, and decisions are carried out as Gmail labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_triage
from tests.support.configs import write_config
from tests.support.fake_gmail import FakeGmail
from tests.support.run_server import FakeRunServer
from tests.support.store_view import rows

pytestmark = pytest.mark.integration

ROUTING = {
    "header_match": "decide",
    "actions": {
        "new-task": {"gmail_labels": ["Triage/New"]},
        "existing-thread": {"gmail_labels": ["Triage/Follow-up"], "add_flags": ["$TriageFollowUp"]},
    },
}


def _mail(n: int, subject: str) -> bytes:
    """No In-Reply-To or References: only Gmail's thread id can tie these together."""
    return (
        f"From: customer{n}@example.com\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <gmail-{n}@example.test>\r\nDate: Tue, 03 Nov 2026 09:0{n}:00 +0000\r\n\r\n"
        f"Message {n}.\r\n"
    ).encode()


def _credential(gmail: FakeGmail) -> dict[str, object]:
    """Gmail takes an access token by XOAUTH2 (a password is refused); a plain server a password."""
    return {"password": None, "oauth2_token_command": f"echo {gmail.token}"} if gmail.gmail else {}


def _backfill(folder: Path, gmail: FakeGmail) -> list[int]:
    """Backfill the fake Gmail; the UIDs the run server was asked about."""
    with FakeRunServer() as server:
        write_config(folder, gmail, server.url, routing=ROUTING, **_credential(gmail))
        done = run_triage("backfill", cwd=folder)
        assert done.returncode == 0, done.stderr
        return [request["metadata"]["uid"] for request in server.requests]


def test_gmail_thread_id_proves_the_thread_and_labels_carry_the_decision(tmp_path: Path) -> None:
    with FakeGmail(username="me@example.com") as gmail:
        gmail.add_message("INBOX", _mail(1, "Export fails"), thrid=7001)
        gmail.add_message("INBOX", _mail(2, "Any news on this?"), thrid=7001)
        gmail.add_message("INBOX", _mail(3, "Invoice question"), thrid=7002)
        asked = _backfill(tmp_path, gmail)
        labels = {uid: gmail.message("INBOX", uid).labels for uid in (1, 2, 3)}
        flags = {uid: gmail.message("INBOX", uid).flags for uid in (1, 2, 3)}
        fetches = [c for c in gmail.commands if c.startswith("UID FETCH") and "BODY.PEEK[]" in c]
        logins = {(mechanism, accepted) for mechanism, _, accepted in gmail.logins}
    assert logins == {("XOAUTH2", True)}
    assert sorted(asked) == [1, 3]  # uid 2 was settled by its Gmail thread, without a model call
    db = tmp_path / "triage.db"
    decided = rows(
        db,
        "SELECT m.uid, m.gmail_thread_id, d.decision, d.decided_by, d.thread_id, d.routing_status "
        "FROM messages m JOIN decisions d ON d.message_pk = m.id ORDER BY m.uid",
    )
    started = rows(db, "SELECT id FROM threads WHERE started_by = (SELECT id FROM messages WHERE uid = 1)")
    assert decided == [
        (1, 7001, "new-task", "run", None, "done"),
        (2, 7001, "existing-thread", "headers", started[0][0], "done"),
        (3, 7002, "new-task", "run", None, "done"),
    ]
    assert labels == {1: {"Triage/New"}, 2: {"Triage/Follow-up"}, 3: {"Triage/New"}}
    assert flags[2] == {"$TriageFollowUp"} and not flags[1] and not flags[3]  # BODY.PEEK: never \Seen
    assert fetches and all("X-GM-THRID" in c for c in fetches)


def test_a_server_without_gmail_extensions_is_not_asked_for_them(tmp_path: Path) -> None:
    with FakeGmail(username="me@example.com", password="pw", gmail=False) as plain:
        plain.add_message("INBOX", _mail(1, "Export fails"), thrid=7001)
        plain.add_message("INBOX", _mail(2, "Any news on this?"), thrid=7001)
        asked = _backfill(tmp_path, plain)
        labels = [plain.message("INBOX", uid).labels for uid in (1, 2)]
        commands = list(plain.commands)
    assert sorted(asked) == [1, 2]  # no thread id: each message needs the model
    assert labels == [set(), set()] and not any("X-GM" in c for c in commands)
    done = rows(
        tmp_path / "triage.db",
        "SELECT m.gmail_thread_id, d.routing_actions FROM messages m "
        "JOIN decisions d ON d.message_pk = m.id ORDER BY m.uid",
    )
    assert [thread for thread, _ in done] == [None, None]
    assert all("labels skipped (the server is not Gmail)" in str(actions) for _, actions in done)


def test_a_failed_mailbox_action_is_recorded_then_retried_and_the_mail_stays(tmp_path: Path) -> None:
    moving = {"actions": {"new-task": {"gmail_labels": ["Triage/New"], "move_to": "Tasks"}}}
    with FakeGmail(username="me@example.com") as gmail, FakeRunServer() as server:
        gmail.add_message("INBOX", _mail(1, "Export fails"), thrid=7001)
        gmail.refuse("UID MOVE")
        write_config(tmp_path, gmail, server.url, routing=moving, **_credential(gmail))
        first = run_triage("backfill", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        after_failure = rows(tmp_path / "triage.db", "SELECT routing_status, routing_error FROM decisions")
        still_there = gmail.uids("INBOX")
        second = run_triage("backfill", cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        moved = gmail.uids("Tasks")
        labels = gmail.message("Tasks", moved[0]).labels if moved else set()
        asked = len(server.requests)
    assert after_failure[0][0] == "error" and "Temporary System Problem" in str(after_failure[0][1])
    assert still_there == [1]  # the failed move lost nothing
    assert "nothing to do" in second.stdout and asked == 1  # retried without asking the triage again
    assert moved == [1] and gmail.uids("INBOX") == [] and labels == {"Triage/New"}
    assert rows(tmp_path / "triage.db", "SELECT routing_status, routing_error FROM decisions") == [
        ("done", None)
    ]
