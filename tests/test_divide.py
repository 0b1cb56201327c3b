"""Three daemons on one PostgreSQL store divide eight mailboxes (`watch.divide`), and take over
from one whose heartbeats stop (SIGSTOP: a pulled cable) or that is SIGKILLed; mail appended
throughout is decided exactly once and run exactly once."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.cli import run_triage
from tests.support.configs import write_config
from tests.support.dovecot import DovecotServer
from tests.support.postgres import PostgresCluster
from tests.support.run_server import FakeRunServer
from tests.support.store_view import final_count, rows
from tests.support.watchd import WatchProcess, wait_until

pytestmark = pytest.mark.integration

MAILBOXES = ["INBOX", *(f"Team{n}" for n in range(7))]
LEASE_S = 3.0
WATCH: dict[str, object] = {
    "divide": True,
    "lease_s": LEASE_S,
    "heartbeat_s": 0.2,
    "poll_interval_s": 1,
    "idle_renew_s": 5,
    "retry_backoff_cap_s": 1,
    "reconnect_backoff_cap_s": 1,
}
_HOLDERS = "SELECT mailbox, owner FROM watchers WHERE state NOT IN ('stopped', 'starting')"


def holders(url: str) -> dict[str, str]:
    """mailbox -> the daemon (host:pid) whose lease on it is live now."""
    fresh = time.time() - LEASE_S
    found = rows(
        url,
        "SELECT mailbox, owner, extract(epoch from heartbeat_at) FROM watchers WHERE state <> 'stopped'",
    )
    return {str(box): str(owner) for box, owner, beat in found if float(beat) >= fresh}  # type: ignore[arg-type]


def pid_of(daemon: WatchProcess) -> str:
    return f":{daemon.process.pid}"


def divided_among(url: str, daemons: list[WatchProcess]) -> bool:
    """Every mailbox held, each by one of these daemons, none holding more than its fair share."""
    held = holders(url)
    owners = Counter(held.values())
    share = -(-len(MAILBOXES) // len(daemons))
    return (
        sorted(held) == sorted(MAILBOXES)
        and all(any(owner.endswith(pid_of(d)) for d in daemons) for owner in owners)
        and max(owners.values()) <= share
    )


def send_round(dovecot: DovecotServer, round_no: int) -> None:
    for box in MAILBOXES:
        raw = (
            f"From: c{round_no}@example.com\r\nSubject: Round {round_no} in {box}\r\n"
            f"Message-ID: <r{round_no}-{box}@divide.test>\r\n\r\nHello\r\n"
        ).encode()
        dovecot.append([raw], box)


def test_three_daemons_divide_the_mailboxes_and_take_over_from_lost_ones(
    tmp_path: Path, dovecot: DovecotServer, postgres: PostgresCluster
) -> None:
    postgres_url = postgres.new_database(migrated=True)
    for box in MAILBOXES[1:]:
        dovecot.create_mailbox(box)
    with FakeRunServer() as server:
        write_config(
            tmp_path, dovecot, server.url, mailboxes=MAILBOXES, watch=WATCH, store={"url": postgres_url}
        )
        daemons = [WatchProcess(tmp_path) for _ in range(3)]
        try:
            wait_until(lambda: divided_among(postgres_url, daemons), 60, "the mailboxes divided among three")
            wait_until(
                lambda: len(rows(postgres_url, _HOLDERS + " AND state = 'idle'")) == 8, 30, "all watched"
            )
            send_round(dovecot, 1)
            wait_until(lambda: final_count(postgres_url) == 8, 60, "round 1")

            cable = daemons[0]  # its heartbeats stop; its process lives on, like a machine cut off
            cable.process.send_signal(signal.SIGSTOP)
            send_round(dovecot, 2)
            started = time.monotonic()
            wait_until(lambda: divided_among(postgres_url, daemons[1:]), 60, "a cut-off daemon's mailboxes")
            cut_off_takeover_s = time.monotonic() - started
            wait_until(lambda: final_count(postgres_url) == 16, 60, "round 2")
            cable.process.send_signal(signal.SIGCONT)  # back: it finds its leases gone, and shares again
            wait_until(lambda: divided_among(postgres_url, daemons), 60, "the mailboxes divided again")

            killed = daemons[1]
            killed.process.kill()
            killed.process.wait()
            send_round(dovecot, 3)
            started = time.monotonic()
            survivors = [daemons[0], daemons[2]]
            wait_until(lambda: divided_among(postgres_url, survivors), 60, "a killed daemon's mailboxes")
            killed_takeover_s = time.monotonic() - started
            wait_until(lambda: final_count(postgres_url) == 24, 60, "round 3")
            shown = run_triage("status", cwd=tmp_path).stdout
            for box, owner in holders(postgres_url).items():  # which daemon holds each mailbox
                assert any(
                    line.startswith(box + " ") and f"held by {owner}" in line for line in shown.splitlines()
                )
            assert [d.stop() for d in survivors] == [0, 0], "\n".join(d.log for d in survivors)
        finally:
            for daemon in daemons:
                daemon.__exit__()
    decided = Counter(
        str(message_id)
        for (message_id,) in rows(
            postgres_url,
            "SELECT m.message_id FROM decisions d JOIN messages m ON d.message_pk = m.id WHERE d.status = 'ok'",
        )
    )
    assert len(decided) == 24 and set(decided.values()) == {1}
    assert server.runs == 24
    # The lease ages out before a cut-off daemon's mailboxes change hands; a dead process's at once.
    assert LEASE_S - 1 <= cut_off_takeover_s <= LEASE_S + 10
    assert killed_takeover_s <= LEASE_S + 10
    logs = "\n".join(d.log for d in daemons)
    assert "taken over by another daemon" in daemons[0].log, logs
