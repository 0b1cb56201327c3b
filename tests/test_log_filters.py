"""`triage stats` and `triage log` with the correction filters, in-process on a small store."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.cli import main
from triage.message import Email, parse_email
from triage.sources import RawMessage
from triage.store import Claim, Outcome, Store


@pytest.fixture
def decided(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three decisions, the second corrected to a thread; TRIAGE_STORE__URL points at them."""
    db = tmp_path / "triage.db"
    store = Store.open(f"sqlite:///{db}")
    for uid in (1, 2, 3):
        raw = RawMessage("acct", "INBOX", 1, uid, f"From: a@x.com\r\nSubject: s{uid}\r\n\r\nb\r\n".encode())
        email = parse_email(raw.raw, 4000)
        assert isinstance(email, Email)
        claimed = store.claim(raw, email, Claim("p", "h", "agent", {}))
        assert claimed is not None and store.record(claimed, Outcome("ok", "ignore", reason="r"))
    store.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRIAGE_STORE__URL", f"sqlite:///{db}")
    assert main(["correct", "2", "--decision", "existing-thread", "--thread", "t-7"]) == 0
    return db


def test_stats_of_corrected_decisions_only(decided: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["stats", "--corrected", "--json"]) == 0
    assert '"total": 1' in capsys.readouterr().out


def test_log_and_stats_of_one_thread_count_a_decision_corrected_into_it(
    decided: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["log", "--thread", "t-7", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and '"id": 2' in lines[0]
    assert main(["stats", "--thread", "t-7", "--json"]) == 0
    assert '"total": 1' in capsys.readouterr().out
