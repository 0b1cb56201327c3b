"""No model call paid twice: a triage process killed while its runs are in flight leaves them
recorded, and the next one joins them instead of starting them again.

Against a real `langgraph dev` running one job at a time, so that runs queue and are still in
flight (queued or executing) when the process is killed; its log counts the runs it *executed*.
"""

from __future__ import annotations

import json
import mailbox
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import popen_triage, run_triage
from tests.support.configs import write_config
from tests.support.corpus import support_mail
from tests.support.dovecot import DovecotServer
from tests.support.store_view import final_count, outcomes, rows
from tests.support.watchd import WatchProcess, wait_until
from triage.devserver import DevServer

pytestmark = pytest.mark.integration

N_MESSAGES = 5


def _acknowledged(db: Path) -> int:
    """Runs the server acknowledged that are recorded (committed) and not yet decided."""
    try:
        query = "SELECT count(*) FROM decisions WHERE status = 'pending' AND run_thread_id IS NOT NULL"
        return int(rows(db, query)[0][0])  # type: ignore[call-overload]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def _status(cwd: Path) -> dict[str, Any]:
    """`triage status --json` of INBOX."""
    done = run_triage("status", "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    (inbox,) = [json.loads(line) for line in done.stdout.splitlines()]
    return dict(inbox)


def _threads_left(server: DevServer) -> int:
    with httpx.Client(base_url=server.url, timeout=30) as api:
        return len(api.post("/threads/search", json={"limit": 1000}).json())


def _check_each_run_once(db: Path, server: DevServer) -> None:
    assert {uid: status for uid, (status, _, _) in outcomes(db).items()} == dict.fromkeys(
        range(1, N_MESSAGES + 1), "ok"
    )
    assert server.runs_started(stateless=True) == N_MESSAGES  # executed once each: none paid twice
    assert rows(db, "SELECT count(*) FROM decisions WHERE run_thread_id IS NOT NULL") == [(0,)]
    assert _threads_left(server) == 0  # the threads kept for joining are deleted once recorded


@pytest.mark.parametrize("mode", ["wait", "background"])
def test_a_killed_backfill_leaves_its_runs_to_be_joined_by_the_next(tmp_path: Path, mode: str) -> None:
    box = mailbox.mbox(tmp_path / "in.mbox")
    for n in range(1, N_MESSAGES + 1):
        box.add(support_mail(n, f"Request {n}"))
    box.close()
    db = tmp_path / "triage.db"
    with DevServer(jobs=1) as server:
        env = {
            "TRIAGE_LANGGRAPH__URL": server.url,
            "TRIAGE_LANGGRAPH__MODE": mode,
            "TRIAGE_STORE__URL": f"sqlite:///{db}",
        }
        args = ("backfill", "--source", str(tmp_path / "in.mbox"), "--quiet", "--concurrency", "8")
        first = popen_triage(*args, cwd=tmp_path, env=env)
        try:
            wait_until(lambda: _acknowledged(db) == N_MESSAGES, 60, "every run acknowledged and recorded")
        finally:
            first.kill()
            first.communicate()
        assert server.runs_started(stateless=True) < N_MESSAGES  # some were still queued
        again = run_triage(*args, cwd=tmp_path, env=env)
        assert again.returncode == 0, again.stderr
        _check_each_run_once(db, server)


@pytest.mark.parametrize("mode", ["wait", "background"])
def test_a_killed_daemon_leaves_its_runs_to_be_joined_by_the_next(
    tmp_path: Path, dovecot: DovecotServer, mode: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    db = tmp_path / "triage.db"
    with DevServer(jobs=1) as server:
        write_config(tmp_path, dovecot, server.url, langgraph={"mode": mode}, watch={"idle_renew_s": 5})
        with WatchProcess(tmp_path) as daemon:
            daemon.wait_idle(db)
            dovecot.append([support_mail(n, f"Request {n}", tag=tag) for n in range(1, N_MESSAGES + 1)])
            wait_until(lambda: _acknowledged(db) == N_MESSAGES, 60, f"every run recorded:\n{daemon.log}")
            daemon.process.kill()
            daemon.process.wait()
        assert server.runs_started(stateless=True) < N_MESSAGES
        with WatchProcess(tmp_path) as daemon:
            wait_until(lambda: final_count(db) == N_MESSAGES, 120, f"every message decided:\n{daemon.log}")
            wait_until(lambda: _status(tmp_path).get("run_concurrency"), 30, "the daemon's run concurrency")
            assert 1 <= _status(tmp_path)["run_concurrency"] <= 32  # the configured ceiling
            assert daemon.stop() == 0
        assert "Traceback" not in daemon.log
        _check_each_run_once(db, server)
