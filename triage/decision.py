"""A run's final state -> a Decision. Tolerant in form, strict in meaning: nothing is guessed."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

DecisionKind = Literal["new-task", "existing-thread", "ignore"]
DecisionStatus = Literal["ok", "needs-review"]

_SYNONYMS: dict[str, DecisionKind] = {
    "newtask": "new-task",
    "new": "new-task",
    "task": "new-task",
    "existingthread": "existing-thread",
    "existing": "existing-thread",
    "thread": "existing-thread",
    "reply": "existing-thread",
    "ignore": "ignore",
    "ignored": "ignore",
    "skip": "ignore",
}
_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S | re.I)
_TEXT_FIELD = re.compile(
    r"^\s*(decision|thread[_ ]?id|title|reason|confidence)\s*[:=]\s*(.+?)\s*$", re.I | re.M
)


@dataclass(frozen=True, slots=True)
class Decision:
    status: DecisionStatus
    decision: DecisionKind | None
    thread_id: str | None = None
    title: str | None = None
    reason: str | None = None
    confidence: float | None = None
    problem: str | None = None  # why it needs review


def normalise_kind(value: object) -> DecisionKind | None:
    """`New_Task`, `existing thread`, `IGNORE` ... -> the contract's spelling, else None."""
    if not isinstance(value, str):
        return None
    key = re.sub(r"[^a-z]", "", value.lower())
    return _SYNONYMS.get(key)


def parse_decision(state: dict[str, Any], candidate_thread_ids: Collection[str]) -> Decision:
    """Find the answer in the final state and check it against the contract."""
    answer = _answer(state)
    if answer is None:
        return Decision("needs-review", None, problem="no decision found in the assistant's answer")
    kind = normalise_kind(answer.get("decision"))
    if kind is None:
        return Decision("needs-review", None, problem=f"unknown decision {answer.get('decision')!r}")
    thread_id = _text(answer.get("thread_id"))
    title, reason = _text(answer.get("title")), _text(answer.get("reason"))
    confidence = _confidence(answer.get("confidence"))
    if kind == "existing-thread":
        if thread_id is None:
            return Decision(
                "needs-review",
                kind,
                None,
                title,
                reason,
                confidence,
                problem="existing-thread without a thread_id",
            )
        if thread_id not in candidate_thread_ids:
            return Decision(
                "needs-review",
                kind,
                thread_id,
                title,
                reason,
                confidence,
                problem=f"thread {thread_id!r} was not among the threads offered",
            )
    else:
        thread_id = None
    return Decision("ok", kind, thread_id, title, reason, confidence)


def _answer(state: dict[str, Any]) -> dict[str, Any] | None:
    if "decision" in state:
        direct = state["decision"]
        return direct if isinstance(direct, dict) else {**state, "decision": direct}
    text = _last_ai_text(state)
    return _answer_from_text(text) if text else None


def last_ai_message(state: dict[str, Any]) -> dict[str, Any] | None:
    """The final state's last AI message (the assistant's answer), as the server serialised it."""
    messages = state.get("messages")
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("type") in ("ai", "AIMessageChunk"):
            return message
    return None


def _last_ai_text(state: dict[str, Any]) -> str | None:
    message = last_ai_message(state)
    return None if message is None else _content_text(message.get("content"))


def _content_text(content: object) -> str:
    """String content, or the text blocks of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            block if isinstance(block, str) else str(block.get("text", ""))
            for block in content
            if isinstance(block, str) or (isinstance(block, dict) and block.get("type") == "text")
        ]
        return "\n".join(parts)
    return ""


def _answer_from_text(text: str) -> dict[str, Any] | None:
    for candidate in (text.strip(), *_FENCE.findall(text), _outermost_braces(text)):
        if not candidate:
            continue
        try:
            parsed = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(parsed, dict) and "decision" in parsed:
            return parsed
    fields = {m.group(1).lower().replace(" ", "_"): m.group(2) for m in _TEXT_FIELD.finditer(text)}
    fields = {("thread_id" if k.startswith("thread") else k): v for k, v in fields.items()}
    return fields if "decision" in fields else None


def _outermost_braces(text: str) -> str:
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else ""


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _confidence(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if 0.0 <= number <= 1.0 else None
