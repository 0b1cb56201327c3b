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
from tests.support.token_introspection import TokenIntrospection
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


def _outputs(cwd: Path, *commands: tuple[str, ...]) -> list[str]:
    """Run each command, which must succeed; what each printed."""
    seen: list[str] = []
    for args in commands:
        done = run_triage(*args, cwd=cwd)
        assert done.returncode == 0, done.stderr
        seen += [done.stdout, done.stderr]
    return seen


def _watched(cwd: Path, dovecot: DovecotServer, n: int) -> list[str]:
    """A verbose daemon records message `n`: its log, command line and thread names."""
    db = cwd / "triage.db"
    with WatchProcess(cwd, "--log-format", "json", "--verbose") as daemon:
        daemon.wait_idle(db)
        dovecot.append([_message(n)])
        wait_until(lambda: final_count(db) == n, 30, "the watched message to be recorded")
        pid = daemon.process.pid
        seen = [Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
        seen += [p.read_text(errors="replace") for p in Path(f"/proc/{pid}/task").glob("*/comm")]
        assert daemon.stop() == 0
    return [*seen, daemon.log]


def _refused_login(cwd: Path) -> list[str]:
    """A backfill with a wrong credential: status 3, one line naming the refusal, no traceback."""
    refused = run_triage("backfill", cwd=cwd)
    assert refused.returncode == 3, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("triage: error: IMAP login failed"), refused.stderr
    return [refused.stdout, refused.stderr]


def test_no_secret_appears_in_logs_store_outputs_or_the_process_title(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    password, by_command, api_key, wrong = (_secret(k) for k in ("imap-pw", "cmd-pw", "lg-key", "wrong-pw"))
    users = dovecot.root / "users"
    users.write_text(f"{dovecot.username}:{{PLAIN}}{password}\n")  # Dovecot re-reads it per login
    dovecot.password = password
    secret_file = tmp_path / "secret"
    secret_file.write_text(by_command + "\n")
    db = tmp_path / "triage.db"
    dovecot.append([_message(1), _message(2)])
    with FakeRunServer(["ok"]) as server:
        lg = {"api_key": api_key}
        write_config(tmp_path, dovecot, server.url, langgraph=lg, password=password)
        seen = _outputs(tmp_path, ("config",), ("backfill",), ("backfill", "--dry-run"), ("status",))
        assert final_count(db) == 2
        seen += _watched(tmp_path, dovecot, 3)
        # The password from a command, then a wrong one: the failure path must not echo it either.
        users.write_text(f"{dovecot.username}:{{PLAIN}}{by_command}\n")
        dovecot.password = by_command
        dovecot.append([_message(4)])
        write_config(
            tmp_path, dovecot, server.url, langgraph=lg, password=None, password_command=f"cat {secret_file}"
        )
        seen += _outputs(tmp_path, ("config",), ("backfill",))
        write_config(tmp_path, dovecot, server.url, langgraph=lg, password=wrong)
        seen += _refused_login(tmp_path)
        assert {r.get("x-api-key") for r in server.headers} == {api_key}  # it did reach its server
    assert final_count(db) == 4
    seen.append(_store_text(db))
    everything = "\n".join(seen)
    assert '"password": "********"' in everything and "watching" in everything  # we looked at real output
    for secret in (password, by_command, api_key, wrong):
        assert secret not in everything


def test_an_oauth2_token_logs_in_to_dovecot_and_never_appears(
    tmp_path: Path, dovecot_oauth2: tuple[DovecotServer, TokenIntrospection]
) -> None:
    """XOAUTH2 against a real Dovecot whose oauth2 passdb asks a token introspection endpoint."""
    dovecot, issuer = dovecot_oauth2
    wrong = _secret("ya29.revoked")
    token_file = tmp_path / "token"
    token_file.write_text(issuer.token + "\n")
    db = tmp_path / "triage.db"
    dovecot.append([_message(1), _message(2)])
    with FakeRunServer(["ok"]) as server:
        oauth2 = {"password": None, "oauth2_token_command": f"cat {token_file}"}
        write_config(tmp_path, dovecot, server.url, **oauth2)
        seen = _outputs(tmp_path, ("config",), ("backfill",), ("backfill", "--dry-run"), ("status",))
        assert final_count(db) == 2 and issuer.active >= 1  # logged in with the token, not a password
        seen += _watched(tmp_path, dovecot, 3)
        logins = issuer.active
        token_file.write_text(wrong + "\n")
        seen += _refused_login(tmp_path)
        assert (issuer.active, issuer.inactive) == (logins, 1)  # refused by the token's issuer
        assert len(server.requests) == 3
    assert "method=XOAUTH2" in (dovecot.root / "dovecot.log").read_text()
    seen.append(_store_text(db))
    everything = "\n".join(seen)
    assert "oauth2_token_command" in everything and "watching" in everything  # we looked at real output
    for secret in (issuer.token, wrong):
        assert secret not in everything
