"""Stateless runs against a LangGraph API server: `POST /runs/wait`, or `POST /runs` and a join.

A slow run streams a newline every few seconds, so a per-read timeout never fires: every call has a
total deadline instead. What the replies mean is triage.run_replies'; the connections under httpx
are triage.run_transport's; how many runs may be in flight is triage.adaptive_limit's; what it
uses of the settings, checked, is triage.run_settings'.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from triage import __version__
from triage.adaptive_limit import AdaptiveLimit
from triage.clock import backoff_s
from triage.errors import RunError, TriageError
from triage.run_replies import (
    RunRef,
    answer,
    created_ref,
    final_state,
    read_bounded,
    ref_of,
    run_is_over,
    short,
    unknown_run,
)
from triage.run_settings import RunsSettings, tls_context
from triage.run_transport import connection_limits, run_transport

if TYPE_CHECKING:  # at run time this module never loads the settings (see RunsSettings)
    from triage.config import LangGraphSettings

log = logging.getLogger("triage.runs")

_BACKOFF_BASE_S = 0.5  # the first retry's wait, doubling up to backoff_cap_s
_KEEPALIVE_S = 4.0  # an idle connection is closed after this long: before uvicorn closes it, at 5 s
_SPARE_CONNECTIONS = 4  # beyond the runs: thread deletions and the routing's API calls
_USER_AGENT = f"triage/{__version__}"


@dataclass(frozen=True, slots=True)
class RunResult:
    state: dict[str, Any]
    attempts: int
    latency_ms: int
    ref: RunRef | None = None  # None where the server named no run

    @property
    def run_id(self) -> str | None:
        return self.ref.run_id if self.ref else None


# Called (synchronously, before the result is awaited) with each run the server acknowledges.
OnStarted = Callable[[RunRef], None]


class Runs(Protocol):
    """Calls to the LangGraph server: a RunsClient, or a RunsWorker making them in a child process."""

    async def run(
        self, body: dict[str, Any], *, known: RunRef | None = None, on_started: OnStarted | None = None
    ) -> RunResult: ...

    async def release(self, refs: list[RunRef]) -> list[RunRef]: ...

    async def find_runs(self, metadata: dict[str, Any]) -> list[RunRef]: ...

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...

    async def check_reachable(self) -> None: ...

    @property
    def concurrency(self) -> int: ...


def build_request(
    settings: LangGraphSettings, prompt: str, identity_metadata: dict[str, Any]
) -> dict[str, Any]:
    """The body of a stateless run; the configured metadata plus the message's identity."""
    body: dict[str, Any] = {
        "assistant_id": settings.assistant_id,
        "input": {"messages": [{"role": "user", "content": prompt}]},
        "metadata": {**settings.metadata, **identity_metadata},
        "on_completion": settings.on_completion,
    }
    if settings.config:
        body["config"] = settings.config
    if settings.webhook:
        body["webhook"] = settings.webhook
    return body


class RunsClient:
    """httpx's AsyncClient to one LangGraph server: runs with retries, backoff and an adaptive limit.

    Proxies (`HTTPS_PROXY`, `NO_PROXY`...), `.netrc` and `SSL_CERT_FILE` come from the environment,
    as httpx reads them. Redirects are never followed: a run server that redirects is misconfigured,
    and the API key must not follow it elsewhere.

    A run whose caller records it (`on_started`) is made joinable: it is sent with `on_completion:
    "keep"`, the server's acknowledgement (its run and thread ids) is handed to the caller before
    the result is awaited, and a run acknowledged once is joined, never sent again, by a retry or
    by the next process (`known`). Its thread is the caller's to `release` once the result is safe.
    """

    def __init__(self, settings: RunsSettings) -> None:
        self.settings = settings
        self.limit = AdaptiveLimit(settings.min_concurrency, settings.max_concurrency)
        headers = {"accept": "application/json", "user-agent": _USER_AGENT}
        if settings.api_key is not None:
            headers["x-api-key"] = settings.api_key
        connections = settings.max_concurrency + _SPARE_CONNECTIONS
        verify = tls_context(settings.ca_file)
        limits = connection_limits(connections, _KEEPALIVE_S)
        # Our transport where no proxy is configured; under a proxy, httpx's own, which reads the
        # proxy settings (and NO_PROXY) from the environment only when it builds the transport.
        proxied = any(scheme in urllib.request.getproxies() for scheme in ("http", "https", "all"))
        transport = None if proxied else run_transport(connections, verify, settings.http2, _KEEPALIVE_S)
        self._client = httpx.AsyncClient(
            base_url=settings.url,
            headers=headers,
            # Per-read timeouts never fire on a slow run (it sends a newline every few seconds):
            # each call has a total deadline of its own instead (see _request).
            timeout=httpx.Timeout(None, connect=min(settings.timeout_s, 10.0)),
            transport=transport,
            limits=limits,
            verify=verify,
            follow_redirects=False,
            trust_env=True,
            http2=settings.http2,
        )

    async def __aenter__(self) -> RunsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.aclose()

    @property
    def concurrency(self) -> int:
        return self.limit.limit

    @property
    def in_flight(self) -> int:
        """Runs holding a place under the limit now (`triage watch` serves it beside `concurrency`)."""
        return self.limit.in_flight

    async def check_reachable(self) -> None:
        """Fail fast, in one line, when the run server cannot be reached at all."""
        connect_s = min(self.settings.timeout_s, 10.0)
        try:
            async with asyncio.timeout(connect_s):
                await self._client.get("/ok")
        except (TimeoutError, httpx.TimeoutException):
            raise TriageError(
                f"cannot reach the LangGraph server at {self.settings.url}: no answer within {connect_s:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise TriageError(
                f"cannot reach the LangGraph server at {self.settings.url}: {short(exc)}"
            ) from None

    async def run(
        self, body: dict[str, Any], *, known: RunRef | None = None, on_started: OnStarted | None = None
    ) -> RunResult:
        """A stateless run to completion (joined, if `known`); RunError once retries are spent or
        the error is final. A rate-limited run is retried up to rate_limit_retries times besides.

        A background run is kept too, whoever calls: under `delete`, one that ended before its join
        came would be gone. Its thread is released here when the caller does not record the run.
        """
        kept = on_started is not None or self.settings.mode == "background"
        if kept:
            body = {**body, "on_completion": "keep"}
        content = _encoded(body)
        started = time.monotonic()
        ref, attempts, failures, throttled = known, 0, 0, 0
        while True:
            attempts += 1
            acknowledged: list[RunRef] = []
            async with self.limit.slot() as slot_started:
                try:
                    state = await self._once(content, ref, on_started, acknowledged)
                    ref = acknowledged[-1] if acknowledged else ref
                    checked = final_state(state)
                except RunError as error:
                    failed = error
                    ref = acknowledged[-1] if acknowledged else ref
                else:
                    self.limit.succeeded()
                    latency_ms = int((time.monotonic() - started) * 1000)
                    if kept and on_started is None and ref is not None:
                        await self.release([ref])
                    return RunResult(checked, attempts, latency_ms, ref)
                failed.attempts = attempts
                if ref is not None and unknown_run(failed):  # the server forgot it: run it anew
                    log.info("run %s is unknown to the server; starting it again", ref.run_id)
                    ref = None
                    failures += 1
                    if failures >= self.settings.max_attempts:
                        raise failed
                    continue
                if failed.rate_limited:  # cut the limit first: other runs are starting meanwhile
                    throttled += 1
                    wait_s = self._backoff_s(throttled, failed.retry_after_s)
                    self._rejected(failed, slot_started, wait_s)
                if ref is not None and run_is_over(failed):
                    if kept:  # a new run replaces it: its thread goes now
                        await self.release([ref])
                    ref = None
                if failed.rate_limited:
                    if throttled > self.settings.rate_limit_retries:
                        raise failed
                    # Waited out in its place: a turned-away run still counts against the limit,
                    # or places freed at once by rejections would send more into the limit.
                    await asyncio.sleep(wait_s)
                    continue
            failures += 1
            if not failed.retryable or failures >= self.settings.max_attempts:
                raise failed
            await asyncio.sleep(self._backoff_s(failures, failed.retry_after_s))

    def _rejected(self, failed: RunError, started_at: float, wait_s: float) -> None:
        """Every run waits as long as the rejected one does: its Retry-After, or (a model's limit,
        told in a graph error, says no more) its backoff."""
        before = self.limit.limit
        self.limit.rejected(started_at, wait_s)
        if self.limit.limit != before:
            log.warning("rate limited (%s): runs in flight %d -> %d", failed, before, self.limit.limit)

    async def _once(
        self, content: bytes, ref: RunRef | None, on_started: OnStarted | None, acknowledged: list[RunRef]
    ) -> Any:
        """One attempt, under one deadline: join a known run, or start one and await its result.
        A run the server acknowledges is added to `acknowledged` at once, whatever happens next."""

        def started(new: RunRef) -> None:
            acknowledged.append(new)
            if on_started is not None:
                on_started(new)

        if ref is not None:
            state, _ = await self._request("GET", _join_path(ref))
            return state
        if self.settings.mode == "background":
            created, _ = await self._request("POST", "/runs", content)
            ref = created_ref(created)
            started(ref)
            state, _ = await self._request("GET", _join_path(ref))
            return state

        def on_headers(headers: httpx.Headers) -> None:
            if (new := ref_of(headers.get("content-location"))) is not None:
                started(new)

        state, _ = await self._request("POST", "/runs/wait", content, on_headers=on_headers)
        return state

    async def _discard(self, ref: RunRef, on_started: OnStarted | None) -> None:
        """A finished run that gave no decision: its kept thread goes now (a new run replaces it)."""
        if on_started is not None:
            await self.release([ref])

    async def release(self, refs: list[RunRef]) -> list[RunRef]:
        """Delete the threads kept for these runs, unless the configuration keeps them; those done
        (or already gone) come back. A thread that cannot be deleted now is left for a later call."""
        if self.settings.on_completion == "keep":
            return list(refs)

        async def delete(ref: RunRef) -> RunRef | None:
            try:
                await self._request("DELETE", f"/threads/{ref.thread_id}")
            except RunError as error:
                if error.http_status != 404:
                    log.debug("thread %s not deleted yet: %s", ref.thread_id, error)
                    return None
            return ref

        done = await asyncio.gather(*(delete(ref) for ref in refs))
        return [ref for ref in done if ref is not None]

    async def find_runs(self, metadata: dict[str, Any]) -> list[RunRef]:
        """Kept runs whose threads carry this metadata, newest first: a run started just before a
        crash, whose acknowledgement never reached the store. Nothing found, or no answer: []."""
        try:
            threads = await self.api("POST", "/threads/search", {"metadata": metadata, "limit": 10})
            found = []
            for thread in threads if isinstance(threads, list) else []:
                runs = await self.api("GET", f"/threads/{thread['thread_id']}/runs?limit=1")
                if isinstance(runs, list) and runs and isinstance(runs[0], dict):
                    found.append(
                        (str(thread.get("created_at", "")), RunRef(thread["thread_id"], runs[0]["run_id"]))
                    )
        except (RunError, KeyError, TypeError) as error:
            log.info("no kept runs found for %s: %s", metadata, error)
            return []
        return [ref for _, ref in sorted(found, key=lambda item: item[0], reverse=True)]

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Any other LangGraph API call (threads, runs on threads), with the same retries."""
        content = None if body is None else _encoded(body)
        attempt = 0
        while True:
            attempt += 1
            try:
                value, _ = await self._request(method, path, content)
                return value
            except RunError as error:
                error.attempts = attempt
                if not error.retryable or attempt >= self.settings.max_attempts:
                    raise
                await asyncio.sleep(self._backoff_s(attempt, error.retry_after_s))

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        cap = self.settings.backoff_cap_s
        if retry_after_s is not None:
            return min(retry_after_s, cap)
        return backoff_s(attempt, _BACKOFF_BASE_S, cap)

    async def _request(
        self,
        method: str,
        path: str,
        content: bytes | None = None,
        *,
        on_headers: Callable[[httpx.Headers], None] | None = None,
    ) -> tuple[Any, httpx.Headers]:
        """One request under the total deadline, its body read to at most MAX_RESPONSE_BYTES."""
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                async with self._client.stream(method, path, content=content, headers=headers) as response:
                    if on_headers is not None and response.is_success:
                        on_headers(response.headers)
                    body = await read_bounded(response)
                    return answer(response.status_code, response.headers, body), response.headers
        except TimeoutError:
            raise RunError("timeout", f"no answer within {self.settings.timeout_s:g} s") from None
        except httpx.TimeoutException as exc:
            raise RunError("timeout", short(exc)) from None
        except httpx.TransportError as exc:
            raise RunError("connect", short(exc)) from None


def _encoded(body: dict[str, Any]) -> bytes:
    try:
        return _json_bytes(body)
    except (TypeError, ValueError) as exc:  # never sent, so never retried
        raise RunError("bad-request", f"the request cannot be sent as JSON: {exc}", attempts=1) from None


def _join_path(ref: RunRef) -> str:
    return f"/threads/{ref.thread_id}/runs/{ref.run_id}/join"


def _json_bytes(body: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as httpx's `json=` sends it; NaN is refused, as JSON has none."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
