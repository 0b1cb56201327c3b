"""`triage backfill` in this process: a mail file, the stub run server on a thread, SQLite in tmp_path.

Each test counts what the store recorded and what the stub received, and checks the exit status and
what was printed, as a user of `triage backfill --source FILE` would see them.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.configs import write_config, write_file_config
from tests.support.corpus import support_mail
from tests.support.fake_gmail import FakeGmail
from tests.support.inprocess import FAST_RUNS, triage, write_eml_folder, write_mbox
from tests.support.run_server import FakeRunServer, ScriptedByUid
from tests.support.store_view import outcomes, rows

if TYPE_CHECKING:
    from triage.backfill import Summary

pytestmark = pytest.mark.usefixtures("clean_triage_env")

Capsys = pytest.CaptureFixture[str]
SUMMARY = re.compile(r"^triaged (\d+) of (\d+) planned in [\d.]+ s \([\d.]+ msg/s\): (.*)$", re.M)


def _mail(count: int) -> list[bytes]:
    return [support_mail(n, f"Request {n}") for n in range(1, count + 1)]


def _uids_asked(server: FakeRunServer) -> list[int]:
    return sorted(int(body["metadata"]["uid"]) for body in server.requests)


def test_a_small_mailbox_is_decided_once_and_a_second_backfill_sends_nothing(
    tmp_path: Path, capsys: Capsys
) -> None:
    box = write_mbox(tmp_path / "in.mbox", _mail(5))
    with FakeRunServer() as server:
        config = write_file_config(tmp_path, server.url, langgraph=FAST_RUNS)
        first = triage(capsys, "--config", config, "backfill", "--source", box)
        assert first.status == 0, first.err
        asked = len(server.paths)
        runs = [path for path in server.paths if not path.startswith("/threads/")]
        assert runs == ["/ok"] + ["/runs/wait"] * 5
        assert asked == 11  # and each run's kept thread deleted once recorded
        assert _uids_asked(server) == [1, 2, 3, 4, 5]
        assert {body["metadata"]["mailbox"] for body in server.requests} == {str(box)}
        # One line per message (in the order their runs ended), then the summary.
        lines = first.out_lines
        assert sorted(line.split()[:2] for line in lines[:-1]) == [
            [str(uid), "new-task"] for uid in range(1, 6)
        ]
        summary = SUMMARY.search(first.out)
        assert summary is not None and summary.groups() == ("5", "5", "5 ok [5 new-task]")
        assert first.err == ""

        second = triage(capsys, "--config", config, "backfill", "--source", box)
        assert second.status == 0, second.err
        assert server.paths[asked:] == ["/ok"]  # the check, and no run (nor any thread left to delete)
        assert "triaged 0 of 0 planned" in second.out and "nothing to do" in second.out
    assert outcomes(tmp_path / "triage.db") == {uid: ("ok", "new-task", 1) for uid in range(1, 6)}
    assert rows(tmp_path / "triage.db", "SELECT count(*) FROM threads") == [(5,)]


def test_a_folder_of_eml_files_is_a_source_too(tmp_path: Path, capsys: Capsys) -> None:
    folder = write_eml_folder(tmp_path / "mail", _mail(3))
    with FakeRunServer() as server:
        config = write_file_config(tmp_path, server.url)
        done = triage(capsys, "--config", config, "backfill", "--source", folder, "--quiet")
        assert _uids_asked(server) == [1, 2, 3]
    assert done.status == 0, done.err
    assert done.out_lines == [done.out_lines[-1]] and "triaged 3 of 3 planned" in done.out  # --quiet
    assert outcomes(tmp_path / "triage.db") == {uid: ("ok", "new-task", 1) for uid in (1, 2, 3)}


def test_dry_run_prints_prompts_requests_and_consequences_and_sends_and_writes_nothing(
    tmp_path: Path, capsys: Capsys
) -> None:
    box = write_mbox(
        tmp_path / "in.mbox",
        [support_mail(1, "Printer on fire"), support_mail(2, "Weekly news", list_id=True)],
    )
    routing = {
        "execute": True,
        "rules": [{"name": "newsletters", "list_id": ".", "decision": "ignore"}],
    }
    with FakeRunServer() as server:
        config = write_file_config(tmp_path, server.url, routing=routing)
        dry = triage(capsys, "--config", config, "backfill", "--source", box, "--dry-run")
        assert server.paths == []  # not even the health check
    assert dry.status == 0, dry.err
    out = dry.out
    assert f"--- uid 1 in {box}: prompt ---" in out and "Printer on fire" in out
    assert out.count("--- request to POST /runs/wait ---") == 1  # uid 2 is settled by its rule
    assert '"uid": 1' in out and '"input": "(the prompt above)"' in out
    assert re.search(r"^new-task: create thread [0-9a-f-]{36} and start a run on it$", out, re.M)
    assert "--- no run: rule:newsletters decides ignore ---" in out
    assert out.strip().endswith("dry run: 1 decided without a run, 1 to send; nothing was sent or written")
    assert not (tmp_path / "triage.db").exists()


def test_limit_takes_the_first_messages_and_the_next_backfill_the_rest(
    tmp_path: Path, capsys: Capsys
) -> None:
    box = write_mbox(tmp_path / "in.mbox", _mail(5))
    with FakeRunServer() as server:
        config = write_file_config(tmp_path, server.url)
        first = triage(capsys, "--config", config, "backfill", "--source", box, "--limit", "2")
        assert first.status == 0 and "triaged 2 of 2 planned" in first.out
        assert _uids_asked(server) == [1, 2]
        rest = triage(capsys, "--config", config, "backfill", "--source", box, "--limit", "10")
        assert rest.status == 0 and "triaged 3 of 3 planned" in rest.out
        assert _uids_asked(server) == [1, 2, 3, 4, 5]
    assert sorted(outcomes(tmp_path / "triage.db")) == [1, 2, 3, 4, 5]


def test_a_failed_run_leaves_its_message_undecided_exit_1_and_one_line(
    tmp_path: Path, capsys: Capsys
) -> None:
    box = write_mbox(tmp_path / "in.mbox", _mail(4))
    db = tmp_path / "triage.db"
    with FakeRunServer(ScriptedByUid({2: ["500"]})) as server:
        config = write_file_config(tmp_path, server.url, langgraph=FAST_RUNS)
        failed = triage(capsys, "--config", config, "backfill", "--source", box)
        assert _uids_asked(server) == [1, 2, 2, 3, 4]  # two attempts at uid 2
    assert failed.status == 1
    assert failed.err_lines == [
        "triage: 1 messages stay undecided (1 failed runs); the next backfill retries them"
    ]
    assert "3 ok" in failed.out and "1 error" in failed.out
    assert outcomes(db)[2] == ("error", None, 2)
    assert rows(db, "SELECT error_kind FROM decisions WHERE status = 'error'") == [("http",)]

    with FakeRunServer() as healed:
        config = write_file_config(tmp_path, healed.url, langgraph=FAST_RUNS)
        again = triage(capsys, "--config", config, "backfill", "--source", box)
        assert _uids_asked(healed) == [2]  # only the failed one
    assert again.status == 0 and again.err == ""
    assert outcomes(db) == {uid: ("ok", "new-task", 3 if uid == 2 else 1) for uid in range(1, 5)}


def test_the_circuit_breaker_stops_a_backfill_whose_run_server_went_away(
    tmp_path: Path, capsys: Capsys
) -> None:
    box = write_mbox(tmp_path / "in.mbox", _mail(12))
    db = tmp_path / "triage.db"
    langgraph = {**FAST_RUNS, "max_attempts": 1, "circuit_breaker": 3, "max_concurrency": 1}
    with FakeRunServer(gone_after_health_check=True) as server:
        config = write_file_config(tmp_path, server.url, langgraph=langgraph)
        stopped = triage(capsys, "--config", config, "backfill", "--source", box)
        assert server.paths == ["/ok"]  # no run ever got through
    assert stopped.status == 1
    failed = outcomes(db)
    assert all(outcome[0] == "error" for outcome in failed.values())
    # The breaker opens after 3 refused runs in a row; the message prepared meanwhile may be a 4th.
    assert len(failed) in (3, 4), failed
    assert len(stopped.err_lines) == 1
    assert re.fullmatch(
        rf"triage: 12 messages stay undecided \({len(failed)} failed runs; {12 - len(failed)} not sent:"
        r" stopped after 3 runs in a row could not reach the run server \(.*Connection refused.*\)\);"
        r" the next backfill retries them",
        stopped.err_lines[0],
    ), stopped.err_lines[0]
    assert rows(db, "SELECT DISTINCT error_kind FROM decisions") == [("connect",)]

    with FakeRunServer() as back:
        config = write_file_config(tmp_path, back.url, langgraph=langgraph)
        resumed = triage(capsys, "--config", config, "backfill", "--source", box, "--quiet")
        assert _uids_asked(back) == list(range(1, 13))
    assert resumed.status == 0, resumed.err
    assert {outcome[:2] for outcome in outcomes(db).values()} == {("ok", "new-task")}


def test_an_unreachable_run_server_ends_before_anything_in_one_line(tmp_path: Path, capsys: Capsys) -> None:
    box = write_mbox(tmp_path / "in.mbox", _mail(2))
    with FakeRunServer() as server:
        url = server.url  # nothing listens there once the server has stopped
    config = write_file_config(tmp_path, url, langgraph=FAST_RUNS)
    done = triage(capsys, "--config", config, "backfill", "--source", box)
    assert done.status == 1
    assert done.err_lines == [
        f"triage: error: cannot reach the LangGraph server at {url}: ConnectError: Connection refused"
    ]
    assert done.out == "" and rows(tmp_path / "triage.db", "SELECT count(*) FROM decisions") == [(0,)]


def test_rules_and_header_proof_decide_without_a_run(tmp_path: Path, capsys: Capsys) -> None:
    box = write_mbox(
        tmp_path / "in.mbox",
        [
            support_mail(1, "Broken login"),
            support_mail(2, "Re: Broken login", reply_to=1),
            support_mail(3, "Weekly news", list_id=True),
            support_mail(4, "Invoice 7"),
        ],
    )
    routing = {
        "header_match": "decide",
        "rules": [
            {"name": "newsletters", "list_id": ".", "decision": "ignore"},
            {"name": "invoices", "subject": "^invoice", "decision": "new-task", "title": "Pay an invoice"},
        ],
    }
    # Concurrency 4: the reply is in flight with its parent, and must wait for the parent's thread.
    with FakeRunServer(["delay:0.2"]) as server:
        config = write_file_config(tmp_path, server.url, routing=routing)
        done = triage(capsys, "--config", config, "backfill", "--source", box, "--concurrency", "4")
        assert _uids_asked(server) == [1]  # only the first message needed the model
    assert done.status == 0, done.err
    db = tmp_path / "triage.db"
    decided = rows(
        db,
        "SELECT m.uid, d.decision, d.decided_by, d.title FROM messages m "
        "JOIN decisions d ON d.message_pk = m.id ORDER BY m.uid",
    )
    assert decided == [
        (1, "new-task", "run", "T"),
        (2, "existing-thread", "headers", None),
        (3, "ignore", "rule:newsletters", None),
        (4, "new-task", "rule:invoices", "Pay an invoice"),
    ]
    started = rows(
        db, "SELECT d.thread_id FROM decisions d JOIN messages m ON m.id = d.message_pk WHERE m.uid = 2"
    )
    assert started == rows(db, "SELECT id FROM threads WHERE title = 'T'")


def test_an_unoffered_thread_in_an_answer_needs_review(tmp_path: Path, capsys: Capsys) -> None:
    box = write_mbox(tmp_path / "in.mbox", _mail(1))
    answer = '{"decision": "existing-thread", "thread_id": "thread-nobody-offered", "reason": "a reply"}'
    with FakeRunServer([f"ok-json:{answer}"]) as server:
        config = write_file_config(tmp_path, server.url)
        done = triage(capsys, "--config", config, "backfill", "--source", box)
        assert len(server.requests) == 1
    assert done.status == 0  # recorded: a decision for a person to make, not a failure
    assert outcomes(tmp_path / "triage.db") == {1: ("needs-review", "existing-thread", 1)}
    problem = rows(tmp_path / "triage.db", "SELECT problem FROM decisions")[0][0]
    assert "was not among the threads offered" in str(problem)
    assert "needs-review" in done.out and "1 needs-review" in done.out


def test_retry_runs_again_only_the_failed_messages_of_an_imap_mailbox(tmp_path: Path, capsys: Capsys) -> None:
    db = tmp_path / "triage.db"
    with FakeGmail(gmail=False) as imap, FakeRunServer(ScriptedByUid({2: ["500", "500", "ok"]})) as server:
        for n, raw in enumerate(_mail(3), 1):
            imap.add_message("INBOX", raw, thrid=n)
        config = write_config(tmp_path, imap, server.url, langgraph=FAST_RUNS)
        assert triage(capsys, "--config", config, "backfill").status == 1
        assert outcomes(db)[2] == ("error", None, 2)
        account = f"{imap.username}@127.0.0.1"

        listed = triage(capsys, "--config", config, "retry", "--dry-run")
        assert listed.status == 0 and listed.out_lines == [f"{account}/INBOX: would run 1 again: uids 2"]
        assert _uids_asked(server) == [1, 2, 2, 3]  # the dry run sent nothing

        retried = triage(capsys, "--config", config, "retry", "--quiet")
        assert retried.status == 0, retried.err
        assert _uids_asked(server) == [1, 2, 2, 2, 3]  # uid 2 once more, and nothing else
        assert "triaged 1 of 1 planned" in retried.out
        nothing = triage(capsys, "--config", config, "retry")
        assert nothing.out_lines == [f"{account}: no error decisions to retry"]
    assert outcomes(db) == {1: ("ok", "new-task", 1), 2: ("ok", "new-task", 3), 3: ("ok", "new-task", 1)}


def test_the_library_drives_a_mailbox_through_the_pipeline(tmp_path: Path) -> None:
    """triage.backfill.backfill over a FileSource, with a Pipeline on a plain RunsClient."""
    from triage.backfill import BackfillPlan, backfill
    from triage.config import Settings
    from triage.pipeline import Pipeline, Triaged
    from triage.prompt import PromptRenderer
    from triage.run_settings import RunsSettings
    from triage.runs import RunsClient
    from triage.sources.files import FileSource
    from triage.store.decisions import Store

    box = write_mbox(tmp_path / "in.mbox", [*_mail(4), b"\x00\xff not mail at all \x00" * 8])
    db = tmp_path / "triage.db"
    planned: list[int] = []
    seen: list[Triaged] = []
    with FakeRunServer() as server:
        settings = Settings(langgraph={"url": server.url}, store={"url": f"sqlite:///{db}"})
        source = FileSource(box)

        async def run() -> Summary:
            store = Store.open(settings.store.url)
            try:
                async with RunsClient(RunsSettings.of(settings.langgraph)) as runs:
                    pipeline = Pipeline(settings, PromptRenderer(None), runs, store)
                    assert pipeline.only_records  # routing off, no mailbox actions: batched writes
                    plan = BackfillPlan([source.mailbox_name], concurrency=3)
                    return await backfill(
                        source, pipeline, plan, on_planned=planned.append, on_triaged=seen.append
                    )
            finally:
                store.close()
                source.close()

        summary = asyncio.run(run())
        assert _uids_asked(server) == [1, 2, 3, 4]
    assert planned == [5] and summary.planned == 5 and summary.undecided == 0
    assert summary.statuses == {"ok": 4, "unparseable": 1} and summary.decisions == {"new-task": 4}
    assert sorted(t.raw.uid for t in seen) == [1, 2, 3, 4, 5]
    assert {t.raw.uid: t.outcome.status for t in seen if t.outcome} == {
        1: "ok",
        2: "ok",
        3: "ok",
        4: "ok",
        5: "unparseable",
    }
    assert outcomes(db) == {
        **{uid: ("ok", "new-task", 1) for uid in range(1, 5)},
        5: ("unparseable", None, 0),
    }


def test_a_refused_api_key_stops_the_backfill_in_one_line(tmp_path: Path, capsys: Capsys) -> None:
    box = write_mbox(tmp_path / "in.mbox", _mail(12))
    langgraph = {**FAST_RUNS, "max_concurrency": 1}
    with FakeRunServer(api_key="the-right-key-7f3a") as server:
        wrong = write_file_config(
            tmp_path, server.url, langgraph={**langgraph, "api_key": "a-wrong-key-91c2"}
        )
        refused = triage(capsys, "--config", wrong, "backfill", "--source", box)
        sent = server.paths.count("/runs/wait")
        right = write_file_config(
            tmp_path, server.url, langgraph={**langgraph, "api_key": "the-right-key-7f3a"}
        )
        accepted = triage(capsys, "--config", right, "backfill", "--source", box, "--quiet")
        keys = {h.get("x-api-key") for h, p in zip(server.headers, server.paths, strict=True) if p != "/ok"}
    assert refused.status == 1 and len(refused.err_lines) == 1
    assert "refused triage's credentials (HTTP 401" in refused.err_lines[0]
    assert "check langgraph.api_key" in refused.err_lines[0]
    assert "a-wrong-key-91c2" not in refused.out + refused.err
    assert 1 <= sent <= 2  # the first refusal stops it: only the run prepared meanwhile may follow
    assert accepted.status == 0, accepted.err
    decided = outcomes(tmp_path / "triage.db")
    assert {outcome[:2] for outcome in decided.values()} == {("ok", "new-task")} and len(decided) == 12
    assert sum(attempts for _, _, attempts in decided.values()) == 12 + sent  # the refused ones twice
    assert keys >= {"the-right-key-7f3a"}
