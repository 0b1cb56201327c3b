"""A PostgreSQL store end to end: a backfill and the log's commands on it, and a URL's password
kept out of every message (processes migrating one database together: tests/test_claims.py).

Each test has a fresh database of the session's private cluster (tests/support/postgres.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.configs import write_file_config
from tests.support.corpus import support_mail
from tests.support.inprocess import FAST_RUNS, triage, write_mbox
from tests.support.postgres import PASSWORD, PostgresCluster, committed_rows
from tests.support.run_server import FakeRunServer
from triage.errors import TriageError
from triage.store.decisions import Store

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_triage_env")]

Capsys = pytest.CaptureFixture[str]
SUBJECTS = ("Invoice overdue for ACME-42", "Password reset please", "Weekly newsletter")


def test_a_backfill_then_log_export_threads_stats_show_correct_replay_and_purge(
    postgres_url: str, tmp_path: Path, capsys: Capsys
) -> None:
    box = write_mbox(tmp_path / "in.mbox", [support_mail(n, s) for n, s in enumerate(SUBJECTS, 1)])
    with FakeRunServer() as server:
        config = write_file_config(tmp_path, server.url, langgraph=FAST_RUNS, store={"url": postgres_url})
        done = triage(capsys, "--config", config, "backfill", "--source", box)
        assert done.status == 0, done.err
        assert "triaged 3 of 3 planned" in done.out

        found = triage(capsys, "--config", config, "log", "-q", "acme-42", "--json")
        assert found.status == 0, found.err
        (entry,) = [json.loads(line) for line in found.out_lines]
        assert entry["subject"] == SUBJECTS[0] and entry["decision"] == "new-task"
        assert entry["time"].endswith("+00:00")  # in UTC, whatever the session's time zone
        prefix = triage(capsys, "--config", config, "log", "-q", "passw* customer2", "--json")
        assert [json.loads(line)["subject"] for line in prefix.out_lines] == [SUBJECTS[1]]
        assert triage(capsys, "--config", config, "log", "-q", "acme-43", "--json").out == ""

        corrected = triage(capsys, "--config", config, "correct", str(entry["id"]), "--decision", "ignore")
        assert corrected.status == 0, corrected.err
        shown = triage(capsys, "--config", config, "show", str(entry["id"]))
        assert shown.status == 0, shown.err
        assert SUBJECTS[0] in shown.out and "ignore" in shown.out

        exported = triage(capsys, "--config", config, "export", "--format", "jsonl")
        assert [json.loads(line)["subject"] for line in exported.out_lines] == list(SUBJECTS)
        threads = triage(capsys, "--config", config, "threads")
        assert threads.status == 0 and [line.split()[1] for line in threads.out_lines] == ["open"] * 3

        stats = triage(capsys, "--config", config, "stats", "--json")
        assert stats.status == 0, stats.err
        total = json.loads(stats.out)["total"]
        assert (total["total"], total["decisions"]["new-task"], total["corrected"]) == (3, 3, 1)
        assert total["after_corrections"] == {"ignore": 1, "new-task": 2}
        only_corrected = json.loads(triage(capsys, "--config", config, "stats", "--corrected", "--json").out)
        assert only_corrected["total"]["total"] == 1

        asked = len(server.requests)
        replayed = triage(capsys, "--config", config, "replay", "--json")
        assert replayed.status == 0, replayed.err
        assert len(server.requests) == asked + 3  # each stored message sent again
        report = json.loads(replayed.out)
        assert report["replayed"] == 3
        assert report["prompts"] == {"compared": 3, "identical": 3}  # the stored mail renders as it did
        assert report["agreement"]["recorded"] == {"agree": 3, "total": 3}
        assert report["agreement"]["corrections"] == {"agree": 0, "total": 1}

    purged = triage(capsys, "--config", config, "purge", "--before", "2100-01-01", "--keep-decisions")
    assert purged.status == 0, purged.err
    assert committed_rows(postgres_url, "SELECT count(*) FROM messages WHERE body_excerpt IS NOT NULL") == [
        (0,)
    ]
    assert (
        json.loads(triage(capsys, "--config", config, "log", "-q", "acme-42", "--json").out)["id"]
        == entry["id"]
    )
    views = "SELECT (SELECT count(*) FROM decisions_view), (SELECT count(*) FROM threads_view)"
    assert committed_rows(postgres_url, views) == [(3, 2)]  # the corrected new task left its thread


def test_a_wrong_password_is_reported_without_the_password(postgres: PostgresCluster) -> None:
    url = postgres.new_database().replace(PASSWORD, "wrong-Secret-91c2")
    with pytest.raises(TriageError) as refused:
        Store.open(url)
    message = str(refused.value)
    assert "password authentication failed" in message
    assert "wrong-Secret-91c2" not in message and "***" in message


def test_a_store_that_cannot_be_reached_is_reported_without_the_password(
    postgres: PostgresCluster, tmp_path: Path, capsys: Capsys
) -> None:
    postgres_url = postgres.url("triage")
    closed_port = postgres_url.replace(f":{postgres.port}/", ":1/")  # nothing listens on port 1
    with FakeRunServer() as server:
        config = write_file_config(tmp_path, server.url, store={"url": closed_port})
        shown = triage(capsys, "--config", config, "config")
        failed = triage(capsys, "--config", config, "stats")
    assert PASSWORD not in shown.out and "127.0.0.1:1/" in shown.out  # the config, secrets masked
    assert failed.status == 1
    assert f"cannot open store {closed_port.replace(PASSWORD, '***')}: connection failed" in failed.err
    assert PASSWORD not in failed.out + failed.err
