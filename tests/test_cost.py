"""Cost, in this process: tokens recorded as reported (or estimated), totalled by `stats` and priced;
`backfill --estimate` before any work; no run for a copy of mail decided elsewhere in the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.configs import write_config, write_file_config
from tests.support.fake_gmail import FakeGmail
from tests.support.inprocess import FAST_RUNS, triage, write_mbox
from tests.support.run_server import FakeRunServer
from tests.support.store_view import rows
from triage.tokens import estimate_tokens

pytestmark = pytest.mark.usefixtures("clean_triage_env")

Capsys = pytest.CaptureFixture[str]
PRICES = '\n[cost]\ninput_per_million = 2.5\noutput_per_million = 10.0\ncurrency = "EUR"\n'


def mail(n: int) -> bytes:
    """Mail from a sender of its own, on a subject of its own: nothing offers it a thread."""
    headers = [
        f"From: person{n}@place{n}.example",
        "To: support@example.com",
        f"Subject: Matter {n} of {'abcdefghij'[n % 10]}",
        f"Message-ID: <cost-{n}@example.test>",
        "Date: Tue, 03 Nov 2026 09:00:00 +0000",
    ]
    return ("\r\n".join(headers) + f"\r\n\r\nPlease look at matter {n}. " + "Details. " * n + "\r\n").encode()


def test_reported_usage_is_recorded_exactly_and_stats_totals_the_rows(tmp_path: Path, capsys: Capsys) -> None:
    box = write_mbox(tmp_path / "in.mbox", [mail(n) for n in range(1, 6)])

    def usage(_index: int, body: dict[str, Any]) -> str:
        uid = int(body["metadata"]["uid"])
        return f"ok-usage:{1000 + uid},{20 + uid}"

    with FakeRunServer(usage) as server:
        config = write_file_config(tmp_path, server.url, langgraph=FAST_RUNS)
        config.write_text(config.read_text() + PRICES)
        assert triage(capsys, "backfill", "--source", box, "--quiet").status == 0
    db = tmp_path / "triage.db"
    recorded = rows(
        db,
        "SELECT m.uid, d.prompt_tokens, d.output_tokens, d.tokens_measured FROM decisions d "
        "JOIN messages m ON m.id = d.message_pk ORDER BY m.uid",
    )
    assert recorded == [(uid, 1000 + uid, 20 + uid, 1) for uid in range(1, 6)]
    tokens = json.loads(triage(capsys, "stats", "--json").out)["tokens"]
    prompt = sum(1000 + uid for uid in range(1, 6))
    assert tokens == {
        "runs": 5,
        "prompt_tokens": prompt,
        "output_tokens": 115,
        "measured_runs": 5,
        "estimated_runs": 0,
        "prompt_tokens_per_run": prompt / 5,
        "output_tokens_per_run": 23.0,
        "cost": {"amount": round((prompt * 2.5 + 115 * 10.0) / 1e6, 6), "currency": "EUR"},
    }
    printed = triage(capsys, "stats").out
    assert f"tokens: {prompt:,} prompt (1,003 a run), 115 output over 5 runs\n" in printed
    exported = [json.loads(line) for line in triage(capsys, "export").out.splitlines()]
    first = exported[0]
    assert (first["prompt_tokens"], first["output_tokens"], first["tokens_measured"]) == (1001, 21, True)
    assert all(e["prompt"].startswith("You triage email") for e in exported)


def test_without_reported_usage_the_prompt_is_estimated_and_says_so(tmp_path: Path, capsys: Capsys) -> None:
    box = write_mbox(tmp_path / "in.mbox", [mail(n) for n in range(1, 4)])
    with FakeRunServer() as server:
        write_file_config(tmp_path, server.url, langgraph=FAST_RUNS)
        assert triage(capsys, "backfill", "--source", box, "--quiet").status == 0
    recorded = rows(
        tmp_path / "triage.db", "SELECT prompt, prompt_tokens, output_tokens, tokens_measured FROM decisions"
    )
    assert [(tokens, made, measured) for _, tokens, made, measured in recorded] == [
        (estimate_tokens(str(prompt)), None, 0) for prompt, *_ in recorded
    ]
    tokens = json.loads(triage(capsys, "stats", "--json").out)["tokens"]
    assert (tokens["estimated_runs"], tokens["measured_runs"], "cost" in tokens) == (3, 0, False)


def test_estimate_sends_nothing_writes_nothing_and_counts_what_a_backfill_sends(
    tmp_path: Path, capsys: Capsys
) -> None:
    box = write_mbox(tmp_path / "in.mbox", [mail(n) for n in range(1, 8)])
    db = tmp_path / "triage.db"
    with FakeRunServer() as server:
        config = write_file_config(tmp_path, server.url, langgraph=FAST_RUNS)
        config.write_text(config.read_text() + PRICES)
        estimated = triage(capsys, "backfill", "--source", box, "--estimate")
        assert estimated.status == 0, estimated.err
        assert server.received == 0 and not db.exists()  # not a request, not a file
        assert triage(capsys, "backfill", "--source", box, "--quiet").status == 0
    # The backfill that followed sent exactly the prompts the estimate counted.
    sent = sum(int(n) for (n,) in rows(db, "SELECT prompt_tokens FROM decisions"))  # type: ignore[call-overload]
    lines = estimated.out_lines
    assert (
        lines[0] == "estimate: 7 messages to triage: 7 runs to send, 0 decided without a run, 0 unparseable"
    )
    assert lines[1].startswith(f"prompt tokens: {sent:,} (")
    assert lines[2] == "output tokens: about 420 (60 a run, assumed)"
    assert lines[3] == f"cost: about {(sent * 2.5 + 420 * 10.0) / 1e6:,.2f} EUR; nothing was sent or written"


def test_a_copy_in_another_mailbox_keeps_the_decision_without_a_run(tmp_path: Path, capsys: Capsys) -> None:
    copies = [mail(n) for n in range(1, 6)]
    with FakeGmail(gmail=False) as imap, FakeRunServer() as server:
        for n, raw in enumerate(copies):
            imap.add_message("INBOX", raw, thrid=n)
            imap.add_message("Sales", raw, thrid=n)
        imap.add_message("Sales", mail(9), thrid=9)  # only there
        write_config(tmp_path, imap, server.url, mailboxes=["INBOX", "Sales"], langgraph=FAST_RUNS)
        first = triage(capsys, "backfill", "--quiet")
        assert first.status == 0, first.err
        assert len(server.requests) == 6  # five in the inbox, one only in Sales
        estimated = triage(capsys, "backfill", "--estimate", "--no-dedupe")
        assert estimated.status == 0 and server.received == len(server.paths)  # the estimate sent nothing
    db = tmp_path / "triage.db"
    decided = rows(
        db,
        "SELECT m.mailbox, d.decided_by, d.decision, d.prompt_tokens IS NOT NULL FROM decisions d "
        "JOIN messages m ON m.id = d.message_pk ORDER BY d.id",
    )
    assert [row for row in decided if row[0] == "INBOX"] == [("INBOX", "run", "new-task", 1)] * 5
    sales = [row for row in decided if row[0] == "Sales"]
    assert sorted(by.partition(":")[0] for _, by, _, _ in sales) == ["copy"] * 5 + ["run"]  # type: ignore[union-attr]
    assert [tokens for _, by, _, tokens in sales if str(by).startswith("copy:")] == [0] * 5  # no run, no cost
    stats = json.loads(triage(capsys, "stats", "--json").out)["tokens"]
    assert stats["runs"] == 6


def test_no_dedupe_runs_the_copies_too(tmp_path: Path, capsys: Capsys) -> None:
    with FakeGmail(gmail=False) as imap, FakeRunServer() as server:
        for n in range(1, 4):
            imap.add_message("INBOX", mail(n), thrid=n)
            imap.add_message("Sales", mail(n), thrid=n)
        write_config(tmp_path, imap, server.url, mailboxes=["INBOX", "Sales"], langgraph=FAST_RUNS)
        assert triage(capsys, "backfill", "--quiet", "--no-dedupe").status == 0
        assert len(server.requests) == 6
