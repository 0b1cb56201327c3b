"""Backfill end to end: a real Dovecot on loopback -> triage -> a real `langgraph dev` -> SQLite."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.cli import popen_triage, run_triage
from tests.support.configs import write_config
from tests.support.corpus import kinds, varied_messages
from tests.support.dovecot import DovecotServer
from tests.support.store_view import final_count, outcomes, rows
from triage.devserver import DevServer

pytestmark = pytest.mark.integration

N_VARIED = 210


def _expected_statuses(names: list[str]) -> Counter[str]:
    """What the reference assistant's rules must decide for each corpus kind."""
    expected: Counter[str] = Counter()
    for name in names:
        if name == "garbage_bytes":
            expected["unparseable"] += 1
        elif name in ("mailing_list", "auto_submitted"):
            expected["ignore"] += 1
        elif name == "reply":  # its parent is in the corpus: the headers prove the thread
            expected["existing-thread"] += 1
        else:
            expected["new-task"] += 1
    return expected


def test_varied_mailbox_end_to_end_then_idempotent(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer
) -> None:
    dovecot.append(varied_messages(N_VARIED))
    write_config(tmp_path, dovecot, langgraph_server.url)
    db = tmp_path / "triage.db"

    first = run_triage("backfill", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    result = outcomes(db)
    assert sorted(result) == list(range(1, N_VARIED + 1))
    got = Counter(decision or status for status, decision, _ in result.values())
    assert got == _expected_statuses(kinds(N_VARIED))
    assert all(attempts == 1 for status, _, attempts in result.values() if status == "ok")
    assert f"triaged {N_VARIED} of {N_VARIED} planned" in first.stdout

    # Provenance: the exact prompt, the template's hash, the identity in the request metadata.
    prompt, template_hash, metadata, raw_response = rows(
        db,
        "SELECT d.prompt, d.template_hash, d.request_metadata, d.raw_response FROM decisions d "
        "JOIN messages m ON m.id = d.message_pk WHERE m.uid = 1",
    )[0]
    assert "<email-body>" in str(prompt) and len(str(template_hash)) == 16
    assert '"uid": 1' in str(metadata) and '"message_id": "<corpus-0@example.test>"' in str(metadata)
    assert '"type": "ai"' in str(raw_response)

    # BODY.PEEK[]: triage never marks mail read.
    with dovecot.client() as client:
        client.select_folder("INBOX", readonly=True)
        flags = client.get_flags(client.search("ALL"))
    assert len(flags) == N_VARIED and not any(b"\\Seen" in f for f in flags.values())

    second = run_triage("backfill", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout
    assert outcomes(db) == result


def test_sigkill_mid_backfill_then_rerun_records_each_message_once(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer
) -> None:
    dovecot.append(varied_messages(N_VARIED))
    write_config(tmp_path, dovecot, langgraph_server.url, fetch_batch=20)
    db = tmp_path / "triage.db"

    process = popen_triage("backfill", "--concurrency", "4", "--quiet", cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if db.exists() and final_count(db) >= 20:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = outcomes(db)
    assert 20 <= len(before) < N_VARIED, "the kill must land mid-way"

    rerun = run_triage("backfill", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    after = outcomes(db)
    assert sorted(after) == list(range(1, N_VARIED + 1))
    assert Counter(d or s for s, d, _ in after.values()) == _expected_statuses(kinds(N_VARIED))
    # Everything final before the kill was left alone; nothing was planned twice.
    final_before = {uid: r for uid, r in before.items() if r[0] != "pending"}
    assert all(after[uid] == r for uid, r in final_before.items())
    assert f"of {N_VARIED - len(final_before)} planned" in rerun.stdout


def test_filters_limit_and_dry_run(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer
) -> None:
    dovecot.append(varied_messages(30))
    write_config(tmp_path, dovecot, langgraph_server.url)
    db = tmp_path / "triage.db"

    dry = run_triage("backfill", "--dry-run", "--limit", "3", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert not db.exists(), "a dry run writes nothing"
    assert dry.stdout.count("--- request to POST /runs/wait ---") == 3
    assert '"assistant_id": "agent"' in dry.stdout and "<email-body>" in dry.stdout

    limited = run_triage("backfill", "--limit", "5", cwd=tmp_path)
    assert limited.returncode == 0 and sorted(outcomes(db)) == [1, 2, 3, 4, 5]
    missing = run_triage("backfill", "--mailbox", "Nope", cwd=tmp_path)
    assert missing.returncode == 1 and "cannot open mailbox 'Nope'" in missing.stderr


def test_tls_with_a_custom_ca_and_an_untrusted_certificate(
    tmp_path: Path, dovecot_tls: DovecotServer, langgraph_server: DevServer
) -> None:
    dovecot_tls.append(varied_messages(4))
    assert dovecot_tls.tls_port is not None and dovecot_tls.ca_file is not None
    write_config(
        tmp_path,
        dovecot_tls,
        langgraph_server.url,
        port=dovecot_tls.tls_port,
        tls="implicit",
        ca_file=dovecot_tls.ca_file,
    )
    implicit = run_triage("backfill", cwd=tmp_path)
    assert implicit.returncode == 0, implicit.stderr
    assert len(outcomes(tmp_path / "triage.db")) == 4

    write_config(tmp_path, dovecot_tls, langgraph_server.url, tls="starttls", ca_file=dovecot_tls.ca_file)
    assert "nothing to do" in run_triage("backfill", cwd=tmp_path).stdout

    write_config(tmp_path, dovecot_tls, langgraph_server.url, port=dovecot_tls.tls_port, tls="implicit")
    untrusted = run_triage("backfill", cwd=tmp_path)
    assert untrusted.returncode == 1
    lines = untrusted.stderr.strip().splitlines()
    assert len(lines) == 1 and "not trusted" in lines[0] and "imap.ca_file" in lines[0], untrusted.stderr


def test_credentials_wrong_password_and_password_command(
    tmp_path: Path, dovecot: DovecotServer, langgraph_server: DevServer
) -> None:
    dovecot.append(varied_messages(2))
    write_config(tmp_path, dovecot, langgraph_server.url, password="Wr0ng-Secret-42")
    wrong = run_triage("backfill", cwd=tmp_path)
    assert wrong.returncode == 3
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("triage: error: IMAP login failed for testuser@127.0.0.1")
    assert "Wr0ng-Secret-42" not in wrong.stderr + wrong.stdout

    write_config(
        tmp_path, dovecot, langgraph_server.url, password=None, password_command=f"echo {dovecot.password}"
    )
    by_command = run_triage("backfill", cwd=tmp_path)
    assert by_command.returncode == 0, by_command.stderr
    assert len(outcomes(tmp_path / "triage.db")) == 2

    write_config(tmp_path, dovecot, langgraph_server.url, password=None, password_command="exit 3")
    failing = run_triage("backfill", cwd=tmp_path)
    assert failing.returncode == 1 and "imap.password_command failed with exit status 3" in failing.stderr

    write_config(tmp_path, dovecot, langgraph_server.url, port=1, password=None)
    unreachable = run_triage("backfill", cwd=tmp_path)
    assert unreachable.returncode == 1 and "cannot connect to IMAP server 127.0.0.1:1" in unreachable.stderr
