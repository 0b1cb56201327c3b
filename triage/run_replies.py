"""What a LangGraph run server's replies mean: a run's identity, its final state, and the errors
each bad reply is recorded as.

The real server answers 200 even when the graph raised (`__error__` in the body) and when its own
timeout struck (the last state, with no AI answer); both are errors here, never decisions. A model
provider's rate limit surfaces the same way, as a graph error naming it. A join of a run the server
no longer has is a 200 too, whose error is an HTTPException 404.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import ssl
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import httpx

from triage.clock import utc_now
from triage.errors import RunError

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# A final state is a few levels deep; anything deeper is hostile or broken, and deep values make
# the store's JSON encoder recurse.
MAX_JSON_DEPTH = 64
# How a model provider's rate limit reads when it surfaces as a graph error in a 200.
_RATE_LIMITED = re.compile(r"rate.?limit|too many requests|\b429\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RunRef:
    """A run the server acknowledged: it can be joined for its result until its thread is deleted."""

    thread_id: str
    run_id: str


def final_state(state: Any) -> dict[str, Any]:
    """The state of a run that answered; RunError where it holds no answer to decide from."""
    if not isinstance(state, dict):
        raise RunError("bad-body", "the final state is not a JSON object")
    if isinstance(error := state.get("__error__"), dict):
        detail = f"{error.get('error')}: {error.get('message')}"
        raise RunError("graph-error", detail, rate_limited=bool(_RATE_LIMITED.search(detail)))
    if "decision" not in state and not _ends_with_ai_message(state):
        raise RunError("no-answer", "the final state has no AI message (server-side timeout?)")
    return state


def refused_credentials(error_kind: str | None, error_text: str | None) -> str | None:
    """The reason to stop, when a run's error says the server refused its API key (401, 403)."""
    if error_kind == "http" and (error_text or "").startswith(("HTTP 401", "HTTP 403")):
        return f"the run server refused triage's credentials ({error_text}): check langgraph.api_key"
    return None


def run_is_over(error: RunError) -> bool:
    """Whether the run itself ended (so a retry needs a new one), rather than our wait for it."""
    return error.kind in ("graph-error", "no-answer", "bad-body")


def unknown_run(error: RunError) -> bool:
    """A join the server cannot answer: its run or thread is gone (deleted, or lost in a crash of
    the server). LangGraph says so in a 200 whose error is an HTTPException 404."""
    return error.http_status == 404 or (
        error.kind == "graph-error" and error.detail.startswith("HTTPException: 404")
    )


def created_ref(created: Any) -> RunRef:
    if isinstance(created, dict) and isinstance(created.get("run_id"), str):
        thread_id = created.get("thread_id")
        if isinstance(thread_id, str):
            return RunRef(thread_id, created["run_id"])
    raise RunError(
        "bad-body", f"POST /runs did not answer with a run and thread id: {_excerpt(str(created).encode())}"
    )


def answer(status: int, headers: httpx.Headers, content: bytes) -> Any:
    if not 200 <= status < 300:
        raise RunError(
            "http",
            f"HTTP {status}: {_http_detail(status, headers, content)}",
            http_status=status,
            retry_after_s=_retry_after_s(headers.get("retry-after")),
            rate_limited=status in (429, 503),
        )
    if status == 204 or not content:
        return None
    return decode_body(content, headers.get("content-type", ""))


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


def _http_detail(status: int, headers: httpx.Headers, content: bytes) -> str:
    """A redirect names where it pointed (it is never followed); anything else, its body."""
    if httpx.codes.is_redirect(status):
        location = headers.get("location", "(no location)")
        return f"redirect to {_excerpt(location.encode())} (not followed)"
    return _excerpt(content)


async def read_bounded(response: httpx.Response) -> bytes:
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


def ref_of(content_location: str | None) -> RunRef | None:
    """The run named by `content-location: /threads/{thread_id}/runs/{run_id}`."""
    match = re.fullmatch(r".*/threads/([^/]+)/runs/([^/]+)", content_location or "")
    return RunRef(match[1], match[2]) if match else None


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


def short(exc: Exception) -> str:
    """The exception's kind and what the socket said (`ConnectError: Connection refused`)."""
    text = str(exc)
    cause: BaseException | None = exc
    while cause is not None:  # httpx wraps the socket's own error a few levels down
        if isinstance(cause, ssl.SSLCertVerificationError):
            text = f"certificate verify failed: {cause.verify_message}"
            break
        if isinstance(cause, ssl.SSLError):
            text = cause.reason or str(cause)
            break
        if isinstance(cause, OSError) and isinstance(cause.errno, int):
            text = os.strerror(cause.errno) if cause.errno > 0 else str(cause.strerror)
            break
        cause = cause.__cause__ or cause.__context__
    text = re.sub(r"^\[Errno -?\d+\] ", "", text)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
