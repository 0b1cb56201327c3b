"""`triage watch` against a real Dovecot and a real `langgraph dev`: every appended message ends
with exactly one recorded decision, whatever happens to the connection, the servers or the daemon."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli import run_triage
from tests.support.configs import write_config
from tests.support.dovecot import DovecotServer
from tests.support.run_server import FakeRunServer
from tests.support.store_view import final_count, outcomes, rows
from tests.support.watchd import WatchProcess, has_open, wait_until, watcher_state, watchers_in_state
from triage.devserver import DevServer

pytestmark = pytest.mark.integration

WATCH_FAST = {"idle_renew_s": 5, "heartbeat_s": 0.2, "retry_backoff_cap_s": 1, "reconnect_backoff_cap_s": 1}


def _plain(count: int, start: int = 0) -> list[bytes]:
    """Distinct, well-formed messages (the corpus's unparseable kinds would blur the counts)."""
    return [
        f"From: user{n}@example.com\r\nTo: team@example.com\r\nSubject: Request {n}\r\n"
        f"Message-ID: <watch-{n}@example.test>\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\n\r\n"
        f"Please look at item {n}.\r\n".encode()
        for n in range(start, start + count)
    ]


def _all_final_once(db: Path, uids: range) -> dict[int, tuple[str, str | None, int]]:
    """Exactly one row per uid, all of them final (ok), and no other rows."""
    result = outcomes(db)
    assert sorted(result) == list(uids), sorted(result)
    assert Counter(status for status, _, _ in result.values()) == {"ok": len(uids)}
    return result


@pytest.fixture
def setup(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer
) -> tuple[Path, DovecotServer, str]:
    write_config(tmp_path, dovecot, langgraph_server.url, watch=WATCH_FAST, timeout_s=3)
    return tmp_path, dovecot, langgraph_server.url


def test_new_mail_while_idling_is_triaged_once_and_old_mail_is_left_to_backfill(
    setup: tuple[Path, DovecotServer, str], stateless_runs: Callable[[], int]
) -> None:
    folder, dovecot, _url = setup
    db = folder / "triage.db"
    dovecot.append(_plain(3))  # before the first watch: backfill's job
    with WatchProcess(folder) as daemon:
        daemon.wait_idle(db)
        assert "first watch; mail up to UID 3 is left to `triage backfill`" in daemon.log
        for burst in range(3):
            dovecot.append(_plain(10, start=3 + burst * 10))
            wait_until(lambda b=burst: final_count(db) == 10 * (b + 1), 60, f"burst {burst} decided")
        status = run_triage("status", "--json", cwd=folder)
        entry = json.loads(status.stdout)
        assert entry["mailbox"] == "INBOX" and entry["alive"] is True and entry["connected"] is True
        assert entry["last_seen_uid"] == 33
        assert daemon.stop() == 0
    result = _all_final_once(db, range(4, 34))
    assert all(attempts == 1 for _, _, attempts in result.values())
    assert stateless_runs() == 30  # one run per new message; none for the mail left to backfill
    assert daemon.log.count(" uid ") == 30  # one line per processed message
    assert watcher_state(db) == "stopped"


def test_killed_imap_sessions_during_idle_and_during_fetches(
    setup: tuple[Path, DovecotServer, str], stateless_runs: Callable[[], int]
) -> None:
    folder, dovecot, url = setup
    db = folder / "triage.db"
    write_config(folder, dovecot, url, watch=WATCH_FAST, timeout_s=3, fetch_batch=5)
    with WatchProcess(folder) as daemon:
        daemon.wait_idle(db)
        for pid in dovecot.session_pids():
            os.kill(pid, signal.SIGKILL)
        dovecot.append(_plain(5))
        wait_until(lambda: final_count(db) == 5, 60, "mail after a killed IDLE session")
        assert "INBOX: connection lost" in daemon.log
        dovecot.append(_plain(60, start=5))
        kills = 0
        while final_count(db) < 65 and kills < 4:
            wait_until(lambda k=kills: final_count(db) >= 10 + 12 * k, 60, "progress between kills")
            for pid in dovecot.session_pids():
                os.kill(pid, signal.SIGKILL)
            kills += 1
        wait_until(lambda: final_count(db) == 65, 90, "all mail decided after the kills")
        assert daemon.stop() == 0
    _all_final_once(db, range(1, 66))
    assert stateless_runs() == 65  # a catch-up after each reconnect runs nothing already claimed


def test_dovecot_down_while_mail_lands_in_its_maildir(
    setup: tuple[Path, DovecotServer, str], stateless_runs: Callable[[], int]
) -> None:
    folder, dovecot, _url = setup
    db = folder / "triage.db"
    with WatchProcess(folder) as daemon:
        daemon.wait_idle(db)
        dovecot.stop()
        maildir = dovecot.root / "mail" / dovecot.username
        for n, raw in enumerate(_plain(8)):
            tmp = maildir / "tmp" / f"{time.time():.6f}.m{n}.test"
            tmp.write_bytes(raw)
            os.chown(tmp, 65534, 65534)
            tmp.rename(maildir / "new" / tmp.name)
        wait_until(lambda: watcher_state(db) == "reconnecting", 30, "the daemon to notice")
        time.sleep(10)  # the outage itself: ten seconds of refused connections
        dovecot.restart()
        wait_until(lambda: final_count(db) == 8, 60, "mail that arrived during the outage")
        assert daemon.log.count("INBOX: connection lost") == 1  # one line per change, not per retry
        assert "INBOX: reconnected after" in daemon.log
        assert daemon.stop() == 0
    _all_final_once(db, range(1, 9))
    assert stateless_runs() == 8


def test_a_hung_server_is_noticed_within_the_configured_timeout(
    setup: tuple[Path, DovecotServer, str], stateless_runs: Callable[[], int]
) -> None:
    folder, dovecot, url = setup
    db = folder / "triage.db"
    renew_s, timeout_s = 2, 2
    write_config(folder, dovecot, url, watch={**WATCH_FAST, "idle_renew_s": renew_s}, timeout_s=timeout_s)
    with WatchProcess(folder) as daemon:
        daemon.wait_idle(db)
        (session,) = dovecot.session_pids()
        os.kill(session, signal.SIGSTOP)
        noticed = daemon.wait_for_log("the server stopped answering (socket timeout)", timeout=30)
        # The README's bound, idle_renew_s + timeout_s, plus 1 s: the log poll (0.05 s), the log
        # line's write and a busy two-core machine's scheduling; a miss by a whole IDLE slice
        # (1 s) or a second timeout would still exceed it.
        assert noticed < renew_s + timeout_s + 1, noticed
        dovecot.append(_plain(3))
        wait_until(lambda: final_count(db) == 3, 60, "mail through a new session")
        assert daemon.stop() == 0
    _all_final_once(db, range(1, 4))
    assert stateless_runs() == 3


def test_run_server_down_then_back_drains_the_backlog(tmp_path: Path, dovecot: DovecotServer) -> None:
    db = tmp_path / "triage.db"
    with DevServer(jobs=16) as server:
        write_config(
            tmp_path,
            dovecot,
            server.url,
            watch=WATCH_FAST,
            timeout_s=3,
            langgraph={"max_attempts": 2, "backoff_cap_s": 0.1, "timeout_s": 5},
        )
        with WatchProcess(tmp_path) as daemon:
            daemon.wait_idle(db)
            server.stop()
            dovecot.append(_plain(6))
            wait_until(
                lambda: rows(db, "SELECT count(*) FROM decisions WHERE status = 'error'")[0][0] == 6,
                60,
                "failed runs recorded as errors",
            )
            assert final_count(db) == 0
            server.restart()
            wait_until(lambda: final_count(db) == 6, 60, "the backlog to drain")
            assert daemon.stop() == 0
        # Its log starts again with the restart: the failed attempts never reached a server.
        assert server.runs_started(stateless=True) == 6
    result = _all_final_once(db, range(1, 7))
    assert all(attempts >= 3 for _, _, attempts in result.values()), result  # 2 failed + 1 good


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_stopped_mid_batch_then_restarted_loses_nothing_and_repeats_nothing(
    setup: tuple[Path, DovecotServer, str], stateless_runs: Callable[[], int], sig: signal.Signals
) -> None:
    folder, dovecot, url = setup
    db = folder / "triage.db"
    in_flight, grace_s = 2, 10
    write_config(
        folder,
        dovecot,
        url,
        watch={**WATCH_FAST, "shutdown_grace_s": grace_s},
        timeout_s=3,
        langgraph={"max_concurrency": in_flight},
    )
    with WatchProcess(folder) as daemon:
        daemon.wait_idle(db)
        dovecot.append(_plain(40))
        wait_until(lambda: final_count(db) >= 4, 60, "the batch to be under way")
        started, runs_at_stop = time.monotonic(), stateless_runs()
        status = daemon.stop(sig)
    before = {uid: r for uid, r in outcomes(db).items() if r[0] == "ok"}
    assert len(before) < 40, "the stop must land mid-batch"
    if sig == signal.SIGTERM:
        assert status == 0 and "finishing in-flight runs" in daemon.log
        # The runs in flight get shutdown_grace_s (they take about a second here); 2 s for the
        # process's own exit (closing connections, the store) on a busy machine.
        assert time.monotonic() - started < grace_s + 2
        # No new run starts: at most those in flight when the signal came are started after it...
        assert stateless_runs() - runs_at_stop <= in_flight
        # ...and each of them finished and was recorded: every run started has its decision.
        assert stateless_runs() == len(before)
        assert rows(db, "SELECT count(*) FROM decisions WHERE status = 'pending'") == [(0,)]
    with WatchProcess(folder) as again:  # at once: a SIGKILLed holder's lease is taken over
        wait_until(lambda: final_count(db) == 40, 90, "the rest after a restart")
        assert again.stop() == 0
    after = _all_final_once(db, range(1, 41))
    assert all(after[uid] == r for uid, r in before.items())
    # Runs a SIGKILL left in flight are joined by the restart, not started again.
    assert stateless_runs() == 40


def test_a_recreated_folder_keeps_old_decisions_and_triages_only_new_mail(
    setup: tuple[Path, DovecotServer, str], stateless_runs: Callable[[], int]
) -> None:
    folder, dovecot, _url = setup
    db = folder / "triage.db"
    dovecot.create_mailbox("Work")
    old = _plain(5)
    # The same Message-ID and Date as old mail, other content (so another size): not the same
    # mail, whatever its Message-ID says (the rule: Message-ID, date and size).
    changed = old[0].replace(b"Please look at item 0.", b"Please look at item 0, and at item 7 too.")
    dovecot.append(old, mailbox="Work")
    assert run_triage("backfill", "--mailbox", "Work", cwd=folder).returncode == 0
    with WatchProcess(folder, "--mailbox", "Work") as daemon:
        daemon.wait_idle(db, "Work")
        with dovecot.client() as client:
            client.delete_folder("Work")
            client.create_folder("Work")
        dovecot.append([*old, changed, *_plain(3, start=100)], mailbox="Work")
        wait_until(lambda: final_count(db) == 5 + 9, 60, "old and new mail in the recreated folder")
        assert "Work: UIDVALIDITY changed" in daemon.log
        assert daemon.stop() == 0
    generations = rows(
        db,
        "SELECT m.uidvalidity, m.uid, d.decided_by, d.attempts FROM messages m "
        "JOIN decisions d ON d.message_pk = m.id ORDER BY m.uidvalidity, m.uid",
    )
    first, second = sorted({g[0] for g in generations})
    assert [(uid, by) for v, uid, by, _ in generations if v == first] == [(u, "run") for u in range(1, 6)]
    new = [(uid, str(by)) for v, uid, by, _ in generations if v == second]
    assert [uid for uid, _ in new] == list(range(1, 10))
    assert [by.split(":")[0] for _, by in new] == ["carried-over"] * 5 + ["run"] * 4
    assert stateless_runs() == 5 + 4  # the backfill's, then the changed and the new mail's


def test_a_second_daemon_refuses_or_waits(
    setup: tuple[Path, DovecotServer, str], stateless_runs: Callable[[], int]
) -> None:
    folder, dovecot, _url = setup
    db = folder / "triage.db"
    with WatchProcess(folder) as first:
        first.wait_idle(db)
        refused = run_triage("watch", cwd=folder, timeout=60)
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "is already watched by" in lines[0], refused.stderr
        with WatchProcess(folder, "--wait") as second:
            # It opens the store, then asks for the lease (and, told it is taken, waits).
            wait_until(
                lambda: has_open(second.process.pid, db), 30, f"the second daemon's store:\n{second.log}"
            )
            assert second.process.poll() is None and "watching" not in second.log
            assert first.stop() == 0
            second.wait_for_log("INBOX: watching (IDLE)")
            dovecot.append(_plain(2))
            wait_until(lambda: final_count(db) == 2, 60, "mail through the second daemon")
            assert second.stop() == 0
    _all_final_once(db, range(1, 3))
    assert stateless_runs() == 2


def test_wrong_password_is_fatal_with_one_line(setup: tuple[Path, DovecotServer, str]) -> None:
    folder, dovecot, url = setup
    write_config(folder, dovecot, url, watch=WATCH_FAST, password="not-the-Pa55word")
    done = run_triage("watch", cwd=folder, timeout=60)
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("triage: error: IMAP login failed"), done.stderr
    assert "Traceback" not in done.stderr and "not-the-Pa55word" not in done.stderr


def test_a_refused_api_key_stops_the_daemon_with_one_line(tmp_path: Path, dovecot: DovecotServer) -> None:
    db = tmp_path / "triage.db"
    with FakeRunServer(api_key="the-right-key-5e1d") as server:
        # One run at a time: the second message waits for the first run's slot, which it never gets.
        langgraph = {"api_key": "a-wrong-key-0b7c", "max_attempts": 1, "max_concurrency": 1}
        write_config(tmp_path, dovecot, server.url, watch=WATCH_FAST, timeout_s=3, langgraph=langgraph)
        with WatchProcess(tmp_path) as daemon:
            daemon.wait_idle(db)
            dovecot.append(_plain(2))
            status = daemon.process.wait(timeout=60)  # it stops by itself
    assert status == 3, daemon.log
    assert (
        server.paths.count("/runs/wait") == 1 and server.runs == 0
    )  # stopped at the first refusal  # like a refused IMAP login: a service manager does not restart it
    refusals = [line for line in daemon.log.splitlines() if "refused triage's credentials (HTTP 401" in line]
    assert len(refusals) == 1 and refusals[0].startswith("triage: error: "), daemon.log
    assert "check langgraph.api_key" in refusals[0]
    assert "Traceback" not in daemon.log and "a-wrong-key-0b7c" not in daemon.log
    assert {status for status, _, _ in outcomes(db).values()} <= {"error", "pending"}  # retried later


def test_json_logs_and_retry_by_hand(
    setup: tuple[Path, DovecotServer, str], stateless_runs: Callable[[], int]
) -> None:
    folder, dovecot, url = setup
    db = folder / "triage.db"
    dovecot.append(_plain(4))
    write_config(
        folder, dovecot, "http://127.0.0.1:9", watch=WATCH_FAST, langgraph={"max_attempts": 1, "timeout_s": 2}
    )
    assert run_triage("backfill", cwd=folder).returncode == 1  # unreachable: nothing recorded
    write_config(folder, dovecot, url, watch=WATCH_FAST)
    assert run_triage("backfill", cwd=folder).returncode == 0
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("UPDATE decisions SET status = 'error', error_kind = 'http' WHERE id IN (1, 2)")
    connection.close()
    retried = run_triage("retry", "--status", "error", cwd=folder)
    assert retried.returncode == 0, retried.stderr
    assert "triaged 2 of 2 planned" in retried.stdout
    result = _all_final_once(db, range(1, 5))
    assert [result[uid][2] for uid in (1, 2, 3, 4)] == [2, 2, 1, 1]
    with WatchProcess(folder, "--log-format", "json") as daemon:
        daemon.wait_idle(db)
        dovecot.append(_plain(1, start=50))
        wait_until(lambda: final_count(db) == 5, 60, "one more message")
        assert daemon.stop() == 0
    assert stateless_runs() == 4 + 2 + 1  # the backfill, the two retried by hand, the daemon's one
    entries = [json.loads(line) for line in daemon.log.splitlines()]
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["message"].startswith("INBOX uid 5: new-task") for e in entries)


def _deliver(dovecot: DovecotServer, mailbox: str, raw: bytes) -> None:
    """Into the mailbox's maildir, as a delivery agent does: no IMAP login needed (the daemon
    holds every connection the server allows this account)."""
    maildir = dovecot.root / "mail" / dovecot.username
    folder = maildir if mailbox == "INBOX" else maildir / f".{mailbox}"
    tmp = folder / "tmp" / f"{time.time():.6f}.{mailbox}.test"
    tmp.write_bytes(raw)
    os.chown(tmp, 65534, 65534)
    tmp.rename(folder / "new" / tmp.name)


def test_mailboxes_past_the_servers_connection_limit_are_retried_and_the_rest_watched(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    """The user's own clients hold the ten connections Dovecot allows a user and address (its
    default): the daemon keeps running, says so once per refused mailbox however often it
    retries, and watches both mailboxes as soon as connections are free again."""
    boxes = ["INBOX", "Project0"]
    dovecot.create_mailbox("Project0")
    db = tmp_path / "triage.db"
    with FakeRunServer() as server, contextlib.ExitStack() as own_clients:
        for _ in range(10):
            own_clients.enter_context(dovecot.client())
        write_config(tmp_path, dovecot, server.url, mailboxes=boxes, watch=WATCH_FAST)
        with WatchProcess(tmp_path) as daemon:
            wait_until(lambda: watchers_in_state(db, "reconnecting") == 2, 60, "two refused watchers")
            retries = rows(db, "SELECT sum(failures) FROM watchers")[0][0]
            wait_until(lambda: daemon.process.poll() is not None or _retried(db, retries), 30, "more retries")
            assert daemon.process.poll() is None, daemon.log  # a refusal never stops the daemon
            own_clients.close()  # the user's clients log out
            wait_until(lambda: watchers_in_state(db, "idle") == 2, 60, "both mailboxes watched")
            for n, box in enumerate(boxes):
                _deliver(dovecot, box, _plain(1, start=n)[0])
            wait_until(lambda: final_count(db) == 2, 60, "the mail of both mailboxes")
            assert daemon.stop() == 0
    refused = [line for line in daemon.log.splitlines() if "no more connections" in line]
    # Once each. Dovecot's refusal says [LIMIT], or [UNAVAILABLE] when its count lags: the words stay.
    assert len(refused) == 2, daemon.log
    assert all("Maximum number of connections" in line for line in refused), daemon.log
    assert server.runs == 2


def _retried(db: Path, retries: object) -> bool:
    """Whether the refused watchers have tried again since `retries` failures were counted."""
    now = rows(db, "SELECT sum(failures) FROM watchers")[0][0]
    return int(now or 0) > int(retries or 0)  # type: ignore[call-overload]


def test_two_accounts_in_one_daemon_by_polling(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer, stateless_runs: Callable[[], int]
) -> None:
    db = tmp_path / "triage.db"
    with DovecotServer.start() as other:
        write_config(
            tmp_path,
            dovecot,
            langgraph_server.url,
            accounts={"second": other},
            watch={**WATCH_FAST, "mode": "poll", "poll_interval_s": 0.3},
        )
        with WatchProcess(tmp_path) as daemon:
            wait_until(lambda: watchers_in_state(db, "idle") == 2, 30, "both mailboxes watched")
            assert "testuser@127.0.0.1/INBOX: watching (polling)" in daemon.log
            assert "second/INBOX: watching (polling)" in daemon.log
            dovecot.append(_plain(3))
            other.append(_plain(4, start=10))
            wait_until(lambda: final_count(db) == 7, 60, "mail of both accounts")
            status = [
                json.loads(line) for line in run_triage("status", "--json", cwd=tmp_path).stdout.splitlines()
            ]
            assert sorted(s["account"] for s in status) == ["second", "testuser@127.0.0.1"]
            assert daemon.stop() == 0
    per_account = rows(
        db,
        "SELECT m.account, count(*) FROM messages m JOIN decisions d ON d.message_pk = m.id "
        "WHERE d.status = 'ok' GROUP BY m.account ORDER BY m.account",
    )
    assert per_account == [("second", 4), ("testuser@127.0.0.1", 3)]
    assert stateless_runs() == 7


def test_the_daemon_routes_and_moves_what_it_triages(
    setup: tuple[Path, DovecotServer, str], stateless_runs: Callable[[], int]
) -> None:
    folder, dovecot, url = setup
    db = folder / "triage.db"
    write_config(
        folder,
        dovecot,
        url,
        watch=WATCH_FAST,
        timeout_s=3,
        routing={"execute": True, "actions": {"ignore": {"move_to": "Later"}}},
    )
    news = (
        b"From: news@example.org\r\nSubject: Weekly\r\nList-Id: <news.example.org>\r\n"
        b"Message-ID: <watch-news@example.test>\r\n\r\nNews.\r\n"
    )
    with WatchProcess(folder) as daemon:
        daemon.wait_idle(db)
        dovecot.append([*_plain(2), news])
        done = "SELECT count(*) FROM decisions WHERE routing_status = 'done'"
        wait_until(lambda: rows(db, done)[0][0] == 3, 60, "routing of all three messages")
        assert daemon.stop() == 0
    with dovecot.client() as client:
        client.select_folder("Later", readonly=True)
        assert len(client.search("ALL")) == 1
        client.select_folder("INBOX", readonly=True)
        assert client.search("ALL") == [1, 2]
    routed = rows(
        db,
        "SELECT m.uid, d.decision, d.routing_run_id IS NOT NULL FROM messages m "
        "JOIN decisions d ON d.message_pk = m.id ORDER BY m.uid",
    )
    assert routed == [(1, "new-task", 1), (2, "new-task", 1), (3, "ignore", 0)]
    assert stateless_runs() == 3


def test_the_daemon_applies_the_retention(
    setup: tuple[Path, DovecotServer, str], stateless_runs: Callable[[], int]
) -> None:
    folder, dovecot, url = setup
    db = folder / "triage.db"
    dovecot.append(_plain(3))
    assert run_triage("backfill", cwd=folder).returncode == 0
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("UPDATE decisions SET created_at = datetime('now', '-10 days') WHERE id IN (1, 2)")
    connection.close()
    write_config(folder, dovecot, url, watch=WATCH_FAST, store={"keep_bodies_days": 5})
    bodies = "SELECT m.uid FROM messages m WHERE m.body_excerpt IS NOT NULL ORDER BY m.uid"
    with WatchProcess(folder) as daemon:
        wait_until(lambda: rows(db, bodies) == [(3,)], 30, "old bodies to be forgotten")
        daemon.wait_for_log("retention: forgot the bodies of 2 messages older than 5 days")
        assert daemon.stop() == 0
    assert final_count(db) == 3 and stateless_runs() == 3  # the daemon ran nothing again


def test_mail_landing_while_the_last_one_is_carried_out_is_not_left_for_idles_renewal(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    """The news of a message that lands while the daemon waits for a run comes in the reply to
    its next command (here the flag it sets on the last one), not in IDLE: the daemon looks again
    after any catch-up that did work, instead of idling until `watch.idle_renew_s` (10 min)."""
    db = tmp_path / "triage.db"
    routing = {"execute": True, "actions": {"new-task": {"add_flags": ["$Triaged"]}}}
    with FakeRunServer(latency_s=1.0) as server:
        write_config(tmp_path, dovecot, server.url, watch={"heartbeat_s": 0.2}, routing=routing, timeout_s=3)
        with WatchProcess(tmp_path) as daemon:
            daemon.wait_idle(db)
            first, second = _plain(2)
            dovecot.append([first])
            pending = "SELECT count(*) FROM decisions WHERE status = 'pending'"
            wait_until(lambda: rows(db, pending)[0][0] == 1, 30, "the first message's run under way")
            dovecot.append([second])
            wait_until(
                lambda: final_count(db) == 2,
                30,
                f"the second message, well before IDLE's renewal:\n{daemon.log}",
            )
            assert daemon.stop() == 0
    with dovecot.client() as client:
        client.select_folder("INBOX", readonly=True)
        assert client.search(["KEYWORD", "$Triaged"]) == [1, 2]
