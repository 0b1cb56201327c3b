"""A real misbehaving HTTP server in place of LangGraph: retries, error kinds, and the batch goes on."""

from __future__ import annotations

import asyncio
import mailbox
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import popen_triage, run_triage
from tests.support.corpus import varied_messages
from tests.support.run_server import FakeRunServer, ScriptedByUid
from tests.support.store_view import outcomes, rows
from tests.support.watchd import wait_until
from triage.run_settings import RunsSettings
from triage.runs import RunsClient

# uid -> the server's answers to successive attempts (the last one repeats).
SCRIPT: dict[int, list[str]] = {
    1: ["500"],
    2: ["hang"],
    3: ["close"],
    4: ["garbage"],
    5: ["ok-json:I am not sure what to do with this."],
    6: ["graph-error"],
    7: ["no-ai"],
    8: ["422"],
    9: ["500", "ok"],
    10: ["429:0", "close", "ok"],
}
N_MESSAGES = 16


def _mbox(path: Path, count: int) -> Path:
    box = mailbox.mbox(path)
    for raw in varied_messages(count):
        box.add(raw)
    box.close()
    return path


def _env(url: str, db: Path) -> dict[str, str]:
    return {
        "TRIAGE_LANGGRAPH__URL": url,
        "TRIAGE_LANGGRAPH__TIMEOUT_S": "1.5",
        "TRIAGE_LANGGRAPH__MAX_ATTEMPTS": "3",
        "TRIAGE_LANGGRAPH__BACKOFF_CAP_S": "0.05",
        "TRIAGE_STORE__URL": f"sqlite:///{db}",
    }


@pytest.mark.integration
def test_faults_are_retried_then_recorded_as_errors_and_the_batch_goes_on(tmp_path: Path) -> None:
    source = _mbox(tmp_path / "in.mbox", N_MESSAGES)
    db = tmp_path / "t.db"
    scripted = ScriptedByUid(SCRIPT)
    with FakeRunServer(scripted) as server:
        done = run_triage(
            "backfill", "--source", str(source), "--concurrency", "8", cwd=tmp_path, env=_env(server.url, db)
        )
    assert done.returncode == 1, done.stderr
    result = outcomes(db)
    assert len(result) == N_MESSAGES
    expected = {
        1: ("error", None, 3),
        2: ("error", None, 3),
        3: ("error", None, 3),
        4: ("error", None, 3),
        5: ("needs-review", None, 1),
        6: ("error", None, 1),
        7: ("error", None, 1),
        8: ("error", None, 1),
        9: ("ok", "new-task", 2),
        10: ("ok", "new-task", 3),
    }
    for uid, want in expected.items():
        assert result[uid] == want, (uid, result[uid])
    others = {uid: r for uid, r in result.items() if uid not in expected}
    assert all(r == ("ok", "new-task", 1) for r in others.values()), others
    # Each uid was sent exactly as often as its recorded attempts say.
    assert {uid: n for uid, n in scripted.seen.items()} == {uid: r[2] for uid, r in result.items()}
    kinds = dict(
        rows(
            db,
            "SELECT m.uid, d.error_kind FROM messages m JOIN decisions d "
            "ON d.message_pk = m.id WHERE d.status = 'error'",
        )
    )
    assert kinds == {
        1: "http",
        2: "timeout",
        3: "connect",
        4: "bad-body",
        6: "graph-error",
        7: "no-answer",
        8: "http",
    }
    raw_kept = rows(
        db, "SELECT d.raw_response FROM messages m JOIN decisions d ON d.message_pk = m.id WHERE m.uid = 5"
    )
    assert "I am not sure" in str(raw_kept[0][0])
    assert "16 of 16 planned" in done.stdout
    assert done.stderr.strip().splitlines() == [
        "triage: 7 messages stay undecided (7 failed runs); the next backfill retries them"
    ]


@pytest.mark.integration
def test_a_second_pass_sends_only_the_failed_ones_and_counts_their_attempts(tmp_path: Path) -> None:
    source = _mbox(tmp_path / "in.mbox", N_MESSAGES)
    db = tmp_path / "t.db"
    with FakeRunServer(ScriptedByUid({1: ["500"], 2: ["close"]})) as server:
        assert (
            run_triage("backfill", "--source", str(source), cwd=tmp_path, env=_env(server.url, db)).returncode
            == 1
        )
    healed = ScriptedByUid({})
    with FakeRunServer(healed) as server:
        again = run_triage("backfill", "--source", str(source), cwd=tmp_path, env=_env(server.url, db))
        assert again.returncode == 0, again.stderr
        assert sorted(healed.seen) == [1, 2]
    result = outcomes(db)
    assert result[1] == ("ok", "new-task", 4) and result[2] == ("ok", "new-task", 4)
    assert sum(1 for r in result.values() if r[0] == "ok") == N_MESSAGES
    with FakeRunServer(healed) as server:
        third = run_triage("backfill", "--source", str(source), cwd=tmp_path, env=_env(server.url, db))
        assert server.paths == ["/ok"] and "nothing to do" in third.stdout


@pytest.mark.integration
def test_an_unreachable_run_server_ends_in_one_line(tmp_path: Path) -> None:
    source = _mbox(tmp_path / "in.mbox", 3)
    with FakeRunServer() as server:
        url = server.url  # closed on exit: nothing listens there any more
    done = run_triage("backfill", "--source", str(source), cwd=tmp_path, env=_env(url, tmp_path / "t.db"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"triage: error: cannot reach the LangGraph server at {url}: ConnectError: Connection refused"
    ]


@pytest.mark.integration
def test_a_record_is_committed_at_once_while_the_next_run_hangs(tmp_path: Path) -> None:
    """A backfill batches its writes, but never holds a record back for long (crash-safe progress)."""
    source = _mbox(tmp_path / "in.mbox", 3)
    db = tmp_path / "t.db"
    scripted = ScriptedByUid({2: ["hang"], 3: ["hang"]})
    answered: dict[int, float] = {}  # uid -> when its run was answered (at once, for uid 1)

    def script(index: int, body: dict[str, Any]) -> str:
        answered.setdefault(int(body["metadata"]["uid"]), time.monotonic())
        return scripted(index, body)

    with FakeRunServer(script) as server:
        env = {**_env(server.url, db), "TRIAGE_LANGGRAPH__TIMEOUT_S": "60"}
        process = popen_triage(
            "backfill", "--source", str(source), "--concurrency", "1", cwd=tmp_path, env=env
        )
        try:
            wait_until(lambda: 1 in answered, 60, "uid 1's run")  # the process's start-up is not the claim
            wait_until(lambda: _outcome(db, 1) == ("ok", "new-task", 1), 5, "uid 1's record")
            # The claim: a batch commits every 0.1 s. From the answer to the committed record it
            # also crosses the run worker's pipe, and this poll adds up to 0.05 s: 0.16-0.24 s
            # measured here; 0.6 s leaves room for a two-core machine busy with other tests, and
            # still fails a committer that waits for the next run or a 128-write batch.
            assert time.monotonic() - answered[1] < 0.6, time.monotonic() - answered[1]
            assert process.poll() is None, "the backfill must still be waiting on uid 2's run"
            assert server.paths.count("/runs/wait") == 2
        finally:
            process.kill()
            process.communicate()


def _outcome(db: Path, uid: int) -> tuple[str, str | None, int] | None:
    """The committed outcome of one message, as another process sees it; None before the schema exists."""
    try:
        return outcomes(db).get(uid)
    except sqlite3.OperationalError:
        return None


@pytest.mark.integration
def test_a_run_waiting_for_a_free_connection_is_not_timed_out_by_the_wait(tmp_path: Path) -> None:
    """The next message is prepared while the only connection is busy; its deadline starts with its run."""
    source = _mbox(tmp_path / "in.mbox", 3)
    db = tmp_path / "t.db"
    with FakeRunServer(["delay:1.0"]) as server:
        env = {**_env(server.url, db), "TRIAGE_LANGGRAPH__TIMEOUT_S": "1.6"}
        done = run_triage("backfill", "--source", str(source), "--concurrency", "1", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    # Each run takes 1 s of its 1.6 s; counted from when it was handed over, the second would be late.
    assert outcomes(db) == {uid: ("ok", "new-task", 1) for uid in (1, 2, 3)}
    assert len(server.requests) == 3


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """Servers hang up on idle keep-alive connections; the next run opens a new one at once."""
    body = {"assistant_id": "agent", "input": {"messages": []}, "metadata": {}}
    with FakeRunServer(idle_timeout_s=0.2) as server:

        async def two_runs() -> list[int]:
            settings = RunsSettings(server.url, None, 5.0, 1, 3, 0.01)
            async with RunsClient(settings) as runs:
                first = await runs.run(body)
                wait_until(lambda: server.idle_closed == 1, 10, "the server's hang-up")
                second = await runs.run(body)
            return [first.attempts, second.attempts]

        assert asyncio.run(two_runs()) == [1, 1]
        assert server.connections == 2 and len(server.requests) == 2
