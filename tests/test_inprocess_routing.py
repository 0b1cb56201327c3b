"""Carrying decisions out, in this process: LangGraph threads and runs on the stub run server's
threads API, mailbox actions on the in-process IMAP fake, `triage route` and `triage threads`, and
the Router itself."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.support.configs import write_config, write_file_config
from tests.support.corpus import support_mail
from tests.support.fake_gmail import FakeGmail
from tests.support.inprocess import FAST_RUNS, triage, write_mbox
from tests.support.run_server import FakeRunServer
from tests.support.store_view import rows
from triage.config import RoutingSettings
from triage.routing import Router
from triage.run_settings import RunsSettings
from triage.runs import RunsClient
from triage.sources import RawMessage
from triage.store import routing_log
from triage.store.decisions import Store
from triage.threads import message_key, thread_id_for

pytestmark = pytest.mark.usefixtures("clean_triage_env")

Capsys = pytest.CaptureFixture[str]
ROUTED = (
    "SELECT m.uid, d.decision, d.routing_status, d.routing_thread_id, d.routing_run_id "
    "FROM messages m JOIN decisions d ON d.message_pk = m.id ORDER BY m.uid"
)


def _thread(server: FakeRunServer) -> tuple[str, dict[str, object]]:
    """The one thread the stub holds."""
    assert len(server.threads) == 1, server.threads
    return next(iter(server.threads.items()))


def _support_box(tmp_path: Path) -> Path:
    return write_mbox(
        tmp_path / "in.mbox",
        [
            support_mail(1, "Export fails"),
            support_mail(2, "Re: Export fails", reply_to=1),
            support_mail(3, "Weekly news", list_id=True),
        ],
    )


ROUTING = {
    "execute": True,
    "task_assistant_id": "worker",
    "header_match": "decide",
    "rules": [{"name": "newsletters", "list_id": ".", "decision": "ignore"}],
}


def test_a_new_task_gets_one_thread_and_its_reply_a_run_on_it(tmp_path: Path, capsys: Capsys) -> None:
    box = _support_box(tmp_path)
    db = tmp_path / "triage.db"
    with FakeRunServer() as server:
        config = write_file_config(tmp_path, server.url, routing=ROUTING, langgraph=FAST_RUNS)
        done = triage(capsys, "--config", config, "backfill", "--source", box)
        assert done.status == 0, done.err
        assert len(server.requests) == 1  # the reply is proved by its headers, the list mail by a rule
        parent = RawMessage("files", str(box), 1, 1, b"")
        thread_id, thread = _thread(server)
        assert thread_id == thread_id_for(parent)
        assert thread["metadata"] == {
            "account": "files",
            "mailbox": str(box),
            "message_id": "<r-1@example.test>",
            "subject": "Export fails",
            "from": "customer1@example.com",
            "triage_message": message_key(parent),
        }
        runs = server.runs_on(thread_id)
        assert [run["metadata"]["triage_message"] for run in runs] == [
            message_key(RawMessage("files", str(box), 1, uid, b"")) for uid in (1, 2)
        ]
        assert {run["assistant_id"] for run in runs} == {"worker"}
        assert [run["metadata"]["decision"] for run in runs] == ["new-task", "existing-thread"]
        assert "Subject: Re: Export fails" in runs[1]["kwargs"]["input"]["messages"][0]["content"]
        assert rows(db, ROUTED) == [
            (1, "new-task", "done", thread_id, runs[0]["run_id"]),
            (2, "existing-thread", "done", thread_id, runs[1]["run_id"]),
            (3, "ignore", None, None, None),
        ]
        calls = len(server.api_requests)
        routing = [call for call in server.api_requests if call[0] != "DELETE"]  # not run threads
        assert len(routing) == 5  # POST /threads, then a search and a start for each of the two runs

        again = triage(capsys, "--config", config, "backfill", "--source", box)
        assert again.status == 0 and "nothing to do" in again.out
        assert len(server.api_requests) == calls and len(server.requests) == 1  # nothing sent twice

        listed = [
            json.loads(line) for line in triage(capsys, "--config", config, "threads", "--json").out_lines
        ]
        assert [(t["id"], t["title"], t["status"]) for t in listed] == [(thread_id, "T", "open")]


def test_a_run_started_before_a_crash_is_found_not_started_again(tmp_path: Path, capsys: Capsys) -> None:
    box = write_mbox(tmp_path / "in.mbox", [support_mail(1, "Export fails")])
    raw = RawMessage("files", str(box), 1, 1, b"")
    with FakeRunServer() as server:
        # What a crash between "run started" and "run recorded" leaves on the server.
        server.threads[thread_id_for(raw)] = {
            "thread_id": thread_id_for(raw),
            "metadata": {},
            "runs": [{"run_id": "run-before-the-crash", "metadata": {"triage_message": message_key(raw)}}],
        }
        config = write_file_config(tmp_path, server.url, routing={"execute": True})
        assert triage(capsys, "--config", config, "backfill", "--source", box).status == 0
        routing = [method for method, _, _ in server.api_requests if method != "DELETE"]
        assert routing == ["POST", "GET"]  # no second run
        assert len(server.runs_on(thread_id_for(raw))) == 1
    assert rows(tmp_path / "triage.db", ROUTED) == [
        (1, "new-task", "done", thread_id_for(raw), "run-before-the-crash")
    ]


def test_a_failed_routing_step_is_retried_later_without_asking_the_triage_again(
    tmp_path: Path, capsys: Capsys
) -> None:
    box = write_mbox(tmp_path / "in.mbox", [support_mail(1, "Export fails")])
    db = tmp_path / "triage.db"
    langgraph = {**FAST_RUNS, "max_attempts": 1}
    with FakeRunServer(api_behaviours=["500", "ok"]) as server:
        config = write_file_config(tmp_path, server.url, routing={"execute": True}, langgraph=langgraph)
        first = triage(capsys, "--config", config, "backfill", "--source", box)
        assert first.status == 0, first.err  # decided; only its routing is left to do
        assert server.threads == {} and len(server.requests) == 1
        failed = rows(db, "SELECT status, routing_status, routing_error FROM decisions")
        assert [(status, routing) for status, routing, _ in failed] == [("ok", "error")]
        assert "500" in str(failed[0][2])

        second = triage(capsys, "--config", config, "backfill", "--source", box)
        assert second.status == 0 and "nothing to do" in second.out
        assert len(server.requests) == 1  # the triage was not asked again
        thread_id, _ = _thread(server)
        assert len(server.runs_on(thread_id)) == 1
    assert rows(db, "SELECT routing_status, routing_error FROM decisions") == [("done", None)]


ACTIONS = {
    "actions": {
        "new-task": {"add_flags": ["$TriageNewTask"]},
        "ignore": {"move_to": "Triage/Ignored"},
    }
}


def _inbox(gmail: FakeGmail) -> None:
    for n, raw in enumerate(
        [
            support_mail(1, "Please help"),
            support_mail(2, "News", list_id=True),
            support_mail(3, "Another request"),
        ],
        1,
    ):
        gmail.add_message("INBOX", raw, thrid=9000 + n)


def test_mailbox_actions_flag_new_tasks_and_move_ignored_mail(tmp_path: Path, capsys: Capsys) -> None:
    routing = {**ACTIONS, "rules": [{"name": "newsletters", "list_id": ".", "decision": "ignore"}]}
    with FakeGmail(gmail=False) as imap, FakeRunServer() as server:
        _inbox(imap)
        config = write_config(tmp_path, imap, server.url, routing=routing)
        done = triage(capsys, "--config", config, "backfill")
        assert done.status == 0, done.err
        assert sorted(int(body["metadata"]["uid"]) for body in server.requests) == [1, 3]
        assert imap.uids("INBOX") == [1, 3] and imap.uids("Triage/Ignored") == [1]
        assert {uid: imap.message("INBOX", uid).flags for uid in (1, 3)} == {
            1: {"$TriageNewTask"},  # BODY.PEEK: never \\Seen
            3: {"$TriageNewTask"},
        }
        assert b"News" in imap.message("Triage/Ignored", 1).raw
    assert rows(
        tmp_path / "triage.db", "SELECT routing_status, routing_actions FROM decisions ORDER BY id"
    ) == [
        ("done", json.dumps({"done": ["flagged $TriageNewTask"]})),
        ("done", json.dumps({"done": ["moved to Triage/Ignored"], "moved_to": "Triage/Ignored"})),
        ("done", json.dumps({"done": ["flagged $TriageNewTask"]})),
    ]


def test_route_carries_out_once_what_was_recorded_while_execution_was_off(
    tmp_path: Path, capsys: Capsys
) -> None:
    with FakeGmail(gmail=False) as imap, FakeRunServer() as server:
        imap.add_message("INBOX", support_mail(1, "Printer"), thrid=1)
        imap.add_message("INBOX", support_mail(2, "Printer news", list_id=True), thrid=2)
        rules = [{"name": "newsletters", "list_id": ".", "decision": "ignore"}]
        config = write_config(tmp_path, imap, server.url, routing={"rules": rules})
        assert triage(capsys, "--config", config, "backfill").status == 0
        statuses = "SELECT m.uid, d.decision, d.routing_status FROM messages m JOIN decisions d ON d.message_pk = m.id ORDER BY m.uid"
        assert rows(tmp_path / "triage.db", statuses) == [(1, "new-task", "dry-run"), (2, "ignore", None)]
        assert server.threads == {} and not imap.message("INBOX", 1).flags

        routing = {
            "execute": True,
            "rules": rules,
            "actions": {"new-task": {"add_flags": ["$TriageNewTask"]}},
        }
        config = write_config(tmp_path, imap, server.url, routing=routing)
        routed = triage(capsys, "--config", config, "route")
        assert routed.status == 0, routed.err
        assert routed.out_lines == [f"{imap.username}@127.0.0.1: 1 done"]
        assert rows(tmp_path / "triage.db", statuses) == [(1, "new-task", "done"), (2, "ignore", None)]
        thread_id, _ = _thread(server)
        assert len(server.runs_on(thread_id)) == 1
        assert imap.message("INBOX", 1).flags == {"$TriageNewTask"}

        again = triage(capsys, "--config", config, "route")
        assert again.status == 0
        assert again.out_lines == [f"{imap.username}@127.0.0.1: nothing recorded is left to carry out"]
        assert len(server.runs_on(thread_id)) == 1 and len(server.requests) == 1


def test_a_closed_thread_is_never_offered_and_an_answer_naming_it_needs_review(
    tmp_path: Path, capsys: Capsys
) -> None:
    box = write_mbox(tmp_path / "in.mbox", [support_mail(1, "Question")])
    with FakeRunServer() as server:
        config = write_file_config(tmp_path, server.url)
        assert triage(capsys, "--config", config, "backfill", "--source", box).status == 0
    thread_id = thread_id_for(RawMessage("files", str(box), 1, 1, b""))
    closed = triage(capsys, "--config", config, "threads", "close", thread_id)
    assert closed.status == 0 and closed.out_lines == [f"closed {thread_id}"]
    assert triage(capsys, "--config", config, "threads", "--status", "closed").out.startswith(thread_id)

    write_mbox(box, [support_mail(2, "Re: Question", reply_to=1)])  # the mbox grows: uid 2
    answer = json.dumps({"decision": "existing-thread", "thread_id": thread_id, "reason": "a reply"})
    with FakeRunServer([f"ok-json:{answer}"]) as server:
        config = write_file_config(tmp_path, server.url)
        assert triage(capsys, "--config", config, "backfill", "--source", box).status == 0
        assert [body["metadata"]["uid"] for body in server.requests] == [2]
        assert thread_id not in server.requests[0]["input"]["messages"][0]["content"]  # not offered
    assert rows(tmp_path / "triage.db", "SELECT status FROM decisions ORDER BY id") == [
        ("ok",),
        ("needs-review",),
    ]


def test_the_router_starts_a_thread_and_a_run_once(tmp_path: Path, capsys: Capsys) -> None:
    """Router.carry_out on a recorded job, driven directly: the LangGraph half of routing."""
    box = write_mbox(tmp_path / "in.mbox", [support_mail(1, "Export fails")])
    db = tmp_path / "triage.db"
    with FakeRunServer() as server:
        config = write_file_config(tmp_path, server.url)  # execute off: recorded as dry-run
        assert triage(capsys, "--config", config, "backfill", "--source", box).status == 0
        store = Store.open(f"sqlite:///{db}")
        try:
            recorded = routing_log.jobs(store, "files", str(box), 1, statuses=("dry-run",))
            assert [(job.uid, job.decision) for job in recorded] == [(1, "new-task")]
            routing_log.make_pending(store, [recorded[0].decision_pk])
            (job,) = routing_log.jobs(store, "files", str(box), 1)

            async def carry_out() -> bool:
                async with RunsClient(RunsSettings(server.url, None, 5.0, 1, 1, 0.01)) as runs:
                    settings = RoutingSettings(execute=True, task_assistant_id="worker")
                    return await Router(settings, runs, store, mailbox_actions=False).carry_out(job)

            assert asyncio.run(carry_out()) is False  # nothing left for a mailbox connection
            assert routing_log.jobs(store, "files", str(box), 1) == []  # done: nothing unfinished
        finally:
            store.close()
        thread_id, _ = _thread(server)
        assert thread_id == thread_id_for(RawMessage("files", str(box), 1, 1, b""))
        (run,) = server.runs_on(thread_id)
        assert run["assistant_id"] == "worker" and run["multitask_strategy"] == "enqueue"
        assert [path for method, path, _ in server.api_requests if method != "DELETE"] == [
            "/threads",
            f"/threads/{thread_id}/runs",
            f"/threads/{thread_id}/runs",
        ]
    assert rows(db, ROUTED) == [(1, "new-task", "done", thread_id, run["run_id"])]
