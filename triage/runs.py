"""Stateless runs against a LangGraph API server: `POST {url}/runs/wait`.

The real server answers 200 even when the graph raised (`__error__` in the body) and when its own
timeout struck (the last state, with no AI answer); both are errors here, never decisions. A slow
run streams a newline every few seconds, so a per-read timeout never fires: every call has a total
deadline instead.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from triage.config import LangGraphSettings
from triage.errors import TriageError

ErrorKind = Literal["connect", "timeout", "http", "bad-body", "graph-error", "no-answer"]
_RETRYABLE: frozenset[str] = frozenset({"connect", "timeout", "bad-body"})
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class RunError(Exception):
    """A run that produced no usable final state, with its kind for the log."""

    def __init__(
        self,
        kind: ErrorKind,
        detail: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.attempts = 0

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
    """One pooled HTTP client per process; retries with exponential backoff and jitter."""

    def __init__(self, settings: LangGraphSettings, *, backoff_base_s: float = 0.5) -> None:
        self.settings = settings
        self.backoff_base_s = backoff_base_s
        headers = {"accept": "application/json"}
        if settings.api_key is not None:
            headers["x-api-key"] = settings.api_key.get_secret_value()
        connect_s = min(settings.timeout_s, 10.0)
        self._http = httpx.AsyncClient(
            base_url=settings.url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=connect_s),
            limits=httpx.Limits(
                max_connections=settings.max_concurrency,
                max_keepalive_connections=settings.max_concurrency,
            ),
            follow_redirects=False,
        )

    async def __aenter__(self) -> RunsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.aclose()

    async def check_reachable(self) -> None:
        """Fail fast, in one line, when the run server cannot be reached at all."""
        try:
            await self._http.get("/ok", timeout=min(self.settings.timeout_s, 10.0))
        except httpx.TransportError as exc:
            raise TriageError(
                f"cannot reach the LangGraph server at {self.settings.url}: {_short(exc)}"
            ) from None

    async def wait(self, body: dict[str, Any]) -> RunResult:
        """Run to completion; raise RunError once retries are spent or the error is final."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                state, run_id = await self._attempt(body)
            except RunError as error:
                error.attempts = attempt
                if not error.retryable or attempt >= self.settings.max_attempts:
                    raise
                await asyncio.sleep(self._backoff_s(attempt, error.retry_after_s))
                continue
            latency_ms = int((time.monotonic() - started) * 1000)
            return RunResult(state, run_id, attempt, latency_ms)

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        cap = self.settings.backoff_cap_s
        if retry_after_s is not None:
            return min(retry_after_s, cap)
        return min(cap, self.backoff_base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    async def _attempt(self, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                return await self._post(body)
        except TimeoutError:
            raise RunError("timeout", f"no answer within {self.settings.timeout_s:g} s") from None
        except httpx.TimeoutException as exc:
            raise RunError("timeout", type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise RunError("connect", _short(exc)) from None

    async def _post(self, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        async with self._http.stream("POST", "/runs/wait", json=body) as response:
            content = await _read_bounded(response)
        if response.status_code != 200:
            raise RunError(
                "http",
                f"HTTP {response.status_code}: {_excerpt(content)}",
                http_status=response.status_code,
                retry_after_s=_retry_after_s(response.headers.get("retry-after")),
            )
        try:
            state = json.loads(content)
        except (ValueError, RecursionError):
            raise RunError("bad-body", f"not JSON: {_excerpt(content)}") from None
        if not isinstance(state, dict):
            raise RunError("bad-body", f"not a JSON object: {_excerpt(content)}")
        if isinstance(error := state.get("__error__"), dict):
            raise RunError("graph-error", f"{error.get('error')}: {error.get('message')}")
        if "decision" not in state and not _ends_with_ai_message(state):
            raise RunError("no-answer", "the final state has no AI message (server-side timeout?)")
        return state, _run_id(response.headers.get("content-location"))


async def _read_bounded(response: httpx.Response) -> bytes:
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
