"""Several triage processes on one store and one mailbox, against a real Dovecot and a real
`langgraph dev` of their own (so that its log counts exactly the runs these tests made).

Every message is decided once, run once and routed once, whatever else works on the mailbox.
"""

from __future__ import annotations

import json
import mailbox
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import popen_triage, run_triage
from tests.support.configs import write_config
from tests.support.corpus import support_mail
from tests.support.dovecot import DovecotServer
from tests.support.run_server import FakeRunServer
from tests.support.store_view import final_count, outcomes, rows
from tests.support.watchd import WatchProcess, wait_until, watchers_in_state
from triage.devserver import DevServer
from triage.sources import RawMessage
from triage.threads import message_key

pytestmark = pytest.mark.integration

ROUTING = {"execute": True, "actions": {"new-task": {"add_flags": ["$TriageNewTask"]}}}
WATCH_FAST = {"idle_renew_s": 5, "heartbeat_s": 0.2, "retry_backoff_cap_s": 1, "reconnect_backoff_cap_s": 1}


@pytest.fixture
def counted_langgraph() -> Iterator[DevServer]:
    """A `langgraph dev` for this test alone: its log holds exactly this test's runs."""
    with DevServer(jobs=32) as server:
        yield server


def _support_inbox(tag: str, first: int, count: int) -> list[bytes]:
    """Requests, replies to earlier ones, and list mail, numbered from `first`."""
    mail = []
    for n in range(first, first + count):
        if n % 5 == 0:
            mail.append(support_mail(n, f"Weekly news {n}", list_id=True, tag=tag))
        elif n % 5 == 3 and n > 2:
            mail.append(support_mail(n, f"Re: Request {n - 2}", reply_to=n - 2, tag=tag))
        else:
            mail.append(support_mail(n, f"Request {n}", tag=tag))
    return mail


def _store(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> tuple[Path | str, dict[str, object]]:
    """A store not yet made, as the tests read it and as the config's store section says it."""
    if database == "postgresql":
        url: str = request.getfixturevalue("postgres_url")  # an empty database
        return url, {"url": url}
    return tmp_path / "triage.db", {}


def _finish(process: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def _check_once_each(
    db: Path | str, server: DevServer, account: str, count: int, *, routed: bool = True
) -> None:
    """One final decision, one stateless run, and routing done once, for each of `count` messages."""
    decided = outcomes(db)
    assert sorted(decided) == list(range(1, count + 1))
    assert {status for status, _, _ in decided.values()} == {"ok"}
    assert server.runs_started(stateless=True) == count  # no model call paid twice
    if not routed:
        assert server.runs_started(stateless=False) == 0
        return
    routed = rows(
        db,
        "SELECT m.uid, m.uidvalidity, d.decision, d.routing_status, d.routing_thread_id "
        "FROM decisions d JOIN messages m ON m.id = d.message_pk ORDER BY m.uid",
    )
    on_threads = [row for row in routed if row[2] in ("new-task", "existing-thread")]
    assert on_threads and all(status == "done" for _, _, _, status, _ in on_threads), routed
    assert all(status is None for _, _, decision, status, _ in routed if decision == "ignore")
    new_tasks = sum(1 for row in routed if row[2] == "new-task")
    assert rows(db, "SELECT count(*) FROM threads") == [(new_tasks,)]
    wait_until(lambda: server.runs_started(stateless=False) >= len(on_threads), 60, "every task run to start")
    assert server.runs_started(stateless=False) == len(on_threads)
    with httpx.Client(base_url=server.url, timeout=30) as api:
        for uid, uidvalidity, _, _, thread_id in on_threads:
            key = message_key(RawMessage(account, "INBOX", int(uidvalidity), int(uid), b""))  # type: ignore[call-overload]
            runs = api.get(f"/threads/{thread_id}/runs", params={"limit": 1000}).json()
            assert [run["metadata"].get("triage_message") for run in runs].count(key) == 1, uid


@pytest.mark.parametrize(
    ("routing", "database"),
    [(ROUTING, "sqlite"), ({}, "sqlite"), (ROUTING, "postgresql")],
    ids=["routing", "recording-only", "routing-postgresql"],
)
def test_backfill_while_the_daemon_takes_new_mail_runs_each_message_once(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    dovecot: DovecotServer,
    counted_langgraph: DevServer,
    routing: dict[str, object],
    database: str,
) -> None:
    """With routing on, and off (then the backfill batches its writes, yet the daemon still writes)."""
    tag = uuid.uuid4().hex[:8]
    dovecot.append(_support_inbox(tag, 1, 40))  # older mail: the backfill's
    db, store = _store(request, tmp_path, database)
    write_config(tmp_path, dovecot, counted_langgraph.url, routing=routing, watch=WATCH_FAST, store=store)
    with WatchProcess(tmp_path) as daemon:
        daemon.wait_idle(db)
        # New mail lands while the backfill starts, which finds it not yet decided too.
        dovecot.append(_support_inbox(tag, 41, 10))
        arriving = threading.Thread(
            target=lambda: [dovecot.append(_support_inbox(tag, 51 + 10 * burst, 10)) for burst in range(2)]
        )
        backfill = popen_triage("backfill", "--quiet", "--concurrency", "8", cwd=tmp_path)
        arriving.start()
        arriving.join()
        status, stderr = _finish(backfill)
        assert status == 0, stderr
        assert "Traceback" not in stderr
        wait_until(lambda: final_count(db) == 70, 120, f"all 70 decided:\n{daemon.log}")
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.log
    _check_once_each(db, counted_langgraph, f"{dovecot.username}@127.0.0.1", 70, routed=bool(routing))
    if not routing:
        return
    with dovecot.client() as client:
        client.select_folder("INBOX", readonly=True)
        flagged = [
            uid for uid, flags in client.get_flags(client.search("ALL")).items() if b"$TriageNewTask" in flags
        ]
    new_tasks = [uid for uid, (_, decision, _) in outcomes(db).items() if decision == "new-task"]
    assert sorted(flagged) == sorted(new_tasks)


@pytest.mark.parametrize(
    ("processes", "database"),
    [(2, "sqlite"), (3, "sqlite"), (3, "postgresql")],
    ids=["2", "3", "3-postgresql"],
)
def test_backfills_started_together_on_a_fresh_store_run_each_message_once(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    dovecot: DovecotServer,
    counted_langgraph: DevServer,
    processes: int,
    database: str,
) -> None:
    """On a store not yet made: they migrate it once, then divide the mailbox through their claims."""
    db, store = _store(request, tmp_path, database)
    dovecot.append(_support_inbox(uuid.uuid4().hex[:8], 1, 99))
    write_config(tmp_path, dovecot, counted_langgraph.url, routing=ROUTING, watch=WATCH_FAST, store=store)
    started = [
        popen_triage("backfill", "--quiet", "--concurrency", "8", cwd=tmp_path) for _ in range(processes)
    ]
    finished = [_finish(process) for process in started]
    assert [status for status, _ in finished] == [0] * processes, finished
    assert not any("Traceback" in stderr for _, stderr in finished)
    _check_once_each(db, counted_langgraph, f"{dovecot.username}@127.0.0.1", 99)


def test_two_daemons_started_together_on_a_fresh_store_both_watch(
    tmp_path: Path, dovecot: DovecotServer, counted_langgraph: DevServer
) -> None:
    dovecot.create_mailbox("Escalations")
    write_config(tmp_path, dovecot, counted_langgraph.url, watch=WATCH_FAST)
    db = tmp_path / "triage.db"
    with (
        WatchProcess(tmp_path, "--mailbox", "INBOX") as first,
        WatchProcess(tmp_path, "--mailbox", "Escalations") as second,
    ):
        wait_until(lambda: watchers_in_state(db, "idle") == 2, 60, f"both idle:\n{first.log}\n{second.log}")
        dovecot.append(_support_inbox("inbox", 1, 5))
        dovecot.append(_support_inbox("esc", 1, 5), mailbox="Escalations")
        wait_until(lambda: final_count(db) == 10, 60, "mail in both mailboxes decided")
        assert first.stop() == 0 and second.stop() == 0
    assert "Traceback" not in first.log + second.log
    per_mailbox = rows(
        db,
        "SELECT m.mailbox, count(*) FROM messages m JOIN decisions d ON d.message_pk = m.id GROUP BY m.mailbox",
    )
    assert sorted(per_mailbox) == [("Escalations", 5), ("INBOX", 5)]
    assert counted_langgraph.runs_started(stateless=True) == 10


def test_a_backfill_whose_run_server_dies_stops_and_exits_1_in_one_line(
    tmp_path: Path, counted_langgraph: DevServer
) -> None:
    box = mailbox.mbox(tmp_path / "in.mbox")
    for raw in _support_inbox("dead", 1, 300):
        box.add(raw)
    box.close()
    db = tmp_path / "triage.db"
    env = {
        "TRIAGE_LANGGRAPH__URL": counted_langgraph.url,
        "TRIAGE_LANGGRAPH__MAX_ATTEMPTS": "3",
        "TRIAGE_LANGGRAPH__BACKOFF_CAP_S": "0.2",
        "TRIAGE_STORE__URL": f"sqlite:///{db}",
    }
    backfill = popen_triage(
        "backfill",
        "--source",
        str(tmp_path / "in.mbox"),
        "--quiet",
        "--concurrency",
        "4",
        cwd=tmp_path,
        env=env,
    )
    wait_until(lambda: final_count(db) >= 20, 120, "the backfill to be under way")
    counted_langgraph.stop(signal.SIGKILL)
    status, stderr = _finish(backfill)
    assert status == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("triage: "), stderr
    assert "stopped after 5 runs in a row could not reach the run server" in lines[0]
    decided = outcomes(db)
    errors = sum(1 for status, _, _ in decided.values() if status == "error")
    # What was in flight when the server died failed; nothing after the breaker opened was sent.
    assert 5 <= errors <= 5 + 4 * 2
    undecided = 300 - sum(1 for status, _, _ in decided.values() if status == "ok")
    assert (
        f"triage: {undecided} messages stay undecided ({errors} failed runs; {undecided - errors} not sent"
        in lines[0]
    )


def test_status_follows_the_daemon_message_by_message_and_shows_a_run_server_down(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    answers = {"now": "delay:0.2"}
    with FakeRunServer(lambda _index, _body: answers["now"]) as server:
        write_config(
            tmp_path,
            dovecot,
            server.url,
            langgraph={"max_concurrency": 1, "max_attempts": 1},
            watch=WATCH_FAST,
        )
        db = tmp_path / "triage.db"
        with WatchProcess(tmp_path) as daemon:
            daemon.wait_idle(db)
            dovecot.append(_support_inbox("status", 1, 20))
            # Part-way through one batch: the backlog has counted down and a decision is shown.
            wait_until(
                lambda: _status(db)[0] is not None and 0 < _status(db)[1] < 20 and 0 < final_count(db) < 20,
                60,
                "a backlog counting down with decisions shown",
            )
            wait_until(lambda: final_count(db) == 20 and _status(db)[1] == 0, 60, "the backlog drained")
            answers["now"] = "500"
            dovecot.append(_support_inbox("status", 21, 2))
            wait_until(lambda: _status(db)[2] >= 2, 60, "failed runs counted while the server fails")
            shown = json.loads(run_triage("status", "--json", cwd=tmp_path).stdout)
            assert shown["failures"] >= 2 and shown["last_error"].startswith("run failed: http")
            answers["now"] = "ok"
            wait_until(lambda: final_count(db) == 22 and _status(db)[2] == 0, 60, "recovery")
            assert daemon.stop() == 0


def _status(db: Path) -> tuple[object, int, int]:
    """The watcher's last decision time, backlog and failures, as `triage status` reads them."""
    found = rows(db, "SELECT last_decision_at, backlog, failures FROM watchers WHERE mailbox = 'INBOX'")
    return (found[0][0], int(found[0][1]), int(found[0][2])) if found else (None, -1, -1)  # type: ignore[call-overload]
