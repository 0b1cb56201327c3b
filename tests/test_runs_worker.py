"""The run worker: a backfill's runs are made by a child process; killing either process loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.support.cli import popen_triage, run_triage
from tests.support.run_server import FakeRunServer, ScriptedByUid
from tests.support.store_view import outcomes, rows
from tests.support.watchd import wait_until
from tests.test_run_faults import _env, _mbox
from triage.errors import RunError, TriageError
from triage.run_settings import RunsSettings
from triage.runs_worker import RunsWorker

N_MESSAGES = 12


def _run_worker_of(pid: int) -> int | None:
    """The pid of `pid`'s run worker child, if it has one now."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    for child in map(int, children):
        try:
            if b"triage.runs_worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:
            continue
    return None


def _pending(db: Path) -> set[int]:
    try:
        return {uid for uid, (status, _, _) in outcomes(db).items() if status == "pending"}
    except sqlite3.OperationalError:  # the schema is not there yet
        return set()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.integration
def test_a_killed_run_worker_fails_only_the_runs_it_held_and_a_new_one_does_the_rest(
    tmp_path: Path,
) -> None:
    source = _mbox(tmp_path / "in.mbox", N_MESSAGES)
    db = tmp_path / "t.db"
    # uids 2 and 3 hang on their first attempt: the worker holds them, and the two after them, when killed.
    with FakeRunServer(ScriptedByUid({2: ["hang", "ok"], 3: ["hang", "ok"]})) as server:
        env = {**_env(server.url, db), "TRIAGE_LANGGRAPH__TIMEOUT_S": "60"}
        args = ("backfill", "--source", str(source), "--concurrency", "2")
        process = popen_triage(*args, cwd=tmp_path, env=env)
        try:
            # Two runs in flight, and the next two messages claimed and handed over, waiting for them.
            wait_until(
                lambda: len(server.requests) == 3 and _pending(db) == {2, 3, 4, 5},
                30,
                "uid 1 answered, uids 2 and 3 hanging, uids 4 and 5 waiting",
            )
            worker = _run_worker_of(process.pid)
            assert worker is not None, "backfill runs its runs in a child process"
            os.kill(worker, signal.SIGKILL)
            _, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
        assert process.returncode == 1, stderr
        assert "Traceback" not in stderr

        first = outcomes(db)
        assert len(first) == N_MESSAGES
        held = {2, 3, 4, 5}
        assert {uid for uid, (status, _, _) in first.items() if status == "error"} == held
        assert all(status == "ok" for uid, (status, _, _) in first.items() if uid not in held)
        errors = rows(
            db,
            "SELECT d.error_kind, d.error_text FROM decisions d JOIN messages m ON m.id = d.message_pk "
            "WHERE m.uid IN (2, 3, 4, 5)",
        )
        assert errors == [("connect", "the run worker process exited (status -9)")] * 4
        assert "4 messages stay undecided (4 failed runs)" in stderr
        # Every later message was sent once, by the worker that replaced the killed one.
        assert len(server.requests) == 3 + (N_MESSAGES - 5)

        again = run_triage(*args, cwd=tmp_path, env=env)
        assert again.returncode == 0, again.stderr
        assert "triaged 4 of 4 planned" in again.stdout
        final = outcomes(db)
        assert len(final) == N_MESSAGES
        assert all(status == "ok" for status, _, _ in final.values())
        assert len(server.requests) == 3 + (N_MESSAGES - 5) + 4


@pytest.mark.integration
def test_the_run_worker_exits_when_its_backfill_is_killed(tmp_path: Path) -> None:
    source = _mbox(tmp_path / "in.mbox", 3)
    with FakeRunServer(["hang"]) as server:
        env = {**_env(server.url, tmp_path / "t.db"), "TRIAGE_LANGGRAPH__TIMEOUT_S": "60"}
        process = popen_triage("backfill", "--source", str(source), cwd=tmp_path, env=env)
        try:
            wait_until(lambda: len(server.requests) == 3, 30, "three runs hanging")
            worker = _run_worker_of(process.pid)
            assert worker is not None and _alive(worker)
            process.kill()
            process.communicate(timeout=30)
            # Its stdin closes with its parent: it stops, and is not left to run on its own.
            wait_until(lambda: not _alive(worker), 30, "the orphaned run worker to exit")
        finally:
            process.kill()


def test_a_call_that_fails_unexpectedly_in_the_worker_is_answered_at_once() -> None:
    """A bug in the child is one clear error for its call, never a wait for the answer deadline."""
    body = {"assistant_id": "agent", "input": {"messages": []}, "metadata": {}}

    async def calls(url: str) -> tuple[str, str, int]:
        async with RunsWorker(RunsSettings(url, None, 5.0, 2, 2, 0.01)) as worker:
            with pytest.raises(TriageError) as failed:
                await asyncio.wait_for(worker._call("no_such_call"), 10)
            with pytest.raises(RunError) as unsendable:
                await asyncio.wait_for(worker.run({**body, "metadata": {"x": float("nan")}}), 10)
            result = await asyncio.wait_for(worker.run(body), 10)  # the same child serves on
            return str(failed.value), f"{unsendable.value.kind} {unsendable.value.attempts}", result.attempts

    with FakeRunServer() as server:
        failed, unsendable, attempts = asyncio.run(calls(server.url))
        assert (
            failed
            == "the run worker failed: AttributeError: 'RunsClient' object has no attribute 'no_such_call'"
        )
        assert unsendable == "bad-request 1" and attempts == 1
        assert server.paths == ["/runs/wait"]  # the NaN body was never sent
