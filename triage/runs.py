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
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx

from triage.errors import ConfigError, TriageError
from triage.hosts import is_loopback_host

if TYPE_CHECKING:  # at run time this module never loads the settings (see RunsSettings)
    from triage.config import LangGraphSettings

ErrorKind = Literal["connect", "timeout", "http", "bad-body", "graph-error", "no-answer"]
_RETRYABLE: frozenset[str] = frozenset({"connect", "timeout", "bad-body"})
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_BACKOFF_BASE_S = 0.5  # the first retry's wait, doubling up to backoff_cap_s
# A final state is a few levels deep; anything deeper is hostile or broken, and deep values make
# the store's JSON encoder recurse.
MAX_JSON_DEPTH = 64


class RunError(Exception):
    """A run that produced no usable final state, with its kind for the log."""

    def __init__(
        self,
        kind: ErrorKind,
        detail: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        if self.kind == "http":
            return self.http_status == 429 or (self.http_status or 0) >= 500
        return self.kind in _RETRYABLE


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

    Each connection is its own single-connection httpx client, lent to one request at a time: an
    httpx pool of many connections costs several times more CPU per request than one of a single
    connection (against bench/backfill.py's stub server, 420 against 1,540 requests/s at 32 in flight).
    """

    def __init__(self, settings: RunsSettings) -> None:
        self.settings = settings
        self._headers = {"accept": "application/json"}
        if settings.api_key is not None:
            self._headers["x-api-key"] = settings.api_key
        self._tls = httpx.create_ssl_context()  # shared: loading the CA bundle is slow
        self._idle: list[httpx.AsyncClient] = []
        self._opened: list[httpx.AsyncClient] = []
        self._free = asyncio.Semaphore(settings.max_concurrency)
        # Parsed once: httpx parses (and validates) a path string again on every request.
        self._wait_url = httpx.URL(settings.url + "/runs/wait")

    async def __aenter__(self) -> RunsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for client in self._opened:
            await client.aclose()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client of one connection, opened when none is idle; at most max_concurrency of them."""
        async with self._free:
            client = self._idle.pop() if self._idle else self._open()
            try:
                yield client
            finally:
                self._idle.append(client)

    def _open(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=self.settings.url,
            headers=self._headers,
            timeout=httpx.Timeout(self.settings.timeout_s, connect=min(self.settings.timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            follow_redirects=False,
            verify=self._tls,
        )
        self._opened.append(client)
        return client

    async def check_reachable(self) -> None:
        """Fail fast, in one line, when the run server cannot be reached at all."""
        try:
            async with self._connection() as client:
                await client.get("/ok", timeout=min(self.settings.timeout_s, 10.0))
        except httpx.TransportError as exc:
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
        (value, _), _ = await self._with_retries(method, path, body)
        return value

    async def _with_retries(
        self, method: str, path: str | httpx.URL, body: dict[str, Any] | None
    ) -> tuple[tuple[Any, httpx.Headers], int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(method, path, body), attempt
            except RunError as error:
                error.attempts = attempt
                if not error.retryable or attempt >= self.settings.max_attempts:
                    raise
                await asyncio.sleep(self._backoff_s(attempt, error.retry_after_s))

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        cap = self.settings.backoff_cap_s
        if retry_after_s is not None:
            return min(retry_after_s, cap)
        return min(cap, _BACKOFF_BASE_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    async def _attempt(
        self, method: str, path: str | httpx.URL, body: dict[str, Any] | None
    ) -> tuple[Any, httpx.Headers]:
        # The deadline starts once a connection is free: time queued for one is not the server's.
        async with self._connection() as client:
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    return await _send(client, method, path, body)
            except TimeoutError:
                raise RunError("timeout", f"no answer within {self.settings.timeout_s:g} s") from None
            except httpx.TimeoutException as exc:
                raise RunError("timeout", type(exc).__name__) from None
            except httpx.TransportError as exc:
                raise RunError("connect", _short(exc)) from None


async def _send(
    client: httpx.AsyncClient, method: str, path: str | httpx.URL, body: dict[str, Any] | None
) -> tuple[Any, httpx.Headers]:
    async with client.stream(method, path, json=body) as response:
        content = await _read_bounded(response)
    if not 200 <= response.status_code < 300:
        raise RunError(
            "http",
            f"HTTP {response.status_code}: {_http_detail(response, content)}",
            http_status=response.status_code,
            retry_after_s=_retry_after_s(response.headers.get("retry-after")),
        )
    return decode_body(content, response.headers.get("content-type", "")), response.headers


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


def _http_detail(response: httpx.Response, content: bytes) -> str:
    """A redirect names where it pointed (it is never followed); anything else, its body."""
    if response.is_redirect:
        location = response.headers.get("location", "(no location)")
        return f"redirect to {_excerpt(location.encode())} (not followed)"
    return _excerpt(content)


async def _read_bounded(response: httpx.Response) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        raise RunError("bad-body", f"response of {int(declared)} bytes, over {MAX_RESPONSE_BYTES}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
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
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _excerpt(content: bytes, limit: int = 160) -> str:
    text = content.decode("utf-8", errors="replace").strip()
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "") if text else "(empty body)"


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
