"""A backfill behind an HTTP proxy: every request to the run server crosses it.

The run server's URL names a host no resolver knows (`runs.invalid`), which only the proxy maps
to the loopback stub: a run that succeeds went through the proxy, taken from `HTTP_PROXY` as
httpx reads the environment. In both run modes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.configs import write_file_config
from tests.support.corpus import support_mail
from tests.support.http_proxy import HttpProxy
from tests.support.inprocess import FAST_RUNS, triage, write_mbox
from tests.support.run_server import FakeRunServer
from tests.support.store_view import outcomes

pytestmark = pytest.mark.usefixtures("clean_triage_env")

N_MESSAGES = 4


@pytest.mark.parametrize("mode", ["wait", "background"])
def test_a_backfill_reaches_the_run_server_only_through_the_proxy(
    mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    box = write_mbox(
        tmp_path / "in.mbox", [support_mail(n, f"Request {n}") for n in range(1, N_MESSAGES + 1)]
    )
    with FakeRunServer() as server, HttpProxy(hosts={"runs.invalid": "127.0.0.1"}) as proxy:
        url = f"http://runs.invalid:{server.url.rsplit(':', 1)[1]}"
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        config = write_file_config(tmp_path, url, langgraph={**FAST_RUNS, "mode": mode})
        done = triage(capsys, "--config", config, "backfill", "--source", box)
        assert done.status == 0, done.err
        crossed = [target.removeprefix(url) for _, target in proxy.requests]
        assert len(crossed) == len(server.paths) > 0  # everything the server got came through
    assert outcomes(tmp_path / "triage.db") == {
        uid: ("ok", "new-task", 1) for uid in range(1, N_MESSAGES + 1)
    }
    started = "/runs/wait" if mode == "wait" else "/runs"
    assert crossed.count(started) == N_MESSAGES
    assert crossed[0] == "/ok"
