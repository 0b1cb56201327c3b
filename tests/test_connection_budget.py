"""A daemon watching more mailboxes than the server lets it connect: `imap.max_connections` holds.

A real Dovecot allows this user four connections: three for the daemon, one for the user's own
client, which must still log in and append while the daemon runs. Were the daemon to open a fourth,
the user's login (or one of the daemon's) would be refused.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.support.configs import write_config
from tests.support.dovecot import DovecotServer
from tests.support.fake_gmail import FakeGmail
from tests.support.run_server import FakeRunServer
from tests.support.store_view import final_count, rows
from tests.support.watchd import WatchProcess, wait_until, watchers_in_state

pytestmark = pytest.mark.integration

BUDGET = 3
MAILBOXES = ["INBOX", *(f"Project{n}" for n in range(11))]
FAST: dict[str, object] = {
    "idle_renew_s": 5,
    "heartbeat_s": 0.2,
    "retry_backoff_cap_s": 1,
    "reconnect_backoff_cap_s": 1,
}


def _mail(tag: str) -> bytes:
    return f"From: a@example.com\r\nSubject: News in {tag}\r\nMessage-ID: <{tag}@budget.test>\r\n\r\nHi\r\n".encode()


def tcp_connections(pid: int, port: int) -> int:
    """How many TCP connections process `pid` holds open to `port` on loopback (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port, state, inode = int(fields[2].split(":")[1], 16), fields[3], fields[9]
        if remote_port == port and state == "01" and inode in inodes:  # 01: ESTABLISHED
            count += 1
    return count


class PeakConnections:
    """The most connections a process held to an IMAP port at once, sampled every 10 ms."""

    def __init__(self, pid: int, port: int) -> None:
        self.pid, self.port = pid, port
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            with contextlib.suppress(OSError):  # the process has ended
                self.peak = max(self.peak, tcp_connections(self.pid, self.port))

    def __enter__(self) -> PeakConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(params=[True, False], ids=["notify", "without-notify"])
def limited_dovecot(request: pytest.FixtureRequest) -> Iterator[DovecotServer]:
    with DovecotServer.start(max_connections=BUDGET + 1, notify=request.param) as server:
        with server.client() as setup:
            for box in MAILBOXES[1:]:
                setup.create_folder(box)
        yield server


def test_twelve_mailboxes_are_watched_within_the_connection_budget(
    tmp_path: Path, limited_dovecot: DovecotServer
) -> None:
    dovecot = limited_dovecot
    notify = b"NOTIFY" in _capabilities(dovecot)
    # With NOTIFY, the sweep is too rare to find the mail in time: only NOTIFY can.
    watch = {**FAST, "poll_interval_s": 3600 if notify else 1}
    db = tmp_path / "triage.db"
    with FakeRunServer() as server:
        write_config(tmp_path, dovecot, server.url, mailboxes=MAILBOXES, max_connections=BUDGET, watch=watch)
        with WatchProcess(tmp_path) as daemon, PeakConnections(daemon.process.pid, dovecot.port) as held:
            wait_until(lambda: watchers_in_state(db, "idle") == len(MAILBOXES), 60, "every mailbox watched")
            with dovecot.client() as own:  # the user's own client, beside the daemon
                for box in MAILBOXES:
                    own.append(box, _mail(box))
            wait_until(lambda: final_count(db) == len(MAILBOXES), 60, "the mail of every mailbox")
            assert daemon.stop() == 0
    assert 0 < held.peak <= BUDGET, daemon.log
    assert "no more connections" not in daemon.log
    per_mailbox = Counter(box for (box,) in rows(db, _DECIDED_MAILBOXES))
    assert per_mailbox == Counter(MAILBOXES)
    assert server.runs == len(MAILBOXES)
    if notify:
        assert "NOTIFY for 12 mailboxes, fetched over 2" in daemon.log
    else:
        assert "a connection each for INBOX, Project0; one connection checking 10 more" in daemon.log


_DECIDED_MAILBOXES = (
    "SELECT m.mailbox FROM decisions d JOIN messages m ON d.message_pk = m.id WHERE d.status = 'ok'"
)


def _capabilities(dovecot: DovecotServer) -> tuple[bytes, ...]:
    with dovecot.client() as client:
        return tuple(client.capabilities())


def test_a_login_refused_past_the_servers_limit_means_fewer_connections_then_the_budget_again(
    tmp_path: Path,
) -> None:
    """A server allowing three connections, one held by the user's own client: of the daemon's
    three, one is refused (as Gmail words it). The daemon plans again with the ones that got in,
    watches every mailbox with them, tries its whole budget again later (a login refused for
    another passing reason then is retried, not fatal), and decides each message once through
    every plan."""
    boxes = ["INBOX", "Work", "Later"]
    watch = {**FAST, "poll_interval_s": 1, "reconnect_backoff_cap_s": 3}
    db = tmp_path / "triage.db"
    with FakeGmail(gmail=False, max_connections=3) as server, FakeRunServer() as runs:
        own = IMAPClient(server.host, port=server.port, ssl=False, timeout=10)
        own.login(server.username, server.password)
        for box in boxes[1:]:
            own.create_folder(box)
        write_config(tmp_path, server, runs.url, mailboxes=boxes, max_connections=3, watch=watch)
        with WatchProcess(tmp_path, "--verbose") as daemon:
            daemon.wait_for_log("refused a connection past")
            wait_until(lambda: watchers_in_state(db, "idle") == 3, 30, "every mailbox watched")
            for n, box in enumerate(boxes):
                server.add_message(box, _mail(f"{box}-first"), thrid=n + 1)
                server.notify_new(box)
            wait_until(lambda: final_count(db) == 3, 60, "the first mail of each mailbox")
            daemon.wait_for_log("trying 3 connections again")
            # A passing refusal of a login in a later plan is not a wrong password: no exit.
            server.refuse("LOGIN")
            wait_until(lambda: daemon.log.count("trying 3 connections again") >= 3, 60, "two more plans")
            assert daemon.process.poll() is None, daemon.log
            assert "Temporary System Problem" in daemon.log
            for n, box in enumerate(boxes):
                server.add_message(box, _mail(f"{box}-second"), thrid=n + 10)
                server.notify_new(box)
            wait_until(lambda: final_count(db) == 6, 60, f"the second mail of each mailbox:\n{daemon.log}")
            own.noop()  # the user's client kept its connection throughout
            assert daemon.stop() == 0
        own.logout()
    warnings = [line for line in daemon.log.splitlines() if "WARNING" in line]
    assert len([line for line in warnings if "refused a connection past" in line]) == 1, daemon.log
    assert server.most_logged_in == 3
    assert runs.runs == 6
    per_mailbox = Counter(box for (box,) in rows(db, _DECIDED_MAILBOXES))
    assert per_mailbox == Counter(boxes * 2)


def test_shared_connections_killed_while_mail_arrives_lose_nothing_and_run_nothing_twice(
    tmp_path: Path, limited_dovecot: DovecotServer
) -> None:
    """Every IMAP session of the daemon killed twice (NOTIFY's and the fetchers', or the own and
    the checking ones), with mail landing in every mailbox in between: each decided once."""
    dovecot = limited_dovecot
    watch = {**FAST, "poll_interval_s": 1}
    db = tmp_path / "triage.db"
    with FakeRunServer() as server:
        write_config(
            tmp_path,
            dovecot,
            server.url,
            mailboxes=MAILBOXES,
            max_connections=BUDGET,
            watch=watch,
            timeout_s=3,
        )
        own = dovecot.client()  # the user's, open throughout: the daemon's sessions are the others
        users = set(dovecot.session_pids())
        with own, WatchProcess(tmp_path) as daemon:
            for round_no in range(2):
                wait_until(
                    lambda: watchers_in_state(db, "idle") == len(MAILBOXES), 60, "every mailbox watched"
                )
                for pid in set(dovecot.session_pids()) - users:
                    os.kill(pid, signal.SIGKILL)
                for box in MAILBOXES:
                    own.append(box, _mail(f"{box}-{round_no}"))
                expected = len(MAILBOXES) * (round_no + 1)
                wait_until(lambda n=expected: final_count(db) == n, 60, f"round {round_no}:\n{daemon.log}")
            assert daemon.stop() == 0
    assert "connection lost" in daemon.log
    assert Counter(box for (box,) in rows(db, _DECIDED_MAILBOXES)) == Counter(MAILBOXES * 2)
    assert server.runs == 2 * len(MAILBOXES)
