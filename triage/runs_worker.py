"""Stateless runs made by a child process, so the HTTP client's CPU is spent on a core of its own.

A backfill against a fast server is CPU-bound on one core: with its runs made in its own process it
went 0.77 times as fast. `RunsWorker` stands in for a `RunsClient`: each call goes down the child's
stdin as a pickled frame; the child makes it on its own RunsClient (its own event loop, retries and
deadlines) and answers on a pipe of its own, tagged with the call's number. A run the server
acknowledges is told to the parent at once, in a frame of its own, so the parent records it before
the result comes; every frame carries the child's current concurrency limit. Both ends are this
package, so pickle is safe. The settings, API key included, travel the same way, never on a command
line.

If the child dies, the calls it held fail as `connect` errors (their messages stay undecided and
the next pass runs them again), and the next call starts a new child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.errors import ErrorKind, RunError, TriageError
from triage.run_settings import RunsSettings
from triage.runs import OnStarted, RunRef, RunResult, RunsClient

_LENGTH = struct.Struct("!I")
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_STOP_GRACE_S = 5.0
# Beyond the child's own deadlines and backoffs: how long a call may wait for a child that hangs.
_ANSWER_SLACK_S = 30.0


# An exception crossing the pipe, as plain values (RunError's keyword fields do not survive pickling,
# and this module's own classes would pickle as `__main__`'s in the child): a RunError's kind, detail,
# HTTP status and attempts, or a TriageError's line with kind None.
_Failure = tuple[ErrorKind | None, str, int | None, int]


def _failure(error: RunError | TriageError) -> _Failure:
    if isinstance(error, RunError):
        return error.kind, error.detail, error.http_status, error.attempts
    return None, str(error), None, 0


def _raised(failure: _Failure) -> Exception:
    kind, detail, http_status, attempts = failure
    if kind is None:
        return TriageError(detail)
    return RunError(kind, detail, http_status=http_status, attempts=attempts)


@dataclass(slots=True)
class _Child:
    process: asyncio.subprocess.Process
    calls: asyncio.StreamWriter
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    on_started: dict[int, OnStarted] = field(default_factory=dict)
    concurrency: int = 0
    gone: bool = False
    reader: asyncio.Task[None] | None = None


class RunsWorker:
    """The RunsClient calls of a backfill (`run`, `release`, `api`, `check_reachable`), made in a
    child process."""

    def __init__(self, settings: RunsSettings) -> None:
        self.settings = settings
        self._child: _Child | None = None
        self._starting = asyncio.Lock()
        self._calls = 0
        # A call may first wait for a connection, held by another call's retries, then make its own.
        all_attempts_s = settings.max_attempts * (settings.timeout_s + settings.backoff_cap_s)
        self._answer_within_s = 2 * all_attempts_s + _ANSWER_SLACK_S

    async def __aenter__(self) -> RunsWorker:
        await self._running_child()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._child is not None:
            await _stop(self._child)

    @property
    def concurrency(self) -> int:
        """The child's concurrency limit, as its last frame said."""
        return self._child.concurrency if self._child is not None else 0

    async def run(
        self, body: dict[str, Any], *, known: RunRef | None = None, on_started: OnStarted | None = None
    ) -> RunResult:
        result: RunResult = await self._call(
            "run", body, known, on_started is not None, on_started=on_started
        )
        return result

    async def release(self, refs: list[RunRef]) -> list[RunRef]:
        released: list[RunRef] = await self._call("release", refs)
        return released

    async def find_runs(self, metadata: dict[str, Any]) -> list[RunRef]:
        found: list[RunRef] = await self._call("find_runs", metadata)
        return found

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return await self._call("api", method, path, body)

    async def check_reachable(self) -> None:
        try:
            await self._call("check_reachable")
        except RunError as error:  # the worker itself failed: still one line, not a traceback
            raise TriageError(f"cannot reach the LangGraph server at {self.settings.url}: {error}") from None

    async def _call(self, name: str, *args: Any, on_started: OnStarted | None = None) -> Any:
        child = await self._running_child()
        self._calls += 1
        call = self._calls
        answer = asyncio.get_running_loop().create_future()
        child.pending[call] = answer
        if on_started is not None:
            child.on_started[call] = on_started
        try:
            child.calls.write(_frame((call, name, args)))
            async with asyncio.timeout(self._answer_within_s):
                return await answer
        except TimeoutError:
            detail = f"the run worker gave no answer in {self._answer_within_s:g} s"
            raise RunError("timeout", detail) from None
        finally:
            child.pending.pop(call, None)
            child.on_started.pop(call, None)

    async def _running_child(self) -> _Child:
        async with self._starting:
            if self._child is None or self._child.gone:
                self._child = await self._start()
            return self._child

    async def _start(self) -> _Child:
        answers_read, answers_write = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # not the working directory's `triage`, if it has one: this very package
                "-m",
                "triage.runs_worker",
                str(answers_write),
                stdin=asyncio.subprocess.PIPE,
                pass_fds=(answers_write,),
                env={**os.environ, "PYTHONPATH": _python_path()},
            )
        finally:
            os.close(answers_write)
        assert process.stdin is not None
        child = _Child(process, process.stdin)
        child.calls.write(_frame(self.settings))
        answers = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(answers), os.fdopen(answers_read, "rb", buffering=0)
        )
        child.reader = asyncio.create_task(_read_answers(child, answers))
        return child


async def _read_answers(child: _Child, answers: asyncio.StreamReader) -> None:
    try:
        while True:
            call, kind, value, child.concurrency = await _read_frame(answers)
            if kind == "started":
                if (on_started := child.on_started.get(call)) is not None:
                    on_started(value)
                continue
            answer = child.pending.get(call)
            if answer is not None and not answer.done():
                if kind == "ok":
                    answer.set_result(value)
                else:
                    answer.set_exception(_raised(value))
    except asyncio.IncompleteReadError:
        child.gone = True  # before any await: from here on, calls start a new child
        status = await child.process.wait()
        failure = RunError("connect", f"the run worker process exited (status {status})")
        for answer in child.pending.values():
            if not answer.done():
                answer.set_exception(failure)


async def _stop(child: _Child) -> None:
    """Close the child's stdin (it finishes nothing more and exits), killing it if it lingers."""
    child.gone = True
    child.calls.close()
    try:
        async with asyncio.timeout(_STOP_GRACE_S):
            await child.process.wait()
    except TimeoutError:
        child.process.kill()
        await child.process.wait()
    if child.reader is not None:
        await child.reader


def _python_path() -> str:
    """This package's root first, then whatever PYTHONPATH the parent had."""
    return os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))


def _frame(value: Any) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    return pickle.loads(await reader.readexactly(length))


async def _serve(answers_fd: int) -> None:
    """The child: make each call on one RunsClient, answer each as it finishes, until stdin closes."""
    loop = asyncio.get_running_loop()
    calls = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(calls), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(answers_fd, "wb", buffering=0)
    )
    answers = asyncio.StreamWriter(transport, protocol, None, loop)
    settings = await _read_frame(calls)
    in_flight: set[asyncio.Task[None]] = set()

    async with RunsClient(settings) as runs:

        def tell(call: int, kind: str, value: Any) -> None:
            answers.write(_frame((call, kind, value, runs.concurrency)))

        async def make(call: int, name: str, args: tuple[Any, ...]) -> Any:
            if name != "run":
                return await getattr(runs, name)(*args)
            body, known, told = args
            on_started = (lambda ref: tell(call, "started", ref)) if told else None
            return await runs.run(body, known=known, on_started=on_started)

        async def answer(call: int, name: str, args: tuple[Any, ...]) -> None:
            try:
                tell(call, "ok", await make(call, name, args))
            except (RunError, TriageError) as error:
                tell(call, "failed", _failure(error))
            except Exception as error:  # a bug: said at once, not left for the parent to wait out
                tell(
                    call,
                    "failed",
                    _failure(TriageError(f"the run worker failed: {type(error).__name__}: {error}")),
                )

        with contextlib.suppress(asyncio.IncompleteReadError):  # stdin closed: the parent is done
            while True:
                call, name, args = await _read_frame(calls)
                task = asyncio.create_task(answer(call, name, args))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        for task in in_flight:
            task.cancel()


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group; the parent decides when this child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # What the client would log (a rate limit's cuts), the parent shows: its progress carries the
    # concurrency of every answer. Only a failure of the child itself is worth its own stderr line.
    logging.getLogger("triage").setLevel(logging.ERROR)
    asyncio.run(_serve(int(sys.argv[1])))
