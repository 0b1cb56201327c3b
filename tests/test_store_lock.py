"""A store locked by another program: waited for up to the busy timeout, then one line and a
non-zero status, nothing half-recorded; the next run records every message once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.configs import write_file_config
from tests.support.corpus import support_mail
from tests.support.inprocess import FAST_RUNS, triage, write_mbox
from tests.support.run_server import FakeRunServer
from tests.support.store_view import outcomes

pytestmark = pytest.mark.usefixtures("clean_triage_env")


def test_a_lock_held_past_the_busy_timeout_ends_in_one_line_and_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = write_mbox(tmp_path / "in.mbox", [support_mail(n, f"Request {n}") for n in range(1, 4)])
    db = tmp_path / "triage.db"
    with FakeRunServer() as server:
        write_file_config(
            tmp_path, server.url, langgraph=FAST_RUNS, store={"url": f"sqlite:///{db}?timeout=0.5"}
        )
        assert triage(capsys, "backfill", "--source", box, "--limit", "1", "--quiet").status == 0
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock, and keeps it
        try:
            locked = triage(capsys, "backfill", "--source", box, "--quiet")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert (locked.status, locked.err_lines) == (
            1,
            [
                "triage: error: cannot write the decision log (database is locked; another program holds a lock"
                " on it); stopping. Mail not yet recorded stays undecided and is triaged at the next start"
            ],
        )
        again = triage(capsys, "backfill", "--source", box, "--quiet")
        assert again.status == 0, again.err
        assert len(server.requests) == 3  # uid 1 once, then 2 and 3 once each
    assert {uid: status for uid, (status, _, _) in outcomes(db).items()} == {1: "ok", 2: "ok", 3: "ok"}
