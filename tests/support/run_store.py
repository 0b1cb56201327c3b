"""The stub run server's bookkeeping: its runs and their threads, its rate limit, its latencies.

Kept apart from the protocol in ``run_server.py``; nothing here does I/O or touches the event loop.

- ``RunStore`` remembers each run by its id, with its thread, status and (``on_completion: "keep"``)
  its final state, as LangGraph does: a run can be joined while it runs and after it finished.
  A ``delete`` run leaves a tombstone (its thread is gone, a join answers an ``__error__`` 404);
  the newest ``MAX_TOMBSTONES`` are kept, so a benchmark's millions of runs cost bounded memory.
- ``TokenBucket``: ``rate`` runs a second, bursts of ``burst``.
- ``parse_latency("lognormal:median=2,sigma=0.8,max=30", seed)``: how long each run takes.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Body = dict[str, Any]
MAX_TOMBSTONES = 10_000


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(slots=True, eq=False)
class Run:
    """One run: ``pending`` (created), ``running``, then ``success`` or ``error`` (``__error__`` state)."""

    run_id: str
    thread_id: str
    assistant_id: Any
    metadata: Body
    kwargs: Body
    created_at: str
    keep: bool  # on_completion "keep": its thread and final state outlive it
    status: str = "pending"
    updated_at: str = ""
    executions: int = 0  # how often it was executed: once, however often it is joined
    result: bytes | None = None  # the final state, once done (kept runs only)
    gone: bool = False  # its thread is deleted: a join answers the `__error__` 404
    waiters: list[Callable[[bytes], None]] = field(default_factory=list)  # called with the final state

    @property
    def path(self) -> str:
        return f"/threads/{self.thread_id}/runs/{self.run_id}"

    @property
    def done(self) -> bool:
        return self.status in ("success", "error")

    def record(self) -> Body:
        """The run as LangGraph lists it."""
        return {
            "run_id": self.run_id,
            "thread_id": self.thread_id,
            "assistant_id": self.assistant_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at or self.created_at,
            "status": self.status,
            "metadata": self.metadata,
            "kwargs": self.kwargs,
            "multitask_strategy": "reject",
        }

    def joined(self) -> bytes:
        """What a join answers once the run is done: its state, or LangGraph's 404 for a deleted thread."""
        if self.result is not None and not self.gone:
            return self.result
        detail = f"404: Thread {self.thread_id} not found"
        return json.dumps({"__error__": {"error": "HTTPException", "message": detail}}).encode()


class RunStore:
    """Runs by id (tombstones included) and the threads still holding some."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.threads: dict[str, list[str]] = {}  # live thread id -> its run ids
        self._tombstones: deque[str] = deque()

    def create(self, body: Body) -> Run:
        keep = body.get("on_completion") == "keep"  # LangGraph's default for a stateless run is delete
        kwargs = {"input": body.get("input"), "config": body.get("config"), "temporary": not keep}
        metadata = body.get("metadata")
        run = Run(
            run_id=str(uuid.uuid4()),
            thread_id=str(uuid.uuid4()),
            assistant_id=body.get("assistant_id"),
            metadata=metadata if isinstance(metadata, dict) else {},
            kwargs={**kwargs, "on_completion": "keep" if keep else "delete"},
            created_at=_now(),
            keep=keep,
        )
        self.runs[run.run_id] = run
        self.threads[run.thread_id] = [run.run_id]
        return run

    def get(self, thread_id: str, run_id: str) -> Run | None:
        run = self.runs.get(run_id)
        return run if run is not None and run.thread_id == thread_id else None

    def knows_thread(self, thread_id: str) -> bool:
        return thread_id in self.threads

    def start(self, run: Run) -> None:
        run.executions += 1
        run.status, run.updated_at = "running", _now()

    def finish(self, run: Run, state: bytes) -> None:
        """Done with `state`; a `delete` run's thread goes, leaving a tombstone."""
        run.status = "error" if state.startswith(b'{"__error__"') else "success"
        run.updated_at = _now()
        if run.keep and not run.gone:
            run.result = state
            return
        run.gone, run.kwargs = True, {}  # the input is not kept for a tombstone
        self.threads.pop(run.thread_id, None)
        if self.runs.get(run.run_id) is run:
            self._tombstones.append(run.run_id)
            if len(self._tombstones) > MAX_TOMBSTONES:
                self.runs.pop(self._tombstones.popleft(), None)

    def delete_thread(self, thread_id: str) -> bool:
        """Forget a live thread and its runs (a join of one still running then gets the 404 state)."""
        run_ids = self.threads.pop(thread_id, None)
        for run_id in run_ids or ():
            if (run := self.runs.pop(run_id, None)) is not None:
                run.gone, run.result = True, None
        return run_ids is not None


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst`` (full at the start); a run takes one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, not {rate}, {burst}")
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self.tokens, self.stamp = self.burst, clock()

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one is there."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1 - 1e-9:  # a client that waited exactly as told gets in despite rounding
            self.tokens = max(0.0, self.tokens - 1)
            return 0.0
        return (1 - self.tokens) / self.rate


def retry_after(wait_s: float) -> str:
    """A Retry-After of one decimal, rounded up: honouring it is always enough."""
    return f"{math.ceil(wait_s * 10) / 10:.1f}"


def parse_latency(spec: str, seed: int = 0) -> Callable[[], float]:
    """Seconds each run takes: ``0.1`` (fixed) or ``lognormal:median=2,sigma=0.8,max=30`` (seeded)."""
    kind, _, params = spec.partition(":")
    if not params:
        fixed = float(kind)
        if not fixed >= 0:
            raise ValueError(f"latency must be >= 0, not {spec!r}")
        return lambda: fixed
    try:
        values = {name.strip(): float(value) for name, value in (p.split("=") for p in params.split(","))}
    except ValueError:
        raise ValueError(f"bad latency {spec!r}: want lognormal:median=S,sigma=X,max=S") from None
    if kind != "lognormal" or "median" not in values or not values.keys() <= {"median", "sigma", "max"}:
        raise ValueError(f"bad latency {spec!r}: want lognormal:median=S,sigma=X,max=S")
    mu, sigma, cap = math.log(values["median"]), values.get("sigma", 0.5), values.get("max", math.inf)
    rng = random.Random(seed)
    return lambda: min(cap, rng.lognormvariate(mu, sigma))
