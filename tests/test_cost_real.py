"""No run for a copy, against a real Dovecot and `langgraph dev`: the same mail in two watched
mailboxes is decided once, routed once, and recorded twice."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import run_triage
from tests.support.configs import write_config
from tests.support.corpus import support_mail
from tests.support.dovecot import DovecotServer
from tests.support.store_view import rows
from tests.support.watchd import wait_until
from triage.devserver import DevServer

pytestmark = pytest.mark.integration


def test_the_same_mail_in_two_mailboxes_is_one_run_one_thread_and_two_records(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer, stateless_runs: Callable[[], int]
) -> None:
    tag = uuid.uuid4().hex[:8]  # the session's server is shared: keep this test's threads apart
    mail = [support_mail(n, f"Request {n}", tag=tag) for n in range(1, 21)]
    dovecot.create_mailbox("Sales")
    dovecot.append(mail)
    dovecot.append(mail, "Sales")
    write_config(
        tmp_path, dovecot, langgraph_server.url, mailboxes=["INBOX", "Sales"], routing={"execute": True}
    )
    task_runs_before = langgraph_server.runs_started(stateless=False)
    done = run_triage("backfill", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    db = tmp_path / "triage.db"
    by_mailbox = rows(
        db,
        "SELECT m.mailbox, substr(d.decided_by, 1, 4), d.decision, count(*) FROM decisions d "
        "JOIN messages m ON m.id = d.message_pk GROUP BY 1, 2, 3 ORDER BY 1",
    )
    assert by_mailbox == [("INBOX", "run", "new-task", 20), ("Sales", "copy", "new-task", 20)]
    assert stateless_runs() == 20
    assert rows(db, "SELECT count(*) FROM threads") == [(20,)]
    assert rows(db, "SELECT count(*) FROM thread_messages") == [(40,)]  # each copy in its original's thread
    # One task run a thread: created by the backfill, started by the server when it gets to them.
    task_runs = lambda: langgraph_server.runs_started(stateless=False) - task_runs_before  # noqa: E731
    wait_until(lambda: task_runs() >= 20, 60, "the task runs to start")
    assert rows(db, "SELECT count(DISTINCT routing_run_id), count(routing_run_id) FROM decisions") == [
        (20, 40)
    ]
    assert task_runs() == 20
