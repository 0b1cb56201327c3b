"""The stub run server itself behaves like LangGraph where triage and the benchmarks rely on it."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.run_server import FakeRunServer, run_server_process
from tests.support.run_store import Run, TokenBucket, parse_latency, retry_after
from tests.support.watchd import wait_until

BODY = {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hello"}]}}
KEEP = {**BODY, "on_completion": "keep", "metadata": {"uid": 7}}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http


def _ids(answer: httpx.Response) -> tuple[str, str]:
    """(thread id, run id) as the headers of a run name them."""
    location = answer.headers["content-location"]
    assert answer.headers["location"] == f"{location}/join"
    _, threads, thread_id, runs, run_id = location.split("/")
    assert (threads, runs) == ("threads", "runs")
    return thread_id, run_id


def _run(server: FakeRunServer, run_id: str) -> Run:
    run = server.run(run_id)
    assert run is not None, run_id
    return run


def test_a_slow_run_is_named_at_once_and_its_state_follows(client: httpx.Client) -> None:
    with FakeRunServer(["delay:0.6"], heartbeat_s=0.1) as server:
        started = time.monotonic()
        with client.stream("POST", f"{server.url}/runs/wait", json=KEEP) as answer:
            named_after = time.monotonic() - started
            thread_id, run_id = _ids(answer)
            assert answer.headers["transfer-encoding"] == "chunked"
            raw = answer.read()
        done_after = time.monotonic() - started
        assert named_after < 0.4 <= 0.6 <= done_after
        assert raw.startswith(b"\n\n") and raw.lstrip(b"\n").startswith(b"{")  # heartbeats, then the state
        state = json.loads(raw)
        assert [m["type"] for m in state["messages"]] == ["human", "ai"]
        # The ids are real: the kept run is joined to the same state, without running again.
        joined = client.get(f"{server.url}/threads/{thread_id}/runs/{run_id}/join")
        assert joined.status_code == 200 and joined.json() == state
        assert server.runs == 1 and _run(server, run_id).executions == 1


def test_a_quick_run_names_itself_too(client: httpx.Client) -> None:
    with FakeRunServer(["ok", "graph-error"]) as server:
        first = client.post(f"{server.url}/runs/wait", json=BODY)
        second = client.post(f"{server.url}/runs/wait", json=BODY)
        assert first.headers["content-length"] and _ids(first) != _ids(second)
        assert second.json()["__error__"]["error"] == "ValueError"
        assert _run(server, _ids(second)[1]).status == "error"
        # on_completion defaults to delete: the thread is gone with the run, as LangGraph's is.
        thread_id, run_id = _ids(first)
        joined = client.get(f"{server.url}/threads/{thread_id}/runs/{run_id}/join")
        assert joined.status_code == 200 and "404" in joined.json()["__error__"]["message"]
        assert client.get(f"{server.url}/threads/{thread_id}/runs/{run_id}").status_code == 404


def test_a_background_run_is_joined_twice_and_executed_once(client: httpx.Client) -> None:
    with FakeRunServer(["delay:0.3"], heartbeat_s=0.05) as server:
        started = time.monotonic()
        created = client.post(f"{server.url}/runs", json=KEEP)
        assert time.monotonic() - started < 0.25
        run = created.json()
        assert created.status_code == 200 and run["status"] == "pending"
        assert run["assistant_id"] == "agent" and run["metadata"] == {"uid": 7}
        record = f"{server.url}/threads/{run['thread_id']}/runs/{run['run_id']}"
        assert client.get(record).json()["status"] == "running"
        first = client.get(f"{record}/join")  # waits for the run, streaming newlines meanwhile
        second = client.get(f"{record}/join")
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json() and first.json()["messages"][-1]["type"] == "ai"
        assert client.get(record).json()["status"] == "success"
        assert _run(server, run["run_id"]).executions == 1
        assert server.stats() | {"requests": 0} == {
            "runs": 1,
            "rejected": 0,
            "requests": 0,
            "connections": 1,
            "in_flight": 0,
            "max_in_flight": 1,
            "joins": 2,
        }


def test_background_runs_end_as_their_behaviour_says(client: httpx.Client) -> None:
    with FakeRunServer(["500", "no-ai", "503-retry-after:1", "delay:0.3"], heartbeat_s=0.05) as server:
        failed = client.post(f"{server.url}/runs", json=KEEP).json()
        no_ai = client.post(f"{server.url}/runs", json=KEEP).json()
        refused = client.post(f"{server.url}/runs", json=KEEP)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        deleted = client.post(f"{server.url}/runs", json=BODY).json()  # on_completion: delete
        assert deleted["kwargs"]["temporary"] is True

        def join(run: dict[str, str]) -> httpx.Response:
            return client.get(f"{server.url}/threads/{run['thread_id']}/runs/{run['run_id']}/join")

        assert join(failed).json()["__error__"]["error"] == "InternalServerError"
        assert join(no_ai).json()["messages"][-1]["type"] == "human"
        # Joined while it runs, a delete run's thread is gone by the time it is done.
        assert "404" in join(deleted).json()["__error__"]["message"]
        assert server.runs == 3 and server.in_flight == 0


def test_many_background_runs_execute_at_once(client: httpx.Client) -> None:
    with FakeRunServer(["delay:0.3"]) as server:
        for _ in range(3):
            client.post(f"{server.url}/runs", json=BODY)
        wait_until(lambda: server.in_flight == 0, 5, "the runs to end")
        assert server.stats()["max_in_flight"] == 3 and server.runs == 3


def test_joining_what_it_never_had_is_404(client: httpx.Client) -> None:
    with FakeRunServer() as server:
        thread_id, _ = _ids(client.post(f"{server.url}/runs/wait", json=KEEP))
        unknown_run = client.get(f"{server.url}/threads/{thread_id}/runs/nope/join")
        unknown_thread = client.get(f"{server.url}/threads/nope/runs/nope/join")
        assert unknown_run.status_code == unknown_thread.status_code == 404
        assert unknown_run.json() == {"detail": "Run nope not found"}
        assert unknown_thread.json() == {"detail": "Thread nope not found"}
        assert server.stats()["joins"] == 2 and server.runs == 1


def test_deleting_a_thread_forgets_its_runs(client: httpx.Client) -> None:
    with FakeRunServer() as server:
        thread_id, run_id = _ids(client.post(f"{server.url}/runs/wait", json=KEEP))
        assert client.get(f"{server.url}/threads/{thread_id}/runs/{run_id}").json()["status"] == "success"
        assert client.delete(f"{server.url}/threads/{thread_id}").status_code == 204
        assert client.delete(f"{server.url}/threads/{thread_id}").status_code == 404
        assert client.get(f"{server.url}/threads/{thread_id}/runs/{run_id}/join").status_code == 404
        assert client.get(f"{server.url}/threads/{thread_id}/runs/{run_id}").status_code == 404
        routed = client.post(f"{server.url}/threads", json={"thread_id": "t1"}).json()["thread_id"]
        assert client.delete(f"{server.url}/threads/{routed}").status_code == 204
        assert client.get(f"{server.url}/threads/{routed}").status_code == 404


def test_past_the_rate_a_429_says_how_long_to_wait_and_that_is_enough(client: httpx.Client) -> None:
    with FakeRunServer(["ok", "ok", "422"], rate_limit=(5.0, 2)) as server:
        assert [client.post(f"{server.url}/runs/wait", json=BODY).status_code for _ in range(2)] == [200, 200]
        refused = client.post(f"{server.url}/runs/wait", json=BODY)
        assert refused.status_code == 429
        wait_s = float(refused.headers["retry-after"])
        assert 0.0 < wait_s <= 0.2
        time.sleep(wait_s)  # honouring it, as a client must
        # Through, and a refused request took no behaviour: this is the script's third answer.
        assert client.post(f"{server.url}/runs/wait", json=BODY).status_code == 422
        refused = client.post(f"{server.url}/runs", json=BODY)
        assert refused.status_code == 429
        assert server.stats()["rejected"] == 2 and server.runs == 2


def test_the_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(2.0, 3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait_s = bucket.take()
    assert wait_s == pytest.approx(0.5)
    now[0] += float(retry_after(wait_s))
    assert bucket.take() == 0.0 and bucket.take() > 0
    assert [retry_after(s) for s in (0.5, 0.01, 0.51, 2.0)] == ["0.5", "0.1", "0.6", "2.0"]


def test_a_rate_limited_run_can_fail_in_the_graph_instead(client: httpx.Client) -> None:
    with FakeRunServer(rate_limit=(0.5, 1), rate_limit_mode="graph-error") as server:
        assert "__error__" not in client.post(f"{server.url}/runs/wait", json=BODY).json()
        limited = client.post(f"{server.url}/runs/wait", json=BODY)
        assert limited.status_code == 200 and "retry-after" not in limited.headers
        assert limited.json() == {
            "__error__": {
                "error": "RateLimitError",
                "message": "Error code: 429 - Rate limit reached for requests",
            }
        }
        _ids(limited)  # a run, named as any other
        run = client.post(f"{server.url}/runs", json=KEEP).json()
        joined = client.get(f"{server.url}/threads/{run['thread_id']}/runs/{run['run_id']}/join").json()
        assert joined["__error__"]["error"] == "RateLimitError"
        assert server.stats()["rejected"] == 2 and server.runs == 1


def test_lognormal_latencies_keep_to_their_median_and_max() -> None:
    draw = parse_latency("lognormal:median=2,sigma=0.8,max=5", seed=1)
    draws = [draw() for _ in range(4000)]
    assert max(draws) == 5.0 and min(draws) > 0
    assert 1.8 < statistics.median(draws) < 2.2
    again = parse_latency("lognormal:median=2,sigma=0.8,max=5", seed=1)
    assert [again() for _ in range(10)] == draws[:10]  # seeded: the same run to run
    assert parse_latency("0.25")() == 0.25
    for bad in ("lognormal:sigma=1", "normal:median=1", "lognormal:median=1,mean=2", "-1", "fast"):
        with pytest.raises(ValueError):
            parse_latency(bad)


def test_the_process_takes_the_same_options(client: httpx.Client) -> None:
    latency = "lognormal:median=0.02,sigma=0.5,max=0.05"
    with run_server_process(latency=latency, rate_limit=(1.0, 2), heartbeat_s=0.01) as stub:
        answers = [client.post(f"{stub.url}/runs/wait", json=BODY) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        stats = stub.stats()
    assert stats["runs"] == 2 and stats["rejected"] == 1 and stats["max_in_flight"] == 1


def test_a_body_langgraph_would_refuse_gets_its_422_and_is_kept(client: httpx.Client) -> None:
    with FakeRunServer() as server:
        refused = client.post(f"{server.url}/runs/wait", json={**BODY, "on_completion": "soon"})
        assert refused.status_code == 422 and "on_completion" in refused.json()["detail"]
        missing = client.post(f"{server.url}/threads/search", json={"limit": "ten"})
        assert missing.status_code == 422
        assert client.post(f"{server.url}/runs/wait", json=KEEP).status_code == 200
        assert len(server.invalid) == 2 and server.stats()["runs"] == 1


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(client: httpx.Client) -> None:
    # uvicorn's 5 s (IDLE_TIMEOUT_S, the default) shortened, so the fast tier does not wait it out.
    with FakeRunServer(idle_timeout_s=0.5) as server:
        assert client.get(f"{server.url}/ok").status_code == 200
        waited = wait_until(lambda: server.idle_closed == 1, 10, "the idle connection to be closed")
        assert client.get(f"{server.url}/ok").status_code == 200  # a new connection, as after uvicorn
        assert server.connections == 2 and waited > 0.4
