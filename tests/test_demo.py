"""The quickstart's main job: the bundled sample mailbox -> the bundled assistant on its own
`langgraph dev` -> decisions printed and stored."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import require
from tests.support.cli import run_triage
from tests.support.store_view import outcomes

pytestmark = pytest.mark.integration


def test_demo_triages_the_sample_mailbox_and_a_second_run_sends_nothing(tmp_path: Path) -> None:
    require(shutil.which("langgraph") is not None, "langgraph dev is not installed")
    first = run_triage("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    result = outcomes(tmp_path / "triage.db")
    assert len(result) == 24
    decisions = Counter(d for _, d, _ in result.values())
    # Two newsletters, a notification, an out-of-office, an expiry alert and the HTML marketing mail
    # are ignored; the two replies join the threads their headers prove.
    assert decisions == {"new-task": 16, "existing-thread": 2, "ignore": 6}
    assert "triaged 24 of 24 planned" in first.stdout
    assert "Automatic reply" in first.stdout or "Out of office" in first.stdout
    second = run_triage("demo", cwd=tmp_path)
    assert second.returncode == 0 and "nothing to do" in second.stdout
