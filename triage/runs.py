"""Stateless runs against a LangGraph API server: `POST {url}/runs/wait`.

The real server answers 200 even when the graph raised (`__error__` in the body) and when its own
timeout struck (the last state, with no AI answer); both are errors here, never decisions. A slow
run streams a newline every few seconds, so a per-read timeout never fires: every call has a total
deadline instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any, Protocol

import httpcore
import httpx

from triage import __version__
from triage.asyncio_streams import AsyncioBackend
from triage.clock import backoff_s, utc_now
from triage.errors import ConfigError, RunError, TriageError
from triage.hosts import is_loopback_host

if TYPE_CHECKING:  # at run time this module never loads the settings (see RunsSettings)
    from triage.config import LangGraphSettings

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_BACKOFF_BASE_S = 0.5  # the first retry's wait, doubling up to backoff_cap_s
_KEEPALIVE_S = 4.0  # an idle connection is closed after this long: before uvicorn closes it, at 5 s
_BACKEND = AsyncioBackend()
_USER_AGENT = f"triage/{__version__}".encode()
_TRANSPORT_ERRORS = (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol)
# A final state is a few levels deep; anything deeper is hostile or broken, and deep values make
# the store's JSON encoder recurse.
MAX_JSON_DEPTH = 64


@dataclass(frozen=True, slots=True)
class RunResult:
    state: dict[str, Any]
    run_id: str | None
    attempts: int
    latency_ms: int


@dataclass(frozen=True, slots=True)
class RunsSettings:
    """What a RunsClient uses of `[langgraph]`, as plain values.

    A run worker (triage.runs_worker) receives these without loading pydantic and the settings
    module, which would be half of its memory.
    """

    url: str
    api_key: str | None = field(repr=False)
    timeout_s: float
    max_concurrency: int
    max_attempts: int
    backoff_cap_s: float

    @classmethod
    def of(cls, settings: LangGraphSettings, *, max_concurrency: int | None = None) -> RunsSettings:
        """Checked first: the API key is never sent in clear to a host that is not this one."""
        check_transport(settings)
        return cls(
            url=settings.url.rstrip("/"),
            api_key=settings.api_key.get_secret_value() if settings.api_key is not None else None,
            timeout_s=settings.timeout_s,
            max_concurrency=max_concurrency or settings.max_concurrency,
            max_attempts=settings.max_attempts,
            backoff_cap_s=settings.backoff_cap_s,
        )


class Runs(Protocol):
    """Calls to the LangGraph server: a RunsClient, or a RunsWorker making them in a child process."""

    async def wait(self, body: dict[str, Any]) -> RunResult: ...

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...

    async def check_reachable(self) -> None: ...


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
    """Connections to one LangGraph server; retries with exponential backoff and jitter.

    Requests go through httpcore, httpx's own transport, on asyncio streams (triage.asyncio_streams):
    httpx's client and anyio's streams above it cost three times the CPU a run. Each connection is
    its own pool of one, lent to one request at a time: a pool of many connections costs several
    times more CPU per request than one of a single connection, as it scans all of them for each.
    """

    def __init__(self, settings: RunsSettings) -> None:
        self.settings = settings
        self._base = httpx.URL(settings.url)
        self._headers = [(b"accept", b"application/json"), (b"user-agent", _USER_AGENT)]
        if settings.api_key is not None:
            self._headers.append((b"x-api-key", settings.api_key.encode()))
        self._json_headers = [*self._headers, (b"content-type", b"application/json")]
        self._timeouts = {"connect": min(settings.timeout_s, 10.0)}
        self._tls = httpx.create_ssl_context()  # shared: loading the CA bundle is slow
        self._idle: list[httpcore.AsyncConnectionPool] = []
        self._opened: list[httpcore.AsyncConnectionPool] = []
        self._free = asyncio.Semaphore(settings.max_concurrency)
        self._wait_url = self._url("/runs/wait")

    async def __aenter__(self) -> RunsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for pool in self._opened:
            await pool.aclose()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[httpcore.AsyncConnectionPool]:
        """A connection, opened when none is idle; at most max_concurrency of them."""
        async with self._free:
            pool = self._idle.pop() if self._idle else self._open()
            try:
                yield pool
            finally:
                self._idle.append(pool)

    def _open(self) -> httpcore.AsyncConnectionPool:
        pool = httpcore.AsyncConnectionPool(
            ssl_context=self._tls,
            max_connections=1,
            keepalive_expiry=_KEEPALIVE_S,
            network_backend=_BACKEND,
        )
        self._opened.append(pool)
        return pool

    def _url(self, path: str) -> httpcore.URL:
        base = self._base
        target = base.raw_path.rstrip(b"/") + path.encode()
        return httpcore.URL(scheme=base.raw_scheme, host=base.raw_host, port=base.port, target=target)

    async def check_reachable(self) -> None:
        """Fail fast, in one line, when the run server cannot be reached at all."""
        try:
            async with self._connection() as pool, asyncio.timeout(self._timeouts["connect"]):
                await pool.request("GET", self._url("/ok"), headers=self._headers)
        except (TimeoutError, httpcore.TimeoutException):
            raise TriageError(
                f"cannot reach the LangGraph server at {self.settings.url}: no answer"
                f" within {self._timeouts['connect']:g} s"
            ) from None
        except _TRANSPORT_ERRORS as exc:
            raise TriageError(
                f"cannot reach the LangGraph server at {self.settings.url}: {_short(exc)}"
            ) from None

    async def wait(self, body: dict[str, Any]) -> RunResult:
        """A stateless run to completion; RunError once retries are spent or the error is final."""
        started = time.monotonic()
        (state, headers), attempts = await self._with_retries("POST", self._wait_url, body)
        if not isinstance(state, dict):
            raise RunError("bad-body", "the final state is not a JSON object", attempts=attempts)
        if isinstance(error := state.get("__error__"), dict):
            detail = f"{error.get('error')}: {error.get('message')}"
            raise RunError("graph-error", detail, attempts=attempts)
        if "decision" not in state and not _ends_with_ai_message(state):
            detail = "the final state has no AI message (server-side timeout?)"
            raise RunError("no-answer", detail, attempts=attempts)
        latency_ms = int((time.monotonic() - started) * 1000)
        return RunResult(state, _run_id(headers.get("content-location")), attempts, latency_ms)

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Any other LangGraph API call (threads, runs on threads), with the same retries."""
        (value, _), _ = await self._with_retries(method, self._url(path), body)
        return value

    async def _with_retries(
        self, method: str, url: httpcore.URL, body: dict[str, Any] | None
    ) -> tuple[tuple[Any, dict[str, str]], int]:
        try:
            content = None if body is None else _json_bytes(body)
        except (TypeError, ValueError) as exc:  # never sent, so never retried
            raise RunError("bad-request", f"the request cannot be sent as JSON: {exc}", attempts=1) from None
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(method, url, content), attempt
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

    async def _attempt(
        self, method: str, url: httpcore.URL, content: bytes | None
    ) -> tuple[Any, dict[str, str]]:
        headers = self._headers if content is None else self._json_headers
        extensions = {"timeout": self._timeouts}
        # The deadline starts once a connection is free: time queued for one is not the server's.
        async with self._connection() as pool:
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    async with pool.stream(
                        method, url, headers=headers, content=content, extensions=extensions
                    ) as response:
                        got = _headers(response)
                        body = await _read_bounded(response, got.get("content-length", ""))
                        return _answer(response.status, got, body)
            except TimeoutError:
                raise RunError("timeout", f"no answer within {self.settings.timeout_s:g} s") from None
            except httpcore.TimeoutException as exc:
                raise RunError("timeout", _short(exc)) from None
            except _TRANSPORT_ERRORS as exc:
                raise RunError("connect", _short(exc)) from None


def _json_bytes(body: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as httpx's `json=` sends it; NaN is refused, as JSON has none."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _headers(response: httpcore.Response) -> dict[str, str]:
    """Response headers by lower-case name (a repeated header: its last value)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}


def _answer(status: int, headers: dict[str, str], content: bytes) -> tuple[Any, dict[str, str]]:
    if not 200 <= status < 300:
        raise RunError(
            "http",
            f"HTTP {status}: {_http_detail(status, headers, content)}",
            http_status=status,
            retry_after_s=_retry_after_s(headers.get("retry-after")),
        )
    return decode_body(content, headers.get("content-type", "")), headers


def check_transport(settings: LangGraphSettings) -> None:
    """Refuse, before any request, to send the API key in clear to a host that is not this one."""
    url = httpx.URL(settings.url)
    if (
        settings.api_key is not None
        and url.scheme == "http"
        and not is_loopback_host(url.host)
        and not settings.allow_insecure
    ):
        raise ConfigError(
            f"langgraph.url {settings.url} is plain http: the API key would cross the network in clear"
            " (use https, or set langgraph.allow_insecure = true)"
        )


def decode_body(content: bytes, content_type: str) -> Any:
    """JSON from a response body, or a bad-body RunError that says in a few words what is wrong."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunError("bad-body", f"not UTF-8 (invalid byte at {exc.start})") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise RunError("bad-body", "JSON nested too deeply") from None
    except ValueError:
        kind = content_type.split(";")[0].strip() or "no content-type"
        raise RunError("bad-body", f"not JSON ({kind}): {_excerpt(content)}") from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise RunError("bad-body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Iterative, so a hostile value cannot exhaust the stack while being measured."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _http_detail(status: int, headers: dict[str, str], content: bytes) -> str:
    """A redirect names where it pointed (it is never followed); anything else, its body."""
    if httpx.codes.is_redirect(status):
        location = headers.get("location", "(no location)")
        return f"redirect to {_excerpt(location.encode())} (not followed)"
    return _excerpt(content)


async def _read_bounded(response: httpcore.Response, declared: str) -> bytes:
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise RunError("bad-body", f"response of {int(declared)} bytes, over {MAX_RESPONSE_BYTES}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_stream():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise RunError("bad-body", f"response larger than {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _ends_with_ai_message(state: dict[str, Any]) -> bool:
    messages = state.get("messages")
    if not isinstance(messages, list) or not messages:
        return False
    last = messages[-1]
    return isinstance(last, dict) and last.get("type") in ("ai", "AIMessageChunk")


def _run_id(content_location: str | None) -> str | None:
    # content-location: /threads/{thread_id}/runs/{run_id}
    if not content_location or "/runs/" not in content_location:
        return None
    return content_location.rsplit("/runs/", 1)[1] or None


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - utc_now()).total_seconds())


def _excerpt(content: bytes, limit: int = 160) -> str:
    text = content.decode("utf-8", errors="replace").strip()
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "") if text else "(empty body)"


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
