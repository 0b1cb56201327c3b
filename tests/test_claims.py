"""Claims across processes on one store (SQLite, and PostgreSQL in the integration tier), in-process:
no mail or run server needed.

Each `Store` opened here stands for a triage process (its own owner id, its own connections).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from tests.support.postgres import committed_rows
from triage.message import parse_email
from triage.sources import RawMessage
from triage.store import mailboxes, processes, routing_log, tables
from triage.store.decisions import Claim, Claimed, Outcome, Store
from triage.store.engine import SCHEMA_HEAD

LEASE_S = 30.0


def _raw(uid: int) -> RawMessage:
    mail = (
        f"From: a@example.com\r\nSubject: Request {uid}\r\nMessage-ID: <c-{uid}@example.test>\r\n\r\nBody\r\n"
    )
    return RawMessage("acct", "INBOX", 7, uid, mail.encode())


def _claim(store: Store, uid: int) -> Claimed | None:
    raw = _raw(uid)
    email = parse_email(raw.raw, 4000)
    assert not hasattr(email, "reason")
    return store.claim(raw, email, Claim("prompt", "hash", "agent", {"uid": uid}))  # type: ignore[arg-type]


@pytest.fixture
def two(store_url: str) -> Iterator[tuple[Store, Store]]:
    """Two processes on one store, both registered as alive."""
    first, second = Store.open(store_url), Store.open(store_url)
    for store in (first, second):
        processes.beat(store, "test")
    yield first, second
    first.close()
    second.close()


def test_a_live_process_claim_is_never_taken_and_a_gone_one_is_taken_at_once(
    two: tuple[Store, Store],
) -> None:
    first, second = two
    claimed = _claim(first, 1)
    assert claimed is not None
    assert _claim(second, 1) is None  # first is alive: its claim holds
    assert mailboxes.unfinished_uids(second, "acct", "INBOX", 7) == []
    assert mailboxes.held_elsewhere(second, "acct", "INBOX", 7, [1, 2]) == {1}
    processes.leave(first)  # a clean stop lets its claims go
    assert mailboxes.unfinished_uids(second, "acct", "INBOX", 7) == [1]
    assert mailboxes.held_elsewhere(second, "acct", "INBOX", 7, [1]) == set()
    taken = _claim(second, 1)
    assert taken is not None and taken.decision_pk == claimed.decision_pk
    # The first process's late answer is not recorded over the second's claim.
    assert first.record(claimed, Outcome("ok", "ignore")) is False
    assert second.record(taken, Outcome("ok", "new-task", title="T")) is True
    assert committed_rows(second.engine.url, "SELECT status, decision, claimed_by FROM decisions") == [
        ("ok", "new-task", second.owner)
    ]


def test_a_failed_run_may_be_retried_by_any_process(two: tuple[Store, Store]) -> None:
    first, second = two
    claimed = _claim(first, 1)
    assert claimed is not None and first.record(claimed, Outcome("error", error_kind="connect"))
    assert mailboxes.unfinished_uids(second, "acct", "INBOX", 7) == [1]
    assert _claim(second, 1) is not None
    assert _claim(first, 1) is None  # now second holds it


def test_a_process_gone_from_this_host_is_reaped_at_once_and_a_silent_one_after_its_lease(
    two: tuple[Store, Store],
) -> None:
    first, second = two
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(dead.stdout)
    host = first.owner.split(":")[0]
    now = datetime.now(UTC)
    silent = now - timedelta(seconds=LEASE_S + 1)
    rows = [
        (f"{host}:{dead_pid}:dead", host, dead_pid, "backfill", now),
        ("elsewhere:1:silent", "elsewhere", 1, "watch", silent),
        ("elsewhere:2:live", "elsewhere", 2, "watch", now),
    ]
    with first.engine.begin() as connection:
        connection.execute(
            insert(tables.processes),
            [
                {"id": id_, "host": h, "pid": pid, "command": c, "started_at": now, "heartbeat_at": beat}
                for id_, h, pid, c, beat in rows
            ],
        )
    assert processes.reap(first, LEASE_S) == 2
    live = {owner for (owner,) in committed_rows(first.engine.url, "SELECT id FROM processes")}
    assert live == {first.owner, second.owner, "elsewhere:2:live"}


def test_claims_racing_from_two_processes_make_one_claim_each(two: tuple[Store, Store]) -> None:
    first, second = two
    won: dict[str, list[int]] = {first.owner: [], second.owner: []}
    start = threading.Barrier(2)

    def claim_all(store: Store) -> None:
        start.wait()
        for uid in range(1, 201):
            if _claim(store, uid) is not None:
                won[store.owner].append(uid)

    threads = [threading.Thread(target=claim_all, args=(store,)) for store in two]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won[first.owner] + won[second.owner]) == list(range(1, 201))
    counts = committed_rows(first.engine.url, "SELECT count(*), count(DISTINCT message_pk) FROM decisions")
    assert counts == [(200, 200)]
    assert committed_rows(first.engine.url, "SELECT count(*) FROM messages") == [(200,)]


def test_routing_is_carried_out_only_by_the_process_holding_it(two: tuple[Store, Store]) -> None:
    first, second = two
    claimed = _claim(first, 1)
    assert claimed is not None
    assert first.record(claimed, Outcome("ok", "new-task", title="T"), routing_status="pending")
    assert routing_log.jobs(second, "acct", "INBOX", 7) == []  # first holds it with the outcome
    assert not routing_log.claim(second, claimed.decision_pk)
    assert [job.uid for job in routing_log.jobs(first, "acct", "INBOX", 7)] == [1]
    routing_log.record(first, claimed.decision_pk, "error", error="server down")
    assert routing_log.claim(second, claimed.decision_pk)  # a failed step is anyone's to retry
    assert not routing_log.claim(first, claimed.decision_pk)


@pytest.mark.integration
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_processes_opening_a_fresh_store_together_migrate_it_once(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> None:
    """On SQLite under its write lock, on an empty PostgreSQL database under an advisory lock."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    if database == "postgresql":
        url = request.getfixturevalue("postgres_url")
    opener = "import sys\nfrom triage.store.decisions import Store\nStore.open(sys.argv[1]).close()\n"
    started = [
        subprocess.Popen([sys.executable, "-c", opener, url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [process.communicate(timeout=120)[1] for process in started]
    assert [process.returncode for process in started] == [0, 0, 0, 0], errors
    assert errors == ["", "", "", ""]  # no DuplicateTable, nor any other traceback
    assert committed_rows(url, "SELECT version_num FROM alembic_version") == [(SCHEMA_HEAD,)]
