"""`--dry-run` on backfill, watch and retry: the actions are printed, and nothing is carried out."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.cli import run_triage
from tests.support.configs import write_config
from tests.support.dovecot import DovecotServer
from tests.support.run_server import FakeRunServer
from tests.support.store_view import final_count, rows
from tests.support.watchd import WatchProcess, wait_until
from triage.devserver import DevServer
from triage.sources import RawMessage
from triage.threads import thread_id_for

pytestmark = pytest.mark.integration

ROUTING = {
    "execute": True,
    "rules": [{"name": "newsletters", "list_id": ".", "decision": "ignore"}],
    "actions": {
        "new-task": {"add_flags": ["$TriageNewTask"], "move_to": "Tasks"},
        "ignore": {"mark_seen": True},
    },
}


def _mail(n: int, tag: str, *, newsletter: bool = False) -> bytes:
    listed = "List-Id: <news.example.org>\r\n" if newsletter else ""
    return (
        f"From: someone{n}@example.com\r\nTo: team@example.com\r\nSubject: Item {n}\r\n{listed}"
        f"Message-ID: <dry-{tag}-{n}@example.test>\r\n\r\nPlease look at item {n}.\r\n"
    ).encode()


def _untouched(dovecot: DovecotServer, uids: list[int]) -> None:
    """Every message still in INBOX with no flag but \\Recent (left: triage only examined the
    mailbox), and no folder made."""
    with dovecot.client() as client:
        assert not client.folder_exists("Tasks")
        client.select_folder("INBOX", readonly=True)
        flags = client.get_flags(client.search("ALL"))
    assert sorted(flags) == uids
    assert all(found == (b"\\Recent",) for found in flags.values()), flags


def test_backfill_dry_run_prints_each_decisions_actions_and_does_nothing(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    dovecot.append([_mail(1, "b"), _mail(2, "b", newsletter=True)])
    with FakeRunServer() as server:
        write_config(tmp_path, dovecot, server.url, routing=ROUTING)
        dry = run_triage("backfill", "--dry-run", cwd=tmp_path)
        assert server.requests == []
    assert dry.returncode == 0, dry.stderr
    assert not (tmp_path / "triage.db").exists()
    _untouched(dovecot, [1, 2])
    first, second = dry.stdout.split("--- uid 2 in INBOX: prompt ---")
    # uid 1 needs the assistant: every answer's consequences are listed.
    assert "--- request to POST /runs/wait ---" in first
    assert "new-task: create thread " in first and "; flag $TriageNewTask; move to Tasks" in first
    assert "existing-thread: start a run on thread (the thread it names)" in first
    assert "ignore: mark seen" in first and "needs-review: nothing (recorded only)" in first
    # uid 2 is settled by a rule: no request, only what that decision would do.
    assert "--- no run: rule:newsletters decides ignore ---\nwould: mark seen" in second
    assert "POST /runs/wait" not in second
    assert dry.stdout.rstrip().endswith(
        "dry run: 1 decided without a run, 1 to send; nothing was sent or written"
    )


def test_watch_dry_run_records_decisions_and_carries_nothing_out(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer
) -> None:
    tag = uuid.uuid4().hex[:8]
    db = tmp_path / "triage.db"
    write_config(tmp_path, dovecot, langgraph_server.url, watch={"idle_renew_s": 5}, routing=ROUTING)
    with WatchProcess(tmp_path, "--dry-run") as daemon:
        daemon.wait_idle(db)
        dovecot.append([_mail(1, tag), _mail(2, tag, newsletter=True)])
        wait_until(lambda: final_count(db) == 2, 60, "both messages decided")
        daemon.wait_for_log("INBOX uid 2: dry run, would: mark seen")
        assert daemon.stop() == 0
    uidvalidity = int(rows(db, "SELECT uidvalidity FROM mailboxes")[0][0])  # type: ignore[call-overload]
    thread_id = thread_id_for(RawMessage(f"{dovecot.username}@127.0.0.1", "INBOX", uidvalidity, 1, b""))
    assert (
        f"INBOX uid 1: dry run, would: create thread {thread_id} and start a run on it; "
        "flag $TriageNewTask; move to Tasks" in daemon.log
    )
    recorded = rows(
        db,
        "SELECT m.uid, d.decision, d.routing_status, d.routing_run_id FROM messages m "
        "JOIN decisions d ON d.message_pk = m.id ORDER BY m.uid",
    )
    assert recorded == [(1, "new-task", "dry-run", None), (2, "ignore", None, None)]
    _untouched(dovecot, [1, 2])
    with httpx.Client(base_url=langgraph_server.url, timeout=30) as client:
        assert client.get(f"/threads/{thread_id}").status_code == 404


def test_retry_dry_run_lists_and_changes_nothing(tmp_path: Path, dovecot: DovecotServer) -> None:
    dovecot.append([_mail(n, "r") for n in range(1, 4)])
    db = tmp_path / "triage.db"
    with FakeRunServer() as server:
        write_config(tmp_path, dovecot, server.url)
        assert run_triage("backfill", cwd=tmp_path).returncode == 0
        connection = sqlite3.connect(db)
        with connection:
            connection.execute("UPDATE decisions SET status = 'error' WHERE id IN (1, 3)")
        connection.close()
        sent = len(server.requests)
        dry = run_triage("retry", "--dry-run", cwd=tmp_path)
        assert len(server.requests) == sent
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == f"{dovecot.username}@127.0.0.1/INBOX: would run 2 again: uids 1, 3"
    assert rows(db, "SELECT status FROM decisions ORDER BY id") == [("error",), ("ok",), ("error",)]
