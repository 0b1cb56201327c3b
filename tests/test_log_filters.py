"""`triage stats` and `triage log` with the correction filters, in-process on a small store (SQLite
and PostgreSQL)."""

from __future__ import annotations

import pytest

from triage.cli import main
from triage.message import Email, parse_email
from triage.sources import RawMessage
from triage.store.decisions import Claim, Outcome, Store


@pytest.fixture
def decided(store_url: str, clean_triage_env: object, monkeypatch: pytest.MonkeyPatch) -> str:
    """Three decisions, the second corrected to a thread; TRIAGE_STORE__URL points at them."""
    store = Store.open(store_url)
    for uid in (1, 2, 3):
        raw = RawMessage("acct", "INBOX", 1, uid, f"From: a@x.com\r\nSubject: s{uid}\r\n\r\nb\r\n".encode())
        email = parse_email(raw.raw, 4000)
        assert isinstance(email, Email)
        claimed = store.claim(raw, email, Claim("p", "h", "agent", {}))
        assert claimed is not None and store.record(claimed, Outcome("ok", "ignore", reason="r"))
    store.close()
    monkeypatch.setenv("TRIAGE_STORE__URL", store_url)
    assert main(["correct", "2", "--decision", "existing-thread", "--thread", "t-7"]) == 0
    return store_url


def test_stats_of_corrected_decisions_only(decided: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["stats", "--corrected", "--json"]) == 0
    assert '"total": 1' in capsys.readouterr().out


def test_log_and_stats_of_one_thread_count_a_decision_corrected_into_it(
    decided: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["log", "--thread", "t-7", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and '"id": 2' in lines[0]
    assert main(["stats", "--thread", "t-7", "--json"]) == 0
    assert '"total": 1' in capsys.readouterr().out
