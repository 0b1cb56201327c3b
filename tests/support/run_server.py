"""The stub LangGraph run server of the tests and the benchmarks: one asyncio HTTP/1.1 server.

Real sockets on 127.0.0.1, a hand-written keep-alive protocol (stdlib only), so a request can be
answered normally, slowly, or with raw misbehaviour. It runs two ways:

- in the test's process, on a thread of its own: ``with FakeRunServer([...]) as server:``; what it
  received is then in ``server.requests``, ``server.paths`` and ``server.headers``;
- in a process of its own, for benchmarks (its own GIL, no recording):
  ``python -m tests.support.run_server --latency 0.1`` prints ``PORT n`` and serves until its stdin
  closes; ``run_server_process()`` starts it and reads its counters from ``GET /_stats``. Its flags
  (``--latency``, ``--seed``, ``--rate-limit``, ``--rate-limit-mode``, ``--heartbeat``) are the
  constructor's options.

Endpoints:

- ``GET /ok``: the health check, always ``{"ok": true}``.
- ``GET /_stats``: the server's counters (not recorded): ``runs`` (executed), ``rejected``
  (rate-limited answers), ``requests``, ``connections``, ``in_flight`` and ``max_in_flight`` (runs
  executing at once, now and at most), ``joins``. ``server.stats()`` is the same.
- ``POST /runs/wait`` (and any other path not named here) takes the next behaviour of the script.
  A behaviour that is a run (``ok``, ``ok-json``, ``delay``, ``graph-error``, ``no-ai``,
  ``deep-json``, ``drip``) is remembered (``server.store``) and answered as LangGraph does: the
  status line and ``location: /threads/{tid}/runs/{rid}/join``, ``content-location:
  /threads/{tid}/runs/{rid}`` at once, then, if the run takes time, a chunked body of a ``\\n``
  every ``heartbeat_s`` (5 s) and the final state. A client that goes away does not stop the run.
- ``POST /runs``: a background run. It takes the next behaviour, answers at once 200 with the run
  (``status: pending``), then executes it; ``500`` makes it a run ending in an ``__error__`` state;
  behaviours that are no run (``503-retry-after``, ``close``, ...) answer as they would above.
- ``GET /threads/{tid}/runs/{rid}/join``: the run's final state once it is done (streamed like a slow
  ``/runs/wait`` meanwhile); never executes it again. Under ``on_completion: "delete"`` (the default)
  the thread is gone once the run is: 200 with an ``__error__`` 404, as LangGraph answers. A run or
  thread it never had: 404 ``{"detail"}`` (so are the runs ``POST /threads/{id}/runs`` only records).
- ``GET /threads/{tid}/runs/{rid}``: the run record, ``status`` pending, running, success or error.
- ``DELETE /threads/{tid}``: 204 (404 if unknown); forgets the thread and its runs.
- the rest of ``/threads``, in memory, as LangGraph has it: ``POST /threads`` (``if_exists``),
  ``GET /threads/{id}``, ``GET /threads/{id}/runs`` and ``POST /threads/{id}/runs`` (a run that
  is only recorded: ``server.threads``). Each takes the next behaviour of ``api_behaviours``.

Behaviours: ``ok``, ``ok-json:<raw>`` (AI content is ``<raw>``), ``500``, ``503-retry-after:<s>``,
``429:<s>``, ``422``, ``hang`` (silent until closed), ``drip`` (200 headers, then a chunked
``b"\\n"`` every 0.5 s until closed), ``close`` (close without a response), ``garbage``
(non-JSON body), ``graph-error`` (200 ``{"__error__": ...}``), ``no-ai`` (state ends with
the human message), ``delay:<s>`` (``ok`` after ``<s>`` seconds), ``huge`` (200 declaring no
length, then junk until closed), ``huge-declared`` (a 1 GB Content-Length, then junk until closed),
``bad-utf8`` (a JSON state with invalid UTF-8 in it), ``deep-json:<n>`` (a state holding ``n``
nested lists), ``redirect:<url>`` (307 to ``<url>``), ``html`` (200 ``text/html`` sign-in page).

A script is a list (its last entry repeats) or ``f(index, body) -> behaviour``, called on the
server's thread. ``ok`` answers after ``latency_s`` (0 by default), or after a draw from ``latency``
(``"lognormal:median=2,sigma=0.8,max=30"``, seeded by ``seed``). ``rate_limit=(runs_per_s, burst)``
is a token bucket on run creation: past it, 429 with a ``Retry-After`` that is enough to wait
(``rate_limit_mode="http"``), or (``"graph-error"``) a run ending at once in a ``RateLimitError``
state, as a model provider's 429 surfaces through LangGraph; a rejected request takes no behaviour.
With ``api_key``, a request other than ``GET /ok`` without that ``x-api-key`` gets a 401. A body
the installed LangGraph server would refuse (its published schemas: tests.support.run_schemas)
gets its 422, and the reason is kept in ``server.invalid``. A kept-alive connection idle for
``idle_timeout_s`` (5 s, uvicorn's default) is closed, as uvicorn closes it.
``gone_after_health_check`` answers ``GET /ok`` and then refuses every connection (``go_away()``
does that at any time): a server that went away.

    with FakeRunServer(["503-retry-after:0", "ok"]) as srv:
        httpx.post(f"{srv.url}/runs/wait", json=body)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import select
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

from tests.support.on_a_thread import ServedOnAThread
from tests.support.run_schemas import schema_problem
from tests.support.run_store import Body, Run, RunStore, TokenBucket, parse_latency, retry_after

Script = Iterable[str] | Callable[[int, Body], str]
_Reply = tuple[int, Body | bytes | list[Any], dict[str, str]]

DECISION = '{"decision": "new-task", "title": "T", "reason": "r", "confidence": 0.9}'
BEHAVIOURS = frozenset({"ok", "ok-json", "ok-usage", "500", "503-retry-after", "429", "422", "hang", "delay"})
BEHAVIOURS |= {"drip", "close", "garbage", "graph-error", "no-ai"}
BEHAVIOURS |= {"huge", "huge-declared", "bad-utf8", "deep-json", "redirect", "html"}
RUN_BEHAVIOURS = frozenset(
    {"ok", "ok-json", "ok-usage", "delay", "graph-error", "no-ai", "deep-json", "drip"}
)
RateLimitMode = Literal["http", "graph-error"]
HEARTBEAT_S = 5.0  # LangGraph's newline while a run's answer is awaited
IDLE_TIMEOUT_S = 5.0  # uvicorn's keep-alive timeout, under `langgraph dev` and deployments
DRIP_S = 0.5
JUNK = b"x" * 65536
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
START_TIMEOUT_S = 20.0
MAX_LIFETIME_S = 3600.0
ROOT = Path(__file__).resolve().parents[2]  # a server process outliving its benchmark ends by itself
_SIGN_IN = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>...</form></body></html>"
_NOT_FOUND: _Reply = (404, {"detail": "Not Found"}, {})
_CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
_NEWLINE_CHUNK = b"1\r\n\n\r\n"
_RUN_FAILED = b'{"__error__": {"error": "InternalServerError", "message": "fake internal error"}}'
_RATE_LIMITED = json.dumps(
    {"__error__": {"error": "RateLimitError", "message": "Error code: 429 - Rate limit reached for requests"}}
).encode()


@dataclass(slots=True)
class Request:
    method: str
    path: str  # without the query
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    keep_alive: bool


def _user_content(body: Body) -> Any:
    """The content of the last user/human message in a ``/runs/wait`` body."""
    inp = body.get("input")
    messages = inp.get("messages") if isinstance(inp, dict) else None
    for msg in reversed(messages if isinstance(messages, list) else []):
        if isinstance(msg, dict) and msg.get("role", msg.get("type")) in ("user", "human"):
            return msg.get("content", "")
    return ""


def _as_script(behaviours: Script) -> Callable[[int, Body], str]:
    if callable(behaviours):
        return behaviours
    script = list(behaviours)
    if not script:
        raise ValueError("behaviours must not be empty")
    if bad := [b for b in script if b.partition(":")[0] not in BEHAVIOURS]:
        raise ValueError(f"unknown behaviours: {bad}")
    return lambda i, _body: script[min(i, len(script) - 1)]


def response(status: int, body: Body | bytes | list[Any], extra: dict[str, str] | None = None) -> bytes:
    """A complete response with Content-Length (``extra`` may replace the content-type)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json", **extra} if extra else _JSON
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = f"HTTP/1.1 {status} {_PHRASES[status]}\r\ncontent-length: {len(data)}\r\n{lines}\r\n"
    return head.encode("latin-1") + data


_JSON = {"content-type": "application/json"}
_PHRASES = {status.value: status.phrase for status in HTTPStatus}


class FakeRunServer(ServedOnAThread):
    """A stub run server; ``behaviours`` is a script (last entry repeats) or ``f(index, body)``."""

    thread_name = "run-server"

    def __init__(
        self,
        behaviours: Script = ("ok",),
        *,
        tls: ssl.SSLContext | None = None,
        idle_timeout_s: float | None = IDLE_TIMEOUT_S,
        latency_s: float = 0.0,
        echo_prompt: bool = True,
        record: bool = True,
        api_behaviours: Iterable[str] = ("ok",),
        gone_after_health_check: bool = False,
        latency: str | None = None,
        seed: int = 0,
        rate_limit: tuple[float, int] | None = None,
        rate_limit_mode: RateLimitMode = "http",
        heartbeat_s: float = HEARTBEAT_S,
        api_key: str | None = None,
    ) -> None:
        self._pick = _as_script(behaviours)
        self._api_pick = _as_script(api_behaviours)
        self.tls = tls  # a server-side context: serve https
        self.idle_timeout_s = idle_timeout_s  # close a kept-alive connection idle this long
        self.latency_s = latency_s  # before each `ok` answer
        # A distribution ("lognormal:median=2,sigma=0.8,max=30") replaces the fixed latency_s.
        self._latency = parse_latency(latency or repr(latency_s), seed)
        self._bucket = TokenBucket(*rate_limit) if rate_limit is not None else None
        if rate_limit_mode not in ("http", "graph-error"):
            raise ValueError(f"rate_limit_mode is http or graph-error, not {rate_limit_mode!r}")
        self.rate_limit_mode = rate_limit_mode
        self.heartbeat_s = heartbeat_s  # between the newlines of an answer still awaited
        self.echo_prompt = echo_prompt  # the state's human message repeats the prompt, as LangGraph's does
        self.record = record  # keep what was received (a benchmark's server keeps only counts)
        # Answer `GET /ok`, then refuse connections: a server gone as soon as triage checked it.
        self.gone_after_health_check = gone_after_health_check
        # Like a LangGraph Platform deployment: any request but `GET /ok` needs this x-api-key (401).
        self.api_key = api_key
        self.url = ""
        self.requests: list[Body] = []  # scripted requests' JSON bodies (``{}`` if not a JSON object)
        self.paths: list[str] = []  # paths of every request, ``GET /ok`` included
        self.headers: list[dict[str, str]] = []  # request headers (lower-case names), ``/ok`` included
        self.api_requests: list[tuple[str, str, Body]] = []  # (method, path, body) of /threads calls
        self.threads: dict[str, Body] = {}  # thread id -> the thread, its runs under "runs"
        self.connections = 0  # connections accepted (TLS: handshakes completed)
        self.idle_closed = 0  # connections it closed for being idle
        self.store = RunStore()  # the runs (by id, with their status and executions) and their threads
        self.runs = 0  # runs executed (a retry counts again; a join does not)
        self.rejected = 0  # run creations refused by the rate limit
        self.in_flight = 0  # runs executing now
        self.max_in_flight = 0
        self.joins = 0  # GET .../join received
        self.invalid: list[str] = []  # why bodies LangGraph would refuse were refused (422)
        self.received = 0  # requests of any kind
        self._scripted = 0
        self._api_calls = 0
        self._open: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    # ----------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1, in the running loop."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        loop.set_exception_handler(_quiet_exceptions)
        self._server = await loop.create_server(
            lambda: _Connection(self), "127.0.0.1", 0, ssl=self.tls, backlog=1024
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls is not None else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Stop accepting and cut every open connection (waking hang, drip and delay)."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._open):
            connection.abort()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def go_away(self) -> None:
        """From any thread: stop listening (connecting is refused) and close every connection."""
        assert self._loop is not None, "not serving"
        self._loop.call_soon_threadsafe(self._go_away)

    def _go_away(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._open):
            connection.close()  # after what was written is sent

    def stats(self) -> dict[str, int]:
        return {
            "runs": self.runs,
            "rejected": self.rejected,
            "requests": self.received,
            "connections": self.connections,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "joins": self.joins,
        }

    def run(self, run_id: str) -> Run | None:
        """A run it remembers (``executions``, ``status``, ``record()``), from any thread."""
        return self.store.runs.get(run_id)

    # ----------------------------------------------------------------------- answers

    def answer(self, connection: _Connection, request: Request) -> None:
        """Answer one request on `connection` now, later, or never (a fault)."""
        self.received += 1
        method, path = request.method, request.path
        if method == "GET" and path == "/_stats":
            connection.reply(response(200, self.stats()), request)
            return
        if self.record:
            self.paths.append(path)
            self.headers.append(request.headers)
        if method == "GET" and path == "/ok":
            connection.reply(response(200, {"ok": True}), request)
            if self.gone_after_health_check:
                self._go_away()
            return
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            connection.reply(response(401, {"detail": "Invalid API key"}), request)
            return
        if (problem := schema_problem(method, path, request.body)) is not None:
            self.invalid.append(problem)
            connection.reply(response(422, {"detail": problem}), request)
            return
        body = _json_object(request.body)
        if path == "/threads" or path.startswith("/threads/"):
            if self.record:
                self.api_requests.append((method, path, body))
            if self._runs_api(connection, request, path.strip("/").split("/")):
                return
            index, self._api_calls = self._api_calls, self._api_calls + 1
            kind, _, arg = self._api_pick(index, body).partition(":")
            if kind == "ok":
                connection.reply(self._threads_api(method, path, body), request)
            else:
                self._behave(connection, request, body, kind, arg)
            return
        if self.record:
            self.requests.append(body)
        background = method == "POST" and path == "/runs"
        if self._bucket is not None and (wait_s := self._bucket.take()) > 0:
            self.rejected += 1
            if self.rate_limit_mode == "http":
                reply = response(429, {"detail": "Too Many Requests"}, {"retry-after": retry_after(wait_s)})
                connection.reply(reply, request)
            else:  # the model provider refused: the run itself fails at once
                self._start(connection, request, body, (_RATE_LIMITED, 0.0), background, counted=False)
            return
        index, self._scripted = self._scripted, self._scripted + 1
        kind, _, arg = self._pick(index, body).partition(":")
        if kind in RUN_BEHAVIOURS or (background and kind == "500"):
            self._start(connection, request, body, self._outcome(kind, arg, body), background)
        else:
            self._behave(connection, request, body, kind, arg)

    # ----------------------------------------------------------------------- runs

    def _outcome(self, kind: str, arg: str, body: Body) -> tuple[bytes | None, float]:
        """A run's final state (None: it never ends) and how long it takes."""
        if kind == "ok":
            return self._final_state(body), self._latency()
        if kind == "ok-json":
            return self._final_state(body, arg), 0.0
        if kind == "ok-usage":  # "ok-usage:IN,OUT": the model reports its tokens, as LangChain does
            given, made = (int(n) for n in arg.split(","))
            usage = {"input_tokens": given, "output_tokens": made, "total_tokens": given + made}
            return self._final_state(body, usage=usage), 0.0
        if kind == "delay":
            return self._final_state(body), float(arg)
        if kind == "drip":
            return None, 0.0
        if kind == "500":
            return _RUN_FAILED, 0.0
        canned = _canned(kind, arg, body)  # graph-error, no-ai, deep-json: 200 with a state
        assert canned is not None, kind
        state = canned[1]
        return (state if isinstance(state, bytes) else json.dumps(state).encode()), 0.0

    def _start(
        self,
        connection: _Connection,
        request: Request,
        body: Body,
        outcome: tuple[bytes | None, float],
        background: bool,
        *,
        counted: bool = True,
    ) -> None:
        """Create and execute a run; answer with it now (``/runs``) or with its state (``/runs/wait``)."""
        run = self.store.create(body)
        pending = response(200, run.record(), {"content-location": run.path}) if background else b""
        state, seconds = outcome
        self._execute(run, state, seconds, counted)
        if background:
            connection.reply(pending, request)
        elif state is not None and run.done:  # the hot path of the benchmarks: one write
            connection.reply(_run_head(run, len(state)) + state, request)
        elif state is None:  # drip: a run that never ends
            connection.stream(_run_head(run, None) + _NEWLINE_CHUNK, DRIP_S)
        else:  # named at once, the state later: as LangGraph answers a slow run
            connection.stream(_run_head(run, None), self.heartbeat_s)
            run.waiters.append(lambda final: connection.end_stream(final, request))

    def _execute(self, run: Run, state: bytes | None, seconds: float, counted: bool) -> None:
        """Run it: done now, after `seconds`, or (no state) never, whoever waits for it."""
        self.runs += counted
        self.store.start(run)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if state is None:
            return
        if seconds > 0:
            asyncio.get_running_loop().call_later(seconds, self._finish, run, state)
        else:
            self._finish(run, state)

    def _finish(self, run: Run, state: bytes) -> None:
        self.in_flight -= 1
        self.store.finish(run, state)
        waiters, run.waiters = run.waiters, []
        for waiter in waiters:
            waiter(state)

    def _runs_api(self, connection: _Connection, request: Request, parts: list[str]) -> bool:
        """Join, read or delete what runs left; False for the rest of the threads API."""
        method = request.method
        if method == "GET" and len(parts) == 5 and parts[2] == "runs" and parts[4] == "join":
            self._join(connection, request, parts[1], parts[3])
        elif method == "GET" and len(parts) == 4 and parts[2] == "runs":
            run = self.store.get(parts[1], parts[3])
            recorded = [r for r in self.runs_on(parts[1]) if r["run_id"] == parts[3]]
            if run is not None and not run.gone:
                connection.reply(response(200, run.record()), request)
            elif recorded:
                connection.reply(response(200, recorded[0]), request)
            else:
                connection.reply(response(404, {"detail": f"Run {parts[3]} not found"}), request)
        elif method == "DELETE" and len(parts) == 2:
            deleted = self.store.delete_thread(parts[1])
            deleted = self.threads.pop(parts[1], None) is not None or deleted
            gone = b"HTTP/1.1 204 No Content\r\n\r\n"  # no length: a 204 has no body
            connection.reply(
                gone if deleted else response(404, {"detail": f"Thread {parts[1]} not found"}), request
            )
        else:
            return False
        return True

    def _join(self, connection: _Connection, request: Request, thread_id: str, run_id: str) -> None:
        """The run's final state, when it is done: waited for, never executed again."""
        self.joins += 1
        run = self.store.get(thread_id, run_id)
        if run is None:
            known = self.store.knows_thread(thread_id) or thread_id in self.threads
            detail = f"Run {run_id} not found" if known else f"Thread {thread_id} not found"
            connection.reply(response(404, {"detail": detail}), request)
        elif run.done:
            connection.reply(response(200, run.joined()), request)
        else:
            connection.stream(_CHUNKED, self.heartbeat_s)
            run.waiters.append(lambda _final: connection.end_stream(run.joined(), request))

    # ----------------------------------------------------------------------- other answers

    def _behave(self, connection: _Connection, request: Request, body: Body, kind: str, arg: str) -> None:
        """A behaviour that is no run (or any behaviour of the threads API)."""
        if kind == "ok":
            connection.reply(response(200, self._final_state(body)), request)
        elif kind == "ok-json":
            connection.reply(response(200, self._final_state(body, arg)), request)
        elif kind == "delay":
            connection.later(
                float(arg), lambda: connection.reply(response(200, self._final_state(body)), request)
            )
        elif (canned := _canned(kind, arg, body)) is not None:
            connection.reply(response(*canned), request)
        elif kind == "hang":
            pass  # the connection stays busy until the client or the server's stop closes it
        elif kind == "drip":
            connection.stream(_CHUNKED + _NEWLINE_CHUNK, DRIP_S)
        elif kind in ("huge", "huge-declared"):
            connection.flood(kind == "huge-declared")
        elif kind == "close":
            connection.close()
        else:
            connection.close(response(500, {"detail": f"fake server: unknown behaviour {kind!r}"}))

    def _final_state(self, body: Body, content: str = DECISION, usage: Body | None = None) -> bytes:
        """A LangGraph-like final state: the human message (the prompt), then the AI's answer."""
        human = {"type": "human", "content": _user_content(body) if self.echo_prompt else "...", "id": "h1"}
        ai = {"type": "ai", "content": content, "id": "a1", "tool_calls": [], "usage_metadata": usage}
        return json.dumps({"messages": [human, ai]}).encode()

    def _threads_api(self, method: str, path: str, body: Body) -> bytes:
        """The part of LangGraph's threads API that routing uses, in memory."""
        parts = path.strip("/").split("/")
        now = datetime.now(UTC).isoformat()
        if parts == ["threads"] and method == "POST":
            thread_id = str(body.get("thread_id") or uuid.uuid4())
            if thread_id in self.threads:
                if body.get("if_exists") == "do_nothing":
                    return response(200, _public(self.threads[thread_id]))
                return response(409, {"detail": f"Thread {thread_id} already exists"})
            created: Body = {"thread_id": thread_id, "metadata": body.get("metadata") or {}}
            self.threads[thread_id] = {**created, "created_at": now, "status": "idle", "runs": []}
            return response(200, _public(self.threads[thread_id]))
        thread = self.threads.get(parts[1]) if len(parts) >= 2 else None
        if thread is None:
            return response(*_NOT_FOUND)
        if len(parts) == 2 and method == "GET":
            return response(200, _public(thread))
        if parts[2:] == ["runs"] and method == "GET":
            return response(200, list(reversed(thread["runs"])))  # newest first, as LangGraph lists them
        if parts[2:] == ["runs"] and method == "POST":
            run = {
                "run_id": str(uuid.uuid4()),
                "thread_id": thread["thread_id"],
                "assistant_id": body.get("assistant_id"),
                "metadata": body.get("metadata") or {},
                "multitask_strategy": body.get("multitask_strategy"),
                "kwargs": {"input": body.get("input")},
                "status": "pending",
                "created_at": now,
            }
            thread["runs"].append(run)
            return response(200, run)
        return response(*_NOT_FOUND)

    def runs_on(self, thread_id: str) -> list[Body]:
        """The runs started on a thread, oldest first."""
        return list(self.threads.get(thread_id, {}).get("runs", []))


def _run_head(run: Run, length: int | None) -> bytes:
    """A run's 200 head, naming it; no length: chunked, the state comes later.

    Written out by hand: this is the benchmarks' hot path, thousands of times a second.
    """
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    return (
        f"HTTP/1.1 200 OK\r\n{framing}\r\ncontent-type: application/json\r\n"
        f"location: {run.path}/join\r\ncontent-location: {run.path}\r\n\r\n"
    ).encode("latin-1")


def _public(thread: Body) -> Body:
    return {key: value for key, value in thread.items() if key != "runs"}


def _json_object(raw: bytes) -> Body:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _canned(kind: str, arg: str, body: Body) -> _Reply | None:
    """Status, body and extra headers of a complete fault response, or ``None`` for raw behaviours."""
    if kind == "deep-json":
        human = {"type": "human", "content": _user_content(body), "id": "h1"}
        ai = {"type": "ai", "content": DECISION, "id": "a1", "tool_calls": []}
        return 200, _deep_state([human, ai], int(arg or 1)), {}
    replies: dict[str, _Reply] = {
        "no-ai": (200, {"messages": [{"type": "human", "content": _user_content(body), "id": "h1"}]}, {}),
        "graph-error": (200, {"__error__": {"error": "ValueError", "message": "boom"}}, {}),
        "garbage": (200, b"\x00\xffnot json<html>", {}),
        "bad-utf8": (200, b'{"messages": [{"type": "ai", "content": "caf\xe9 \xff"}]}', {}),
        "redirect": (307, b"", {"location": arg}),
        "html": (200, _SIGN_IN, {"content-type": "text/html; charset=utf-8"}),
        "422": (422, {"detail": "Invalid assistant"}, {}),
        "500": (500, {"detail": "fake internal error"}, {}),
        "503-retry-after": (503, {"detail": "Service Unavailable"}, {"retry-after": arg}),
        "429": (429, {"detail": "Too Many Requests"}, {"retry-after": arg}),
    }
    return replies.get(kind)


def _deep_state(messages: list[Body], depth: int) -> bytes:
    """A valid final state carrying `depth` nested lists (written out: json.dumps would recurse)."""
    return b'{"messages": %s, "extra": %s%s}' % (json.dumps(messages).encode(), b"[" * depth, b"]" * depth)


def _quiet_exceptions(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Clients refusing the certificate or going away mid-write are the tests' business, not noise."""
    if isinstance(context.get("exception"), ssl.SSLError | OSError):
        return
    loop.default_exception_handler(context)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: requests are answered one at a time, in order."""

    def __init__(self, server: FakeRunServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.queue: deque[Request] = deque()
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None  # a delayed answer, a drip, or the idle timeout
        self.paused = False
        self.flooding = False

    # --- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections += 1
        self.server._open.add(self)
        self._idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.flooding = False
        self.queue.clear()
        self.server._open.discard(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.flooding:
            self._pump()

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            self._cancel_timer()  # the idle timeout
        self.buffer += data
        while (request := self._parse()) is not None:
            self.queue.append(request)
        self._next()

    # --- what the server does with it

    def reply(self, data: bytes, request: Request) -> None:
        self.timer = None
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        self.busy = False
        if not request.keep_alive:
            self.transport.close()
            return
        self._next()

    def later(self, seconds: float, then: Callable[[], None]) -> None:
        assert self.transport is not None
        self.timer = asyncio.get_running_loop().call_later(seconds, then)

    def stream(self, head: bytes, every_s: float) -> None:
        """A chunked answer's head now, then a newline chunk every `every_s` until `end_stream`."""
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(head)
        self.timer = asyncio.get_running_loop().call_later(every_s, self._newline, every_s)

    def _newline(self, every_s: float) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(_NEWLINE_CHUNK)
        self.timer = asyncio.get_running_loop().call_later(every_s, self._newline, every_s)

    def end_stream(self, data: bytes, request: Request) -> None:
        """The last chunk of a streamed answer; then the connection serves its next request."""
        self._cancel_timer()
        self.reply(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data), request)

    def flood(self, declared: bool) -> None:
        """200 headers, then junk as fast as the client reads it, until it hangs up."""
        if self.transport is None:
            return
        length = "content-length: 1073741824" if declared else "connection: close"
        self.transport.write(
            f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{length}\r\n\r\n".encode()
        )
        self.flooding = True
        self._pump()

    def _pump(self) -> None:
        """Up to 1 MB, then again on the loop's next turn (other connections have theirs)."""
        for _ in range(16):
            if not self.flooding or self.paused or self.transport is None:
                return
            if self.transport.is_closing():
                self.flooding = False
                return
            self.transport.write(JUNK)  # pause_writing() is called from in here when the buffer fills
        asyncio.get_running_loop().call_soon(self._pump)

    def close(self, last_words: bytes = b"") -> None:
        self._cancel_timer()
        if self.transport is not None:
            if last_words and not self.transport.is_closing():
                self.transport.write(last_words)
            self.transport.close()

    def abort(self) -> None:
        self._cancel_timer()
        self.flooding = False
        if self.transport is not None:
            self.transport.abort()

    # --- within

    def _next(self) -> None:
        if self.busy:
            return
        if not self.queue:
            self._idle()
            return
        self.busy = True
        self.server.answer(self, self.queue.popleft())

    def _idle(self) -> None:
        timeout = self.server.idle_timeout_s
        if timeout is not None and not self.buffer and self.transport is not None:
            self._cancel_timer()
            self.timer = asyncio.get_running_loop().call_later(timeout, self._idle_too_long)

    def _idle_too_long(self) -> None:
        self.timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.server.idle_closed += 1
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _parse(self) -> Request | None:
        """Take one complete request off the buffer, or None when more bytes are needed."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self._fail(431)
            return None
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            self._fail(400)
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.rstrip().lower()] = value.strip()
        start = end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":
            found = _chunked_body(self.buffer, start)
            if found is None:
                return None
            body, total = found
        else:
            length = headers.get("content-length", "0")
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                self._fail(413 if length.isdigit() else 400)
                return None
            total = start + int(length)
            if len(self.buffer) < total:
                return None
            body = bytes(self.buffer[start:total])
        del self.buffer[:total]
        path, _, query = target.partition("?")
        keep_alive = headers.get("connection", "").lower() != "close"
        return Request(method.upper(), path, query, headers, body, keep_alive)

    def _fail(self, status: int) -> None:
        self.buffer.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response(status, {}))
            self.transport.close()


def _chunked_body(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body starting at `start`, and where it ends (trailers included); None if incomplete."""
    body = bytearray()
    at = start
    while True:
        eol = buffer.find(b"\r\n", at)
        if eol < 0:
            return None
        size = int(bytes(buffer[at:eol]).split(b";")[0], 16)
        at = eol + 2
        if size == 0:
            break
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2
    while True:  # trailers, then the empty line
        eol = buffer.find(b"\r\n", at)
        if eol < 0:
            return None
        done = eol == at
        at = eol + 2
        if done:
            return bytes(body), at


# --------------------------------------------------------------------------- scripts


class ScriptedByUid:
    """Answer each request by the uid in its metadata and how often that uid has been seen."""

    def __init__(self, script: dict[int, list[str]]) -> None:
        self.script = script
        self.seen: Counter[int] = Counter()
        self._lock = threading.Lock()

    def __call__(self, _index: int, body: Body) -> str:
        uid = int(body["metadata"]["uid"])
        with self._lock:
            attempt = self.seen[uid]
            self.seen[uid] += 1
        answers = self.script.get(uid, ["ok"])
        return answers[min(attempt, len(answers) - 1)]


# --------------------------------------------------------------------------- in a process of its own


@dataclass(slots=True)
class RunServerProcess:
    url: str
    process: subprocess.Popen[bytes]

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/_stats", timeout=10) as answer:
            data: dict[str, int] = json.loads(answer.read())
        return data


@contextlib.contextmanager
def run_server_process(
    latency_s: float = 0.0,
    *,
    echo_prompt: bool = True,
    latency: str | None = None,
    seed: int = 0,
    rate_limit: tuple[float, int] | None = None,
    rate_limit_mode: RateLimitMode = "http",
    heartbeat_s: float = HEARTBEAT_S,
    answer: str = "ok",
) -> Iterator[RunServerProcess]:
    """The stub in a process of its own (a benchmark's load is not its client's); always stopped.

    The options are ``FakeRunServer``'s, passed as its command-line flags; `answer` is every run's
    behaviour.
    """
    argv = [sys.executable, "-m", "tests.support.run_server", "--latency", latency or repr(latency_s)]
    argv += ["--answer", answer]
    argv += ["--seed", str(seed), "--heartbeat", repr(heartbeat_s)]
    if rate_limit is not None:
        argv += ["--rate-limit", f"{rate_limit[0]!r},{rate_limit[1]}", "--rate-limit-mode", rate_limit_mode]
    if not echo_prompt:
        argv.append("--no-echo")
    # This module's own checkout, whichever triage the benchmark runs.
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
        line = process.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"stub run server did not start (said {line!r})")
        yield RunServerProcess(f"http://127.0.0.1:{int(line.split()[1])}", process)
    finally:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


async def _serve(server: FakeRunServer) -> None:
    """Serve (printing `PORT n`) until stdin closes, a signal, or MAX_LIFETIME_S."""
    loop = asyncio.get_running_loop()
    await server.start()
    print(f"PORT {server.url.rsplit(':', 1)[1]}", flush=True)
    stop = asyncio.Event()

    def on_stdin() -> None:
        if not os.read(sys.stdin.fileno(), 4096):  # the parent closed the pipe, or died
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), MAX_LIFETIME_S)
    await server.stop()


def _rate(value: str) -> tuple[float, int]:
    """``RUNS_PER_S[,BURST]``; the burst defaults to one second's worth."""
    rate, _, burst = value.partition(",")
    return float(rate), int(burst) if burst else max(1, math.ceil(float(rate)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The stub LangGraph run server, in a process of its own.")
    parser.add_argument(
        "--latency",
        default="0",
        help="seconds each `ok` run takes: a number, or lognormal:median=S,sigma=X,max=S",
    )
    parser.add_argument("--seed", type=int, default=0, help="of the latency distribution's RNG")
    parser.add_argument("--rate-limit", type=_rate, help="RUNS_PER_S[,BURST]: a token bucket on run creation")
    parser.add_argument(
        "--rate-limit-mode",
        choices=("http", "graph-error"),
        default="http",
        help="how a rejected run is answered",
    )
    parser.add_argument(
        "--heartbeat", type=float, default=HEARTBEAT_S, help="seconds between newlines of a slow answer"
    )
    parser.add_argument("--no-echo", action="store_true", help="answer '...' as the human message")
    parser.add_argument(
        "--answer",
        default="ok",
        help="how every run is answered: ok, or ok-usage:IN,OUT (the model reports its tokens)",
    )
    args = parser.parse_args(argv)
    try:
        parse_latency(args.latency)
    except ValueError as exc:
        parser.error(str(exc))
    server = FakeRunServer(
        (args.answer,),
        latency=args.latency,
        seed=args.seed,
        rate_limit=args.rate_limit,
        rate_limit_mode=args.rate_limit_mode,
        heartbeat_s=args.heartbeat,
        echo_prompt=not args.no_echo,
        record=False,
    )
    asyncio.run(_serve(server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
