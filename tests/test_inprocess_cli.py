"""The command line in this process: `log`, `show`, `stats`, `export` over a log the test filled
through the store, `config` and its errors, and output cut short by a reader that went away."""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.inprocess import Ran, triage
from triage.cli import (
    SIGPIPE_STATUS,
    START_UP_S,
    START_UP_YOUNG_GENERATION,
    collector_set_for_start_up,
)
from triage.message import Email, parse_email
from triage.sources import RawMessage
from triage.store.decisions import Claim, Outcome, Store

pytestmark = pytest.mark.usefixtures("clean_triage_env")

Capsys = pytest.CaptureFixture[str]

# uid -> (subject, sender, outcome); recorded in this order, so decision ids follow uids.
LOGGED: dict[int, tuple[str, str, Outcome]] = {
    1: (
        "Export fails on Mondays",
        "ana@customer.example",
        Outcome(
            "ok", "new-task", title="Export fails", reason="a new problem", confidence=0.9, latency_ms=120
        ),
    ),
    2: (
        "Weekly digest",
        "news@list.example",
        Outcome("ok", "ignore", reason="a mailing list", confidence=0.8, latency_ms=80),
    ),
    3: (
        "Something odd",
        "bo@customer.example",
        Outcome("needs-review", "maybe", problem="unknown decision 'maybe'", attempts=1, latency_ms=300),
    ),
    4: (
        "Server said no",
        "cy@customer.example",
        Outcome("error", error_kind="http", error_text="HTTP 500", attempts=4),
    ),
}


def _prompt(uid: int) -> str:
    return f"You triage email.\n<email>\nmessage {uid}: the zebrafish quota\n</email>\n"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A config naming a log that holds LOGGED, written through the store as triage writes it."""
    db = tmp_path / "triage.db"
    (tmp_path / "triage.toml").write_text(f'[store]\nurl = "sqlite:///{db}"\n')
    store = Store.open(f"sqlite:///{db}")
    try:
        for uid, (subject, sender, outcome) in LOGGED.items():
            raw = RawMessage(
                "acct",
                "INBOX",
                7,
                uid,
                (
                    f"From: {sender}\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
                    f"Message-ID: <log-{uid}@example.test>\r\nDate: Tue, 03 Nov 2026 09:0{uid}:00 +0000\r\n"
                    f"\r\nBody {uid} mentions the zebrafish quota.\r\n"
                ).encode(),
            )
            email = parse_email(raw.raw, 4000)
            assert isinstance(email, Email)
            claimed = store.claim(raw, email, Claim(_prompt(uid), "hash-1", "agent", {"uid": uid}))
            assert claimed is not None
            assert store.record(claimed, outcome)
    finally:
        store.close()
    return tmp_path / "triage.toml"


def _ok(ran: Ran) -> str:
    assert ran.status == 0, ran.err
    return ran.out


def test_log_lists_newest_first_and_filters(log: Path, capsys: Capsys) -> None:
    table = _ok(triage(capsys, "--config", log, "log")).splitlines()
    assert table[0].split()[:3] == ["ID", "TIME", "(UTC)"]
    assert [int(line.split()[0]) for line in table[1:]] == [4, 3, 2, 1]
    assert "Export fails on Mondays" in table[4] and "new-task" in table[4] and "120ms" in table[4]

    as_json = [
        json.loads(line) for line in _ok(triage(capsys, "--config", log, "log", "--json")).splitlines()
    ]
    assert [(e["id"], e["status"], e["decision"]) for e in as_json] == [
        (4, "error", None),
        (3, "needs-review", "maybe"),
        (2, "ok", "ignore"),
        (1, "ok", "new-task"),
    ]
    review = _ok(triage(capsys, "--config", log, "log", "--json", "--status", "needs-review"))
    assert [json.loads(line)["id"] for line in review.splitlines()] == [3]
    found = _ok(triage(capsys, "--config", log, "log", "--json", "-q", "digest"))
    assert [json.loads(line)["id"] for line in found.splitlines()] == [2]
    limited = _ok(triage(capsys, "--config", log, "log", "--json", "--limit", "1"))
    assert [json.loads(line)["id"] for line in limited.splitlines()] == [4]


def test_show_prints_the_decision_and_the_prompt_exactly(log: Path, capsys: Capsys) -> None:
    text = _ok(triage(capsys, "--config", log, "show", "1"))
    assert text.startswith("decision 1: ok  new-task  confidence 0.90\n")
    assert "subject         Export fails on Mondays\n" in text
    assert (
        f"--- prompt as sent ({len(_prompt(1))} characters) ---\n{_prompt(1)}\n--- end of prompt ---\n"
        in text
    )
    assert _ok(triage(capsys, "--config", log, "show", "3", "--prompt")) == _prompt(3)  # byte for byte
    by_message_id = json.loads(_ok(triage(capsys, "--config", log, "show", "<log-4@example.test>", "--json")))
    assert by_message_id["id"] == 4 and by_message_id["decision"]["error_kind"] == "http"

    missing = triage(capsys, "--config", log, "show", "99")
    assert (
        missing.status == 1
        and len(missing.err_lines) == 1
        and missing.err_lines[0].startswith("triage: error:")
    )


def test_stats_count_what_the_log_holds(log: Path, capsys: Capsys) -> None:
    report = json.loads(_ok(triage(capsys, "--config", log, "stats", "--json")))
    total = report["total"]
    assert total["total"] == 4
    assert total["decisions"]["new-task"] == 1 and total["decisions"]["ignore"] == 1
    assert total["statuses"]["needs-review"] == 1 and total["statuses"]["error"] == 1
    assert total["needs_review_rate"] == pytest.approx(0.25) and total["error_rate"] == pytest.approx(0.25)
    printed = _ok(triage(capsys, "--config", log, "stats"))
    assert printed.startswith("4 decisions from ")
    assert [line.split()[:2] for line in printed.splitlines() if line.startswith("total")] == [["total", "4"]]


def test_export_streams_every_decision_oldest_first(log: Path, tmp_path: Path, capsys: Capsys) -> None:
    lines = _ok(triage(capsys, "--config", log, "export")).splitlines()
    exported = [json.loads(line) for line in lines]
    assert [e["id"] for e in exported] == [1, 2, 3, 4]
    assert exported[0]["title"] == "Export fails" and exported[3]["error_text"] == "HTTP 500"
    assert exported[1]["body"].strip() == "Body 2 mentions the zebrafish quota."

    as_csv = list(
        csv.DictReader(io.StringIO(_ok(triage(capsys, "--config", log, "export", "--format", "csv"))))
    )
    assert [row["id"] for row in as_csv] == ["1", "2", "3", "4"]
    assert set(exported[0]) == set(as_csv[0])  # the same fields either way

    target = tmp_path / "out.jsonl"
    to_file = triage(capsys, "--config", log, "export", "--output", target, "--status", "ok")
    assert to_file.status == 0 and to_file.out == ""
    assert to_file.err_lines == [f"exported 2 decisions to {target}"]
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [1, 2]


def test_commands_over_a_log_that_does_not_exist_end_in_one_line(tmp_path: Path, capsys: Capsys) -> None:
    (tmp_path / "triage.toml").write_text(f'[store]\nurl = "sqlite:///{tmp_path / "none.db"}"\n')
    for command in ("log", "stats", "export"):
        done = triage(capsys, command)  # ./triage.toml, found in the working directory
        assert done.status == 1, command
        assert done.err_lines == [
            f"triage: error: no decision log at sqlite:///{tmp_path / 'none.db'} yet:"
            " run `triage backfill` or `triage watch` first"
        ]
    assert not (tmp_path / "none.db").exists()


# --- config ------------------------------------------------------------------------------------


def test_config_prints_the_effective_settings_with_secrets_masked(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "custom.toml"
    config.write_text(
        '[imap]\nhost = "mail.example.com"\nusername = "me"\npassword = "s3cret-file-pass"\n'
        '[langgraph]\napi_key = "lg-key-123"\nmax_concurrency = 4\n'
    )
    monkeypatch.setenv("TRIAGE_LANGGRAPH__MAX_CONCURRENCY", "12")
    monkeypatch.setenv("TRIAGE_CONFIG", str(config))
    done = triage(capsys, "config")
    shown = json.loads(_ok(done))
    assert shown["imap"]["host"] == "mail.example.com" and shown["langgraph"]["max_concurrency"] == 12
    assert shown["imap"]["password"] == "********" and shown["langgraph"]["api_key"] == "********"
    assert "s3cret-file-pass" not in done.out + done.err and "lg-key-123" not in done.out + done.err


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ('[imap]\nport = "lots"\n', ("imap.port",)),
        ('[imap]\nhots = "x"\n', ("imap.hots", "Extra inputs")),
        ('[imap]\npassword = "p-secret-1"\npassword_command = "echo x"\n', ("imap", "only one of")),
        ('[langgraph]\nurl = "ftp://x"\n', ("langgraph", "http")),
        ("[imap\n", ("not valid TOML",)),
    ],
    ids=["type", "unknown-key", "two-credentials", "url-scheme", "toml"],
)
def test_a_bad_config_ends_in_one_line_with_status_2(
    tmp_path: Path, capsys: Capsys, toml: str, needles: tuple[str, ...]
) -> None:
    (tmp_path / "triage.toml").write_text(toml)
    for command in (["config"], ["backfill", "--source", str(tmp_path)], ["log"]):
        done = triage(capsys, *command)
        assert done.status == 2, (command, done.err)
        assert len(done.err_lines) == 1 and done.err_lines[0].startswith("triage: error: "), done.err
        assert all(needle in done.err_lines[0] for needle in needles), done.err
        assert "p-secret-1" not in done.err and done.out == ""


def test_a_missing_config_file_is_one_line_too(tmp_path: Path, capsys: Capsys) -> None:
    done = triage(capsys, "--config", tmp_path / "missing.toml", "config")
    assert done.status == 2
    assert done.err_lines == [f"triage: error: config file not found: {tmp_path / 'missing.toml'}"]


# --- a reader that went away (`triage log | head -1`) ------------------------------------------


class _ClosedPipe(io.TextIOBase):
    """A stdout whose reader goes away after `lines` lines: later writes raise BrokenPipeError.

    Its file descriptor is a file of the test's, so that triage pointing it at /dev/null is seen.
    """

    def __init__(self, path: Path, lines: int) -> None:
        self.file = path.open("w")
        self.left = lines
        self.written = ""

    def fileno(self) -> int:
        return self.file.fileno()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.left <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.written += text
        self.left -= text.count("\n")
        return len(text)

    def flush(self) -> None:
        if self.left <= 0:
            raise BrokenPipeError(32, "Broken pipe")


def _points_at_devnull(fd: int) -> bool:
    return os.readlink(f"/proc/self/fd/{fd}") == os.devnull


def test_a_reader_that_goes_away_ends_the_output_quietly(
    log: Path, tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `triage log | head -1`: the header line gets through, the rows do not.
    head = _ClosedPipe(tmp_path / "log-out", lines=1)
    monkeypatch.setattr("sys.stdout", head)
    status = triage(capsys, "--config", log, "log").status
    assert head.written.startswith("     ID  TIME (UTC)") and head.written.count("\n") == 1
    assert capsys.readouterr().err == ""  # not a word, nor a traceback
    assert _points_at_devnull(head.fileno())  # so the interpreter's last flush goes nowhere
    assert status == 0  # `log` stops its own output (see the report: main() would say 141)

    # Any other command: main() ends it with the status a shell gives a program ended by SIGPIPE.
    cut = _ClosedPipe(tmp_path / "config-out", lines=0)
    monkeypatch.setattr("sys.stdout", cut)
    ended = triage(capsys, "--config", log, "config")
    assert (ended.status, ended.err, cut.written) == (SIGPIPE_STATUS, "", "")
    assert SIGPIPE_STATUS == 141 and _points_at_devnull(cut.fileno())
    head.file.close()
    cut.file.close()


def _executable(*argv: str) -> subprocess.CompletedProcess[str]:
    """triage as its executable runs (triage.cli.run), in a fresh interpreter that reports, as it
    exits, which heavy modules were loaded and how many objects run() froze."""
    probe = (
        "import atexit, gc, sys\n"
        "def report():\n"
        "    heavy = {'sqlalchemy.orm', 'triage.store.models', 'triage.store.decisions', 'triage.message'}\n"
        "    print(sorted(heavy & set(sys.modules)), gc.get_freeze_count() > 10_000, file=sys.stderr)\n"
        "atexit.register(report)\n"
        "from triage.cli import run\n"
        "run()\n"
    )
    return subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True)


@pytest.mark.integration  # a fresh interpreter: what `triage log` costs, from nothing
@pytest.mark.parametrize(
    ("command", "subject"),
    [(("log", "--limit", "1"), "Server said no"), (("export", "--limit", "1"), "Export fails on Mondays")],
)
def test_reading_the_log_starts_light(log: Path, command: tuple[str, ...], subject: str) -> None:
    """Neither SQLAlchemy's ORM, the store's repository nor the mail parser is loaded, and exit
    finds everything frozen (see triage.cli.run)."""
    done = _executable("--config", str(log), *command)
    assert subject in done.stdout
    assert done.stderr.strip() == "[] True"


@pytest.mark.integration  # fresh interpreters, each exiting as the executable does
@pytest.mark.parametrize(
    "command",
    [
        ("log",),
        ("show", "2"),
        ("stats",),
        ("status",),
        ("threads",),
        ("correct", "2", "--decision", "ignore"),
    ],
)
def test_a_command_closes_the_log_it_opened(log: Path, command: tuple[str, ...]) -> None:
    """Exit collects nothing (run() freezes it all), so a store left open would keep its SQLite
    connection, and its WAL file would outlive the command."""
    folder = log.parent
    assert sorted(p.name for p in folder.glob("triage.db*")) == ["triage.db"]
    _executable("--config", str(log), *command)
    assert sorted(p.name for p in folder.glob("triage.db*")) == ["triage.db"]


def test_the_collector_is_set_for_start_up_only() -> None:
    default = gc.get_threshold()
    try:
        restore = collector_set_for_start_up()
        assert gc.get_threshold() == (START_UP_YOUNG_GENERATION, *default[1:])
        restore.join(START_UP_S + 10)
        assert gc.get_threshold() == default
    finally:
        gc.set_threshold(*default)
