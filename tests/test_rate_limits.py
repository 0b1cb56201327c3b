"""A backfill against a rate-limited run server finds the rate it allows: no run recorded as an
error, few calls turned away, each message run once. Whether the limit is the server's own (429
with Retry-After) or the model's, surfacing as graph errors in 200s.

How close to the allowed rate it runs is measured by bench/run_limits.py, not asserted here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.configs import write_file_config
from tests.support.corpus import support_mail
from tests.support.inprocess import triage, write_mbox
from tests.support.run_server import FakeRunServer
from tests.support.store_view import outcomes

pytestmark = pytest.mark.usefixtures("clean_triage_env")

N_MESSAGES = 300
RUNS_PER_S = 75  # at 100 ms a run, about 7.5 in flight


@pytest.mark.parametrize("signalled_as", ["http", "graph-error"])
def test_a_backfill_settles_at_the_rate_a_rate_limited_server_allows(
    signalled_as: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = write_mbox(
        tmp_path / "in.mbox", [support_mail(n, f"Request {n}") for n in range(1, N_MESSAGES + 1)]
    )
    limited = FakeRunServer(latency_s=0.1, rate_limit=(RUNS_PER_S, 10), rate_limit_mode=signalled_as)
    with limited as server:
        langgraph = {"timeout_s": 10, "backoff_cap_s": 5, "max_attempts": 2}
        config = write_file_config(tmp_path, server.url, langgraph=langgraph)
        done = triage(capsys, "--config", config, "backfill", "--source", box, "--concurrency", "64")
        stats = server.stats()
    assert done.status == 0, done.err
    decided = outcomes(tmp_path / "triage.db")
    assert sorted(decided) == list(range(1, N_MESSAGES + 1))
    assert {status for status, _, _ in decided.values()} == {"ok"}  # none recorded as an error
    assert stats["runs"] == N_MESSAGES  # each message's run made once (rejections are not runs)
    assert stats["rejected"] <= N_MESSAGES // 10, stats  # at most one call in ten turned away
    assert stats["max_in_flight"] < 64  # it did not stay at the ceiling
