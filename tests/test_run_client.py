"""The run client against the stub run server on loopback: what it sends when a run was already
acknowledged, in both modes. No model call paid twice within one process: a retry joins the run it
has, and only a run the server forgot, or one that ended without an answer, is started again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.run_server import FakeRunServer
from triage.errors import RunError
from triage.run_settings import RunsSettings
from triage.runs import RunRef, RunResult, RunsClient

BODY: dict[str, Any] = {
    "assistant_id": "agent",
    "input": {"messages": [{"role": "user", "content": "hello"}]},
    "metadata": {},
    "on_completion": "delete",
}


def _settings(url: str, *, timeout_s: float = 5.0, mode: str = "wait", attempts: int = 3) -> RunsSettings:
    return RunsSettings(url, None, timeout_s, 4, attempts, 0.01, mode=mode)  # type: ignore[arg-type]


def _run(settings: RunsSettings, known: RunRef | None = None) -> tuple[RunResult, list[RunRef]]:
    """One recorded run (as the pipeline makes them): its result and the acknowledgements seen."""
    started: list[RunRef] = []

    async def go() -> RunResult:
        async with RunsClient(settings) as runs:
            return await runs.run(BODY, known=known, on_started=started.append)

    return asyncio.run(go()), started


def test_a_run_acknowledged_then_timed_out_is_joined_not_sent_again() -> None:
    with FakeRunServer(["delay:1.5"], heartbeat_s=0.2) as server:
        result, started = _run(_settings(server.url, timeout_s=1.0))
        stats = server.stats()
    assert result.attempts == 2 and result.ref == started[0]  # the wait timed out, the join did not
    assert [path.endswith("/join") for path in server.paths[:2]] == [False, True]
    assert server.paths[0] == "/runs/wait" and stats["runs"] == 1 and stats["joins"] == 1
    assert [body.get("on_completion") for body in server.requests] == ["keep"]  # joinable


@pytest.mark.parametrize("mode", ["wait", "background"])
def test_a_known_run_is_joined_and_one_the_server_forgot_is_started_again(mode: str) -> None:
    with FakeRunServer(["ok"]) as server:
        settings = _settings(server.url, mode=mode)
        first, started = _run(settings)
        assert len(started) == 1 and server.stats()["runs"] == 1
        again, none = _run(settings, known=started[0])
        assert again.state == first.state and none == [] and server.stats()["runs"] == 1  # joined
        forgotten = RunRef("no-such-thread", "no-such-run")
        anew, restarted = _run(settings, known=forgotten)
        assert anew.attempts == 2 and len(restarted) == 1 and server.stats()["runs"] == 2


def test_a_run_that_ended_without_an_answer_is_replaced_and_its_thread_deleted() -> None:
    with FakeRunServer(["deep-json:100", "ok"]) as server:  # over 64 levels: an unreadable answer
        result, started = _run(_settings(server.url))
        deleted = [path for method, path, _ in server.api_requests if method == "DELETE"]
    assert result.attempts == 2 and len(started) == 2
    assert deleted == [f"/threads/{started[0].thread_id}"]  # the first one's, kept for nothing


def test_a_background_run_made_for_nobody_leaves_no_thread() -> None:
    with FakeRunServer(["ok"]) as server:

        async def go() -> RunResult:
            async with RunsClient(_settings(server.url, mode="background")) as runs:
                return await runs.run(BODY)  # a replay's run: nobody records it

        result = asyncio.run(go())
        assert result.ref is not None
        methods = [method for method, _, _ in server.api_requests]
        assert methods == ["GET", "DELETE"] and not server.store.runs  # joined, then deleted


def test_a_rate_limit_that_never_lifts_ends_as_an_error_after_its_retries() -> None:
    with FakeRunServer(["429:0"]) as server:
        settings = RunsSettings(server.url, None, 5.0, 4, 2, 0.01, rate_limit_retries=3)

        async def go() -> RunResult:
            async with RunsClient(settings) as runs:
                return await runs.run(BODY)

        with pytest.raises(RunError) as failed:
            asyncio.run(go())
        assert failed.value.rate_limited and failed.value.http_status == 429
        assert failed.value.attempts == 4 == len(server.requests)  # 1 + rate_limit_retries


def test_each_cut_of_the_runs_in_flight_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with FakeRunServer(["429:0", "ok"]) as server:
        settings = RunsSettings(server.url, None, 5.0, 16, 2, 0.01, rate_limit_retries=3)

        async def go() -> RunResult:
            async with RunsClient(settings) as runs:
                return await runs.run(BODY)

        with caplog.at_level("WARNING", logger="triage.runs"):
            asyncio.run(go())
    cuts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rate limited (")]
    assert cuts == ['rate limited (http: HTTP 429: {"detail": "Too Many Requests"}): runs in flight 10 -> 7']


@pytest.mark.parametrize("mode", ["wait", "background"])
def test_a_slow_run_answered_after_heartbeats_is_one_run_read_whole(mode: str) -> None:
    """The server writes a newline every 0.2 s while the run takes 1.2 s, as LangGraph does
    every 5 s; the client reads through them to the state, and neither retries nor joins again."""
    with FakeRunServer(["delay:1.2"], heartbeat_s=0.2) as server:
        result, started = _run(_settings(server.url, timeout_s=5.0, mode=mode))
        stats = server.stats()
    assert result.attempts == 1 and started == [result.ref]
    assert result.state["messages"][-1]["type"] == "ai"  # the final state, not a heartbeat
    assert stats["runs"] == 1 and stats["joins"] == (1 if mode == "background" else 0)
