"""Store faults under a running daemon: a lock is waited out; a full disk or a read-only file stops it
with one clear line, and a rerun records every message exactly once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.cli import run_triage
from tests.support.configs import write_config
from tests.support.dovecot import DovecotServer
from tests.support.run_server import FakeRunServer
from tests.support.store_view import final_count, outcomes
from tests.support.watchd import WatchProcess, bytes_written, wait_until, watcher_state

pytestmark = pytest.mark.integration

STOPPED_LINE = "triage: error: cannot write the decision log ("
LOCK_HELD_S = 3.0


def _messages(count: int, start: int = 0) -> list[bytes]:
    body = b"The quarterly numbers are attached below.\r\n" * 60
    return [
        b"From: a@example.com\r\nSubject: store fault %d\r\nMessage-ID: <sf%d@x>\r\n\r\n%s" % (n, n, body)
        for n in range(start, start + count)
    ]


def _prepare(tmp_path: Path, dovecot: DovecotServer, url: str) -> Path:
    """A config and a store that already knows the (empty) mailbox, so a watch catches up on all."""
    # One run at a time: each commit appends whole pages to the WAL, so the file grows per message.
    write_config(tmp_path, dovecot, url, langgraph={"max_concurrency": 1}, watch={"heartbeat_s": 5})
    done = run_triage("backfill", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path / "triage.db"


def _rerun_records_all(tmp_path: Path, db: Path, count: int) -> None:
    with WatchProcess(tmp_path) as daemon:
        wait_until(lambda: final_count(db) >= count, 60, f"{count} decisions:\n{daemon.log}")
        assert daemon.stop() == 0, daemon.log
    result = outcomes(db)  # fails on a uid recorded twice
    assert sorted(result) == list(range(1, count + 1))
    assert {status for status, _, _ in result.values()} == {"ok"}


def _runs_per_uid(server: FakeRunServer) -> Counter[int]:
    """How often each message's run was started (a join starts none)."""
    return Counter(int(body["metadata"]["uid"]) for body in server.requests)


def test_a_lock_held_by_another_program_is_waited_out(tmp_path: Path, dovecot: DovecotServer) -> None:
    mail = _messages(5)
    with FakeRunServer(["ok"]) as server:
        db = _prepare(tmp_path, dovecot, server.url)
        with WatchProcess(tmp_path) as daemon:
            daemon.wait_idle(db)
            (session,) = dovecot.session_pids()  # the daemon's IMAP session
            sent_before = bytes_written(session)
            holder = sqlite3.connect(db, timeout=30)
            holder.execute("BEGIN IMMEDIATE")  # a user's write transaction, left open
            dovecot.append(mail)
            # Once Dovecot has sent the daemon the new mail, its next step is a claim: a write.
            wait_until(
                lambda: bytes_written(session) - sent_before >= sum(map(len, mail)),
                30,
                f"the daemon to fetch the new mail:\n{daemon.log}",
            )
            blocked = time.monotonic()
            # Held on for a while (the fault's duration, well under the 30 s busy timeout): the
            # daemon waits, neither failing nor running anything it could not record first.
            time.sleep(LOCK_HELD_S)
            assert daemon.process.poll() is None, daemon.log
            assert final_count(db) == 0 and server.requests == []
            holder.rollback()
            holder.close()
            wait_until(lambda: final_count(db) == 5, 30, f"5 decisions after the lock:\n{daemon.log}")
            assert time.monotonic() - blocked < 30  # waited out within the busy timeout
            assert daemon.stop() == 0, daemon.log
    assert {status for status, _, _ in outcomes(db).values()} == {"ok"}
    assert _runs_per_uid(server) == dict.fromkeys(range(1, 6), 1) and server.runs == 5


# Runs `python -m triage watch` with a file size limit: writes past it fail (EFBIG) like a full disk.
_LIMITED = (
    "import os, resource, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'triage', 'watch'])\n"
)


def test_a_full_disk_stops_the_daemon_in_one_line_and_loses_nothing(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    count = 60
    with FakeRunServer(["ok"]) as server:
        db = _prepare(tmp_path, dovecot, server.url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
        log = tmp_path / "limited.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", _LIMITED, str(512 * 1024)],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(lambda: watcher_state(db) == "idle", 30, "the limited daemon to be idle")
            dovecot.append(_messages(count))
            status = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        text = log.read_text()
        assert status == 1, text
        last = text.strip().splitlines()[-1]
        assert last.startswith(STOPPED_LINE) and "triaged at the next start" in last, text
        assert "Traceback" not in text
        assert 0 < final_count(db) < count, "the disk must fill mid-way"
        recorded = {uid for uid, (status, _, _) in outcomes(db).items() if status == "ok"}
        _rerun_records_all(tmp_path, db, count)
    runs = _runs_per_uid(server)
    assert sorted(runs) == list(range(1, count + 1))
    # A decision written before the disk filled is never run again. A run made just before, whose
    # record the full disk refused, is made once more (the stub keeps no search to join it by).
    assert all(runs[uid] == 1 for uid in recorded), runs
    assert set(runs.values()) <= {1, 2} and server.runs == sum(runs.values())


@contextmanager
def _immutable(path: Path) -> Iterator[None]:
    """Read-only even for root (tests run as root, which file modes do not stop)."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_store_stops_the_daemon_in_one_line(tmp_path: Path, dovecot: DovecotServer) -> None:
    with FakeRunServer(["ok"]) as server:
        db = _prepare(tmp_path, dovecot, server.url)
        dovecot.append(_messages(4))
        with _immutable(db):
            with WatchProcess(tmp_path) as daemon:
                assert daemon.process.wait(timeout=30) == 1, daemon.log
            lines = daemon.log.strip().splitlines()
            assert lines[-1].startswith(STOPPED_LINE) and "read-only" in lines[-1], daemon.log
            assert final_count(db) == 0 and server.requests == []
        _rerun_records_all(tmp_path, db, 4)
        assert _runs_per_uid(server) == dict.fromkeys(range(1, 5), 1)


def test_a_read_only_store_ends_a_backfill_in_one_line(tmp_path: Path, dovecot: DovecotServer) -> None:
    with FakeRunServer(["ok"]) as server:
        db = _prepare(tmp_path, dovecot, server.url)
        dovecot.append(_messages(3))
        with _immutable(db):
            done = run_triage("backfill", cwd=tmp_path)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot write the decision log" in lines[0], done.stderr
        again = run_triage("backfill", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
    assert _runs_per_uid(server) == dict.fromkeys(range(1, 4), 1)  # the refused pass ran nothing
    result = outcomes(db)
    assert sorted(result) == [1, 2, 3] and {status for status, _, _ in result.values()} == {"ok"}
