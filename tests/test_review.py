"""Review commands against logs filled by real backfills: a real Dovecot, a real `langgraph dev`.

One backfill per module fills a log; each test works on its own copy of it. Expected figures are
computed here with plain sqlite3 and the corpus, independently of triage's own queries.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pexpect
import pytest

from tests.conftest import _dovecot_available, require
from tests.support.cli import run_triage
from tests.support.configs import write_config
from tests.support.corpus import kinds, varied_messages
from tests.support.dovecot import DovecotServer
from tests.support.run_server import FakeRunServer
from tests.support.store_view import rows
from triage.devserver import DevServer
from triage.log.query import EXPORT_FIELDS, LOG_FIELDS

N = 46  # two cycles of the corpus: every kind twice
BODY_WORD = "reproduce"  # only ever in bodies (checked below), never in a subject
TEMPLATE = Path(__file__).resolve().parent.parent / "prompts" / "triage.jinja"


def _backfill(folder: Path, messages: list[bytes], url: str, *args: str) -> Path:
    """Append the messages to a fresh Dovecot and run a real `triage backfill` into folder."""
    require(_dovecot_available(), "dovecot (Debian dovecot-imapd) is not installed, or not running as root")
    with DovecotServer.start() as dovecot:
        dovecot.append(messages)
        write_config(folder, dovecot, url)
        result = run_triage("backfill", "--quiet", *args, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "triage.db"


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory, langgraph_server: DevServer) -> Path:
    return _backfill(tmp_path_factory.mktemp("golden"), varied_messages(N), langgraph_server.url)


def _copy(db: Path, folder: Path) -> Path:
    """A private copy of a log (SQLite's backup API: consistent whatever the WAL holds)."""
    (folder / "triage.toml").write_text(
        (db.parent / "triage.toml").read_text().replace(str(db.parent), str(folder))
    )
    with sqlite3.connect(db) as source, sqlite3.connect(folder / "triage.db") as target:
        source.backup(target)
    return folder / "triage.db"


@pytest.fixture
def log(golden: Path, tmp_path: Path) -> Path:
    """A folder with a triage.toml and its own copy of the golden log."""
    _copy(golden, tmp_path)
    return tmp_path


def triage(folder: Path, *args: str) -> str:
    result = run_triage(*args, cwd=folder)
    assert result.returncode == 0, result.stderr
    return result.stdout


def json_lines(folder: Path, *args: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in triage(folder, *args).splitlines()]


def ids(folder: Path, *args: str) -> set[int]:
    return {int(row["id"]) for row in json_lines(folder, "log", "--json", "--limit", "0", *args)}


def sql_ids(db: Path, where: str, *params: object) -> set[int]:
    found = rows(
        db, f"SELECT d.id FROM decisions d JOIN messages m ON m.id = d.message_pk WHERE {where}", *params
    )
    return {int(r[0]) for r in found}


def uid_kind(n: int = N) -> dict[int, str]:
    return {uid: kind for uid, kind in enumerate(kinds(n), 1)}


# --- log and export ----------------------------------------------------------------------------


def test_log_lines_parse_and_filters_combine(log: Path) -> None:
    db = log / "triage.db"
    everything = json_lines(log, "log", "--json", "--limit", "0")
    assert len(everything) == N and set(everything[0]) == set(LOG_FIELDS)
    assert [r["id"] for r in everything] == sorted((r["id"] for r in everything), reverse=True)
    assert {int(r["id"]) for r in everything} == sql_ids(db, "1")

    newest = json_lines(log, "log", "--json", "--limit", "5")
    assert [r["id"] for r in newest] == [r["id"] for r in everything[:5]]
    assert len(json_lines(log, "log", "--json")) == N  # default limit 50 > N

    assert ids(log, "--decision", "ignore") == sql_ids(db, "d.decision = 'ignore'") != set()
    assert ids(log, "--status", "unparseable") == sql_ids(db, "d.status = 'unparseable'")
    assert len(ids(log, "--status", "unparseable")) == kinds(N).count("garbage_bytes")
    sender = "example.org"
    both = ids(log, "--decision", "new-task", "--from", sender)
    assert both == sql_ids(db, "d.decision = 'new-task' AND m.sender LIKE ?", f"%{sender}%")
    assert set() != both != ids(log, "--decision", "new-task")
    assert ids(log, "--mailbox", "INBOX", "--since", "1h", "--until", "2999-01-01") == sql_ids(db, "1")
    assert ids(log, "--until", "2000-01-01") == set() == ids(log, "--mailbox", "Nope")
    assert ids(
        log, "--since", "1h", "--decision", "ignore", "--status", "ok", "--from", "newsletter"
    ) == sql_ids(db, "d.decision = 'ignore' AND d.status = 'ok' AND m.sender LIKE '%newsletter%'")

    table = triage(log, "log", "--limit", "3").splitlines()
    assert table[0].split()[:3] == ["ID", "TIME", "(UTC)"] and len(table) == 4
    parsed = list(csv.reader(io.StringIO(triage(log, "log", "--csv", "--status", "ok"))))
    assert tuple(parsed[0]) == LOG_FIELDS and len(parsed) - 1 == len(sql_ids(db, "d.status = 'ok'"))


def test_full_text_search_finds_a_word_from_a_body(log: Path) -> None:
    db = log / "triage.db"
    assert sql_ids(db, "m.subject LIKE ? OR m.sender LIKE ?", f"%{BODY_WORD}%", f"%{BODY_WORD}%") == set()
    in_bodies = sql_ids(db, "m.body_excerpt LIKE ?", f"%{BODY_WORD}%")
    assert 0 < len(in_bodies) < N
    assert ids(log, "-q", BODY_WORD) == in_bodies
    assert ids(log, "-q", BODY_WORD.upper()[:6] + "*") >= in_bodies  # prefix, any case
    assert ids(log, "-q", f"{BODY_WORD} Export", "--decision", "new-task") == sql_ids(
        db,
        "d.decision = 'new-task' AND m.body_excerpt LIKE ? AND m.body_excerpt LIKE '%Export%'",
        f"%{BODY_WORD}%",
    )
    reason_word = "newsletter"  # the reference rules' reason for mailing-list mail
    assert ids(log, "-q", reason_word) >= sql_ids(db, "d.reason LIKE ?", f"%{reason_word}%") != set()
    assert ids(log, "-q", 'unbalanced "quote (') == set()  # user text is never FTS syntax


def test_export_streams_every_field_as_csv_or_jsonl(log: Path) -> None:
    out = log / "export.csv"
    result = run_triage("export", "--format", "csv", "--output", str(out), cwd=log)
    assert result.returncode == 0 and f"exported {N} decisions" in result.stderr
    with out.open(newline="") as handle:
        exported = list(csv.DictReader(handle))
    assert len(exported) == N and tuple(exported[0]) == EXPORT_FIELDS
    assert [int(r["id"]) for r in exported] == sorted(int(r["id"]) for r in exported)
    assert sum(BODY_WORD in r["body"] for r in exported) == len(
        sql_ids(log / "triage.db", "m.body_excerpt LIKE ?", f"%{BODY_WORD}%")
    )

    lines = json_lines(log, "export", "--status", "unparseable")
    assert len(lines) == kinds(N).count("garbage_bytes") and all(r["status"] == "unparseable" for r in lines)


def test_user_errors_end_in_one_line(
    log: Path, tmp_path_factory: pytest.TempPathFactory, langgraph_server: DevServer
) -> None:
    broken = log / "broken.jinja"
    broken.write_text("{{ email.no_such_field }}")
    for args in (
        ("replay", "--template", str(broken)),
        ("replay", "--concurrency", "0"),
        ("log", "--since", "last tuesday"),
        ("show", "999999"),
        ("show", "<nobody@nowhere>"),
        ("correct", "1", "--decision", "maybe"),
        ("correct", "1", "--decision", "existing-thread"),
        ("purge", "--before", "soon"),
    ):
        result = run_triage(*args, cwd=log)
        assert result.returncode in (1, 2), (args, result.stdout)  # 2: the configuration (template)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("triage: error: ")
    empty = tmp_path_factory.mktemp("empty")
    (empty / "triage.toml").write_text(f'[store]\nurl = "sqlite:///{empty / "triage.db"}"\n')
    missing = run_triage("stats", cwd=empty)
    assert missing.returncode == 1 and "no decision log" in missing.stderr
    assert not (empty / "triage.db").exists()


# --- stats -------------------------------------------------------------------------------------


def _nearest_rank(values: list[int], p: int) -> int:
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1]


def test_stats_match_counts_computed_independently(log: Path) -> None:
    db = log / "triage.db"
    report = json.loads(triage(log, "stats", "--json"))
    total = report["total"]
    statuses = Counter(
        {str(s): int(n) for s, n in rows(db, "SELECT status, count(*) FROM decisions GROUP BY status")}
    )
    decisions = Counter(
        {
            str(d): int(n)
            for d, n in rows(
                db, "SELECT decision, count(*) FROM decisions WHERE status = 'ok' GROUP BY decision"
            )
        }
    )
    assert total["total"] == N == sum(statuses.values())
    assert {s: n for s, n in total["statuses"].items() if n} == dict(statuses)
    assert {d: n for d, n in total["decisions"].items() if n} == dict(decisions)
    assert total["needs_review_rate"] == 0 and total["error_rate"] == 0
    latencies = [int(r[0]) for r in rows(db, "SELECT latency_ms FROM decisions WHERE latency_ms IS NOT NULL")]
    for p in (50, 95, 99):  # kept to within 2.5 % (rounded down)
        exact = _nearest_rank(latencies, p)
        assert exact * 0.975 <= total["latency_ms"][f"p{p}"] <= exact
    assert total["corrected"] == 0 and total["correction_rate"] == 0

    days = {
        str(d): int(n) for d, n in rows(db, "SELECT date(created_at), count(*) FROM decisions GROUP BY 1")
    }
    assert {p["period"]: p["total"] for p in report["periods"]} == days
    unparseable = total["statuses"]["unparseable"]
    assert {a["assistant_id"]: a["total"] for a in report["assistants"]} == {
        "agent": N - unparseable,
        "(no run)": unparseable,
    }
    template_hashes = {
        str(h) for (h,) in rows(db, "SELECT DISTINCT coalesce(template_hash, '(no run)') FROM decisions")
    }
    assert {t["template_hash"] for t in report["templates"]} == template_hashes
    assert sum(t["total"] for t in report["templates"]) == N

    weekly = json.loads(triage(log, "stats", "--json", "--by", "week", "--decision", "ignore"))
    assert sum(p["total"] for p in weekly["periods"]) == decisions["ignore"]
    assert all(datetime.fromisoformat(p["period"]).weekday() == 0 for p in weekly["periods"])
    assert "decisions from" in triage(log, "stats")
    # The daily rollups (no filter finer than a day) and a scan of the decisions agree exactly.
    assert json.loads(triage(log, "stats", "--json", "--mailbox", "INBOX")) == report


# --- corrections -------------------------------------------------------------------------------


def _decision_row(db: Path, decision_id: int) -> tuple[object, ...]:
    return rows(db, "SELECT * FROM decisions WHERE id = ?", decision_id)[0]


def test_a_correction_changes_stats_and_replay_but_not_the_original_row(
    log: Path, langgraph_server: DevServer
) -> None:
    db = log / "triage.db"
    target = min(sql_ids(db, "d.decision = 'ignore'"))
    original = _decision_row(db, target)

    said = triage(log, "correct", str(target), "--decision", "new-task", "--note", "a customer, not a list")
    assert f"decision {target} corrected to new-task" in said
    assert _decision_row(db, target) == original
    assert rows(db, "SELECT decision, note FROM corrections WHERE decision_pk = ?", target) == [
        ("new-task", "a customer, not a list")
    ]
    assert ids(log, "--corrected") == {target}

    total = json.loads(triage(log, "stats", "--json"))["total"]
    assert total["corrected"] == 1 and total["correction_rate"] == round(1 / N, 4)
    ignored = len(sql_ids(db, "d.decision = 'ignore'"))
    assert total["after_corrections"]["ignore"] == ignored - 1
    assert total["after_corrections"]["new-task"] == total["decisions"]["new-task"] + 1

    replayed = json.loads(triage(log, "replay", "--corrected", "--json"))
    assert replayed["replayed"] == 1
    assert replayed["agreement"] == {
        "recorded": {"agree": 1, "total": 1},
        "corrections": {"agree": 0, "total": 1},
    }
    assert replayed["confusion"]["corrections"] == {"new-task": {"ignore": 1}}

    # The latest correction counts; the earlier one stays on record.
    message_id = str(
        rows(
            db,
            "SELECT m.message_id FROM messages m JOIN decisions d ON d.message_pk = m.id WHERE d.id = ?",
            target,
        )[0][0]
    )
    triage(log, "correct", message_id, "--decision", "existing-thread", "--thread", "thread-42")
    assert len(rows(db, "SELECT * FROM corrections WHERE decision_pk = ?", target)) == 2
    assert rows(
        db, "SELECT effective_decision, effective_thread_id FROM decisions_view WHERE id = ?", target
    ) == [("existing-thread", "thread-42")]
    # threads_view also holds the threads that routing starts for new tasks.
    assert rows(db, "SELECT messages, last_decision_id FROM threads_view WHERE thread_id = 'thread-42'") == [
        (1, target)
    ]
    assert ids(log, "--thread", "thread-42") == {target}
    again = json.loads(triage(log, "replay", "--corrected", "--json"))
    assert again["agreement"]["corrections"] == {"agree": 0, "total": 1}
    assert again["confusion"]["corrections"] == {"existing-thread": {"ignore": 1}}
    triage(log, "correct", str(target), "--decision", "ignore")
    assert json.loads(triage(log, "replay", "--corrected", "--json"))["agreement"]["corrections"] == {
        "agree": 1,
        "total": 1,
    }
    assert _decision_row(db, target) == original
    shown = json.loads(triage(log, "show", str(target), "--json"))
    assert [c["decision"] for c in shown["corrections"]] == ["new-task", "existing-thread", "ignore"]


# --- replay ------------------------------------------------------------------------------------


def test_replay_with_a_template_that_flips_one_rule_reports_exactly_the_changed_messages(
    log: Path, langgraph_server: DevServer
) -> None:
    db = log / "triage.db"
    before = rows(db, "SELECT * FROM decisions ORDER BY id")
    mail = N - kinds(N).count("garbage_bytes")

    same = json.loads(triage(log, "replay", "--json"))
    assert same["replayed"] == mail and same["skipped"] == {"unparseable": N - mail}
    assert same["agreement"]["recorded"] == {"agree": mail, "total": mail} and same["changed"] == []
    # The stored fields and the threads recorded as offered rebuild every prompt byte for byte.
    assert same["prompts"] == {"compared": mail, "identical": mail}

    flipped = log / "no-auto-submitted.jinja"
    source = TEMPLATE.read_text()
    assert "Auto-Submitted: {{ email.auto_submitted }}" in source
    flipped.write_text(source.replace("Auto-Submitted: {{ email.auto_submitted }}", "Auto-Submitted:"))
    report = json.loads(triage(log, "replay", "--template", str(flipped), "--json"))
    auto = {uid for uid, kind in uid_kind().items() if kind == "auto_submitted"}
    assert {c["uid"] for c in report["changed"]} == auto
    assert {(c["recorded"], c["replayed"]) for c in report["changed"]} == {("ignore", "new-task")}
    assert report["agreement"]["recorded"] == {"agree": mail - len(auto), "total": mail}
    assert report["confusion"]["recorded"]["ignore"]["new-task"] == len(auto)
    assert report["prompts"]["compared"] == 0  # another template: nothing to compare with
    assert rows(db, "SELECT * FROM decisions ORDER BY id") == before, "replay writes only with --record"

    text = triage(log, "replay", "--template", str(flipped), "--status", "ok", "--decision", "ignore")
    assert f"changed ({len(auto)})" in text and "nothing was written" in text

    triage(log, "replay", "--template", str(flipped), "--from", "example", "--record")
    recorded = {
        int(uid): (d, by)
        for uid, d, by in rows(
            db,
            "SELECT m.uid, d.decision, d.decided_by FROM decisions d JOIN messages m ON m.id = d.message_pk WHERE d.status = 'ok'",
        )
    }
    assert all(recorded[uid] == ("new-task", "replay:run") for uid in auto)
    assert json.loads(triage(log, "stats", "--json"))["total"]["total"] == N


# --- show, review: a log from a run server that records what it received ----------------------


def _answers(index: int, body: dict[str, object]) -> str:
    """Some answers the contract refuses (needs-review), so there is a queue to review."""
    uid = int(body["metadata"]["uid"])
    if uid % 3 == 0:
        return 'ok-json:{"decision": "maybe", "reason": "unsure"}'
    if uid % 3 == 1:
        return (
            'ok-json:{"decision": "existing-thread", "thread_id": "thread-9", "reason": "looks like a reply"}'
        )
    return "ok"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, FakeRunServer]]:
    """One run at a time, so decision ids follow UIDs and the review script below is fixed."""
    with FakeRunServer(_answers) as server:
        db = _backfill(
            tmp_path_factory.mktemp("recorded"), varied_messages(12), server.url, "--concurrency", "1"
        )
        yield db, server


def test_show_prints_the_prompt_exactly_as_the_run_server_received_it(
    recorded: tuple[Path, FakeRunServer], tmp_path: Path
) -> None:
    db, server = recorded
    _copy(db, tmp_path)
    sent = {int(r["metadata"]["uid"]): r["input"]["messages"][0]["content"] for r in server.requests}
    assert len(sent) == 12
    by_uid = {
        int(uid): int(i)
        for uid, i in rows(db, "SELECT m.uid, d.id FROM messages m JOIN decisions d ON d.message_pk = m.id")
    }
    for uid, prompt in sent.items():
        assert triage(tmp_path, "show", str(by_uid[uid]), "--prompt") == prompt  # byte for byte
    text = triage(tmp_path, "show", str(by_uid[1]))
    assert f"--- prompt as sent ({len(sent[1])} characters) ---\n{sent[1]}\n--- end of prompt ---\n" in text
    assert "decided by      run " in text and '"uid": 1' in text and "thread-9" in text
    as_json = json.loads(triage(tmp_path, "show", "<corpus-0@example.test>", "--json"))
    assert as_json["id"] == by_uid[1] and as_json["prompt"] == sent[1]
    assert (
        as_json["decision"]["status"] == "needs-review"
        and as_json["raw_response"]["messages"][-1]["type"] == "ai"
    )


def test_review_walks_the_queue_through_a_pseudo_terminal(
    recorded: tuple[Path, FakeRunServer], tmp_path: Path
) -> None:
    db = _copy(recorded[0], tmp_path)
    queue = sorted(sql_ids(db, "d.status = 'needs-review'"), reverse=True)
    assert len(queue) == 8  # uids 1, 3, 4, 6, 7, 9, 10, 12
    child = pexpect.spawn(
        sys.executable,
        ["-m", "triage", "review", "--author", "rev"],
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=30,
    )
    keys = r"\[q\]uit \? "
    child.expect(rf"\[1/8\] decision {queue[0]}: needs-review  -")  # uid 12: no valid decision
    child.expect(keys)
    child.send("a")
    child.expect("nothing to accept")
    child.expect(keys)
    child.send("i")
    child.expect("recorded: ignore")
    child.expect(rf"\[2/8\] decision {queue[1]}: needs-review  existing-thread \(thread thread-9\)")
    child.expect(keys)
    child.send("o")
    child.expect("--- prompt as sent")
    child.expect("--- raw response ---")
    child.expect(keys)
    child.send("a")
    child.expect(r"confirmed: existing-thread \(thread thread-9\)")
    child.expect(r"\[3/8\]")
    child.expect(keys)
    child.send("s")
    child.expect(r"\[4/8\]")
    child.expect(keys)
    child.send("e")
    child.expect("thread id: ")
    child.sendline("thread-77")
    child.expect(r"recorded: existing-thread \(thread thread-77\)")
    child.expect(keys)
    child.send("q")
    child.expect("reviewed: 1 accepted, 2 corrected, 1 skipped")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert rows(db, "SELECT decision_pk, kind, decision, thread_id, author FROM corrections ORDER BY id") == [
        (queue[0], "correction", "ignore", None, "rev"),
        (queue[1], "confirmation", "existing-thread", "thread-9", "rev"),
        (queue[3], "correction", "existing-thread", "thread-77", "rev"),
    ]
    # Corrected ones leave the queue; the skipped one is still there.
    left = subprocess.run(
        [sys.executable, "-m", "triage", "review"],
        cwd=tmp_path,
        input="q\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert left.returncode == 0 and "[1/5]" in left.stdout and f"decision {queue[2]}:" in left.stdout


# --- retention ---------------------------------------------------------------------------------


def test_purge_removes_bodies_and_keeps_counts(log: Path, langgraph_server: DevServer) -> None:
    db = log / "triage.db"
    stats_before = json.loads(triage(log, "stats", "--json"))["total"]
    assert ids(log, "-q", BODY_WORD)
    assert "bodies of 0 messages" in triage(log, "purge", "--before", "2000-01-01", "--keep-decisions")
    assert rows(db, "SELECT count(*) FROM messages WHERE body_excerpt IS NOT NULL")[0][0] == N - kinds(
        N
    ).count("garbage_bytes")

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    said = triage(log, "purge", "--before", tomorrow, "--keep-decisions")
    assert "the decisions are kept" in said
    assert rows(db, "SELECT count(*) FROM messages WHERE body_excerpt IS NOT NULL") == [(0,)]
    assert rows(
        db, "SELECT count(*) FROM decisions WHERE prompt IS NOT NULL OR raw_response IS NOT NULL"
    ) == [(0,)]
    assert json.loads(triage(log, "stats", "--json"))["total"] == stats_before
    assert len(ids(log)) == N and ids(log, "-q", BODY_WORD) == set()
    for leftover in (db, db.with_name("triage.db-wal")):  # vacuumed: no copy of a body is left on disk
        assert not leftover.exists() or BODY_WORD.encode() not in leftover.read_bytes()
    assert "prompt: not stored" in triage(log, "show", str(min(ids(log))))
    mail = N - kinds(N).count("garbage_bytes")
    replayed = json.loads(triage(log, "replay", "--json"))
    assert replayed["replayed"] == 0 and replayed["skipped"] == {"purged": mail, "unparseable": N - mail}

    said = triage(log, "purge", "--before", tomorrow)
    # Whole rows go, except those whose message another table (the thread registry) names.
    tables = (
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN ('decisions', 'corrections')"
    )
    referencing = [
        (str(name), str(key[3]))
        for (name,) in rows(db, tables)
        for key in rows(db, f"PRAGMA foreign_key_list({name})")
        if key[2] == "messages"
    ]
    named = " UNION ".join(f"SELECT {column} FROM {name}" for name, column in referencing) or "SELECT NULL"
    kept = rows(db, f"SELECT count(*) FROM messages WHERE id IN ({named})")[0][0]
    assert (
        rows(db, "SELECT count(*) FROM decisions") == [(kept,)] == rows(db, "SELECT count(*) FROM messages")
    )
    assert f"deleted {N - kept} decisions and {N - kept} messages" in said
    assert json.loads(triage(log, "stats", "--json"))["total"]["total"] == kept
