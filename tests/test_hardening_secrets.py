"""Secrets never leak: unique strings for every credential, searched for everywhere triage writes."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.support.cli import run_triage
from tests.support.configs import write_config
from tests.support.dovecot import DovecotServer
from tests.support.run_server import FakeRunServer
from tests.support.store_view import final_count
from tests.support.watchd import WatchProcess, wait_until

pytestmark = pytest.mark.integration


def _secret(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def _message(n: int) -> bytes:
    return b"From: a@example.com\r\nSubject: secret test %d\r\nMessage-ID: <sec%d@x>\r\n\r\nhello" % (n, n)


def _store_text(db: Path) -> str:
    """Every column of every row of every table, as text."""
    found: list[str] = []
    with sqlite3.connect(db) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            found += [repr(row) for row in connection.execute(f'SELECT * FROM "{table}"')]
    assert len(tables) >= 4
    return "\n".join(found)


def test_no_secret_appears_in_logs_store_outputs_or_the_process_title(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    password, by_command, api_key, wrong = (_secret(k) for k in ("imap-pw", "cmd-pw", "lg-key", "wrong-pw"))
    users = dovecot.root / "users"
    users.write_text(f"{dovecot.username}:{{PLAIN}}{password}\n")  # Dovecot re-reads it per login
    dovecot.password = password
    secret_file = tmp_path / "secret"
    secret_file.write_text(by_command + "\n")
    seen: list[str] = []
    db = tmp_path / "triage.db"
    dovecot.append([_message(1), _message(2)])
    with FakeRunServer(["ok"]) as server:
        lg = {"api_key": api_key}
        write_config(tmp_path, dovecot, server.url, langgraph=lg, password=password)
        for args in (("config",), ("backfill",), ("backfill", "--dry-run"), ("status",)):
            done = run_triage(*args, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            seen += [done.stdout, done.stderr]
        assert final_count(db) == 2
        with WatchProcess(tmp_path, "--log-format", "json", "--verbose") as daemon:
            daemon.wait_idle(db)
            dovecot.append([_message(3)])
            wait_until(lambda: final_count(db) == 3, 30, "the watched message to be recorded")
            pid = daemon.process.pid
            seen.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
            seen += [p.read_text(errors="replace") for p in Path(f"/proc/{pid}/task").glob("*/comm")]
            assert daemon.stop() == 0
            seen.append(daemon.log)
        # The password from a command, then a wrong one: the failure path must not echo it either.
        users.write_text(f"{dovecot.username}:{{PLAIN}}{by_command}\n")
        dovecot.password = by_command
        dovecot.append([_message(4)])
        write_config(
            tmp_path, dovecot, server.url, langgraph=lg, password=None, password_command=f"cat {secret_file}"
        )
        for args in (("config",), ("backfill",)):
            done = run_triage(*args, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            seen += [done.stdout, done.stderr]
        write_config(tmp_path, dovecot, server.url, langgraph=lg, password=wrong)
        refused = run_triage("backfill", cwd=tmp_path)
        assert refused.returncode == 3, refused.stderr
        seen += [refused.stdout, refused.stderr]
        assert {r.get("x-api-key") for r in server.headers} == {api_key}  # it did reach its server
    assert final_count(db) == 4
    seen.append(_store_text(db))
    everything = "\n".join(seen)
    assert '"password": "********"' in everything and "watching" in everything  # we looked at real output
    for secret in (password, by_command, api_key, wrong):
        assert secret not in everything
