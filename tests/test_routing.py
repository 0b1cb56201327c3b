"""Routing against a real `langgraph dev` and a real Dovecot: threads, runs, rules, actions."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.cli import popen_triage, run_triage
from tests.support.configs import write_config
from tests.support.corpus import support_mail as _mail
from tests.support.dovecot import DovecotServer
from tests.support.run_server import FakeRunServer
from tests.support.store_view import final_count, rows
from tests.support.watchd import wait_until
from triage.devserver import DevServer
from triage.sources import RawMessage
from triage.threads import message_key, thread_id_for

pytestmark = pytest.mark.integration


def _thread_for_uid(dovecot: DovecotServer, uid: int, uidvalidity: int) -> str:
    return thread_id_for(RawMessage(f"{dovecot.username}@127.0.0.1", "INBOX", uidvalidity, uid, b""))


def _uidvalidity(db: Path) -> int:
    return int(rows(db, "SELECT uidvalidity FROM mailboxes WHERE name = 'INBOX'")[0][0])  # type: ignore[call-overload]


def _api(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30)


def _runs_by_key(client: httpx.Client, thread_id: str) -> list[str]:
    runs = client.get(f"/threads/{thread_id}/runs", params={"limit": 1000}).json()
    return [run["metadata"].get("triage_message") for run in runs]


def test_new_tasks_get_one_thread_and_replies_run_on_it(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer
) -> None:
    tag = uuid.uuid4().hex[:8]  # the session's server is shared: keep this test's threads apart
    dovecot.append(
        [
            _mail(1, "Export fails", tag=tag),
            _mail(2, "Re: Export fails", reply_to=1, tag=tag),
            _mail(3, "Weekly news", list_id=True, tag=tag),
        ]
    )
    write_config(tmp_path, dovecot, langgraph_server.url, routing={"execute": True})
    db = tmp_path / "triage.db"
    first = run_triage("backfill", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    thread_id = _thread_for_uid(dovecot, 1, _uidvalidity(db))
    decisions = rows(
        db,
        "SELECT m.uid, d.decision, d.thread_id, d.routing_status, d.routing_thread_id, "
        "d.routing_run_id FROM messages m JOIN decisions d ON d.message_pk = m.id ORDER BY m.uid",
    )
    assert [(uid, kind, routed) for uid, kind, _, routed, _, _ in decisions] == [
        (1, "new-task", "done"),
        (2, "existing-thread", "done"),
        (3, "ignore", None),
    ]
    assert decisions[1][2] == thread_id and decisions[0][4] == decisions[1][4] == thread_id

    with _api(langgraph_server.url) as client:
        found = client.post(
            "/threads/search", json={"metadata": {"message_id": f"<{tag}-1@example.test>"}}
        ).json()
        assert [t["thread_id"] for t in found] == [thread_id]
        assert {"account", "mailbox", "message_id", "subject", "from"} <= set(found[0]["metadata"])
        assert found[0]["metadata"]["subject"] == "Export fails"
        keys = _runs_by_key(client, thread_id)
        assert sorted(keys) == sorted(
            message_key(RawMessage(f"{dovecot.username}@127.0.0.1", "INBOX", _uidvalidity(db), uid, b""))
            for uid in (1, 2)
        )
        assert {d[5] for d in decisions[:2]} == {
            r["run_id"] for r in client.get(f"/threads/{thread_id}/runs").json()
        }

        listed = [
            json.loads(line) for line in run_triage("threads", "--json", cwd=tmp_path).stdout.splitlines()
        ]
        assert [(t["id"], t["title"], t["status"]) for t in listed] == [(thread_id, "Export fails", "open")]

        again = run_triage("backfill", cwd=tmp_path)
        assert again.returncode == 0 and "nothing to do" in again.stdout
        # Exactly one thread, started by uid 1: the reply joined it, the list mail started none.
        started = {
            uid: [
                t["thread_id"]
                for t in client.post(
                    "/threads/search", json={"metadata": {"message_id": f"<{tag}-{uid}@example.test>"}}
                ).json()
            ]
            for uid in (1, 2, 3)
        }
        assert started == {1: [thread_id], 2: [], 3: []}
        assert len(_runs_by_key(client, thread_id)) == 2


def test_a_crash_between_steps_never_makes_a_second_thread_or_run(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer
) -> None:
    tag = uuid.uuid4().hex[:8]
    dovecot.append([_mail(n, f"Request {tag} {n}", tag=tag) for n in range(1, 31)])
    write_config(tmp_path, dovecot, langgraph_server.url, routing={"execute": True})
    db = tmp_path / "triage.db"
    process = popen_triage("backfill", "--concurrency", "3", "--quiet", cwd=tmp_path)
    wait_until(lambda: db.exists() and final_count(db) >= 8, 120, "the backfill to be under way")
    process.send_signal(signal.SIGKILL)
    process.wait()
    # What the kill left: some threads may exist with their run started but not recorded.
    assert run_triage("backfill", cwd=tmp_path).returncode == 0
    routed = rows(
        db,
        "SELECT m.uid, d.routing_status, d.routing_thread_id FROM messages m "
        "JOIN decisions d ON d.message_pk = m.id ORDER BY m.uid",
    )
    assert [(uid, status) for uid, status, _ in routed] == [(uid, "done") for uid in range(1, 31)]
    with _api(langgraph_server.url) as client:
        for uid, _, thread_id in routed:
            found = client.post(
                "/threads/search", json={"metadata": {"message_id": f"<{tag}-{uid}@example.test>"}}
            ).json()
            assert [t["thread_id"] for t in found] == [thread_id], uid
            assert len(_runs_by_key(client, str(thread_id))) == 1, uid


def test_mailbox_actions_flag_and_move(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer
) -> None:
    dovecot.append(
        [
            _mail(1, "Please help"),
            _mail(2, "News", list_id=True),
            _mail(3, "Another request"),
            _mail(4, "More news", list_id=True),
        ]
    )
    write_config(
        tmp_path,
        dovecot,
        langgraph_server.url,
        routing={
            "actions": {
                "new-task": {"add_flags": ["$TriageNewTask"]},
                "ignore": {"move_to": "Triage/Ignored"},
            }
        },
    )
    done = run_triage("backfill", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with dovecot.client() as client:
        client.select_folder("INBOX", readonly=True)
        flags = client.get_flags(client.search("ALL"))
        assert sorted(flags) == [1, 3]
        assert all(b"$TriageNewTask" in f and b"\\Seen" not in f for f in flags.values())
        client.select_folder("Triage/Ignored", readonly=True)
        assert len(client.search("ALL")) == 2
    actions = rows(
        tmp_path / "triage.db",
        "SELECT m.uid, d.routing_status, d.routing_actions FROM messages m "
        "JOIN decisions d ON d.message_pk = m.id ORDER BY m.uid",
    )
    assert [(uid, status) for uid, status, _ in actions] == [
        (1, "done"),
        (2, "done"),
        (3, "done"),
        (4, "done"),
    ]
    assert "moved to Triage/Ignored" in str(actions[1][2]) and "flagged $TriageNewTask" in str(actions[0][2])


def test_unoffered_or_closed_threads_need_review(tmp_path: Path, dovecot: DovecotServer) -> None:
    dovecot.append([_mail(1, "Question")])
    with FakeRunServer(["ok"]) as server:
        write_config(tmp_path, dovecot, server.url)
        assert run_triage("backfill", cwd=tmp_path).returncode == 0
    db = tmp_path / "triage.db"
    thread_id = _thread_for_uid(dovecot, 1, _uidvalidity(db))
    assert run_triage("threads", "close", thread_id, cwd=tmp_path).returncode == 0
    dovecot.append([_mail(2, "Re: Question", reply_to=1), _mail(3, "Something else")])
    answer = json.dumps({"decision": "existing-thread", "thread_id": thread_id, "reason": "a reply"})
    with FakeRunServer([f"ok-json:{answer}"]) as server:
        write_config(tmp_path, dovecot, server.url)
        assert run_triage("backfill", cwd=tmp_path).returncode == 0
        assert all("proved by headers" not in r["input"]["messages"][0]["content"] for r in server.requests)
    outcome = rows(
        db,
        "SELECT m.uid, d.status, d.problem FROM messages m JOIN decisions d ON d.message_pk = m.id "
        "WHERE m.uid > 1 ORDER BY m.uid",
    )
    assert [(uid, status) for uid, status, _ in outcome] == [(2, "needs-review"), (3, "needs-review")]
    assert all("was not among the threads offered" in str(problem) for _, _, problem in outcome)
    assert rows(db, "SELECT count(*) FROM threads")[0][0] == 1


def test_route_carries_out_decisions_recorded_while_execution_was_off_once(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer
) -> None:
    tag = uuid.uuid4().hex[:8]
    dovecot.append([_mail(1, f"Printer {tag}", tag=tag), _mail(2, "News", list_id=True, tag=tag)])
    write_config(tmp_path, dovecot, langgraph_server.url)
    assert run_triage("backfill", cwd=tmp_path).returncode == 0
    db = tmp_path / "triage.db"
    statuses = "SELECT m.uid, d.decision, d.routing_status FROM messages m JOIN decisions d ON d.message_pk = m.id ORDER BY m.uid"
    assert rows(db, statuses) == [(1, "new-task", "dry-run"), (2, "ignore", None)]

    write_config(
        tmp_path,
        dovecot,
        langgraph_server.url,
        routing={"execute": True, "actions": {"new-task": {"add_flags": ["$TriageNewTask"]}}},
    )
    routed = run_triage("route", cwd=tmp_path)
    assert routed.returncode == 0, routed.stderr
    assert routed.stdout.strip() == f"{dovecot.username}@127.0.0.1: 1 done"
    assert rows(db, statuses) == [(1, "new-task", "done"), (2, "ignore", None)]
    thread_id = _thread_for_uid(dovecot, 1, _uidvalidity(db))
    with _api(langgraph_server.url) as client:
        assert len(_runs_by_key(client, thread_id)) == 1
    with dovecot.client() as client:
        client.select_folder("INBOX", readonly=True)
        assert b"$TriageNewTask" in client.get_flags([1])[1]

    again = run_triage("route", cwd=tmp_path)
    assert again.returncode == 0 and "nothing recorded is left to carry out" in again.stdout
    with _api(langgraph_server.url) as client:
        assert len(_runs_by_key(client, thread_id)) == 1
