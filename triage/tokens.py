"""Tokens of a run: as the model reported them, else triage's estimate of the prompt.

A model reports usage on its answer: LangChain's `usage_metadata` (input_tokens, output_tokens), or
the provider's own in `response_metadata` (`token_usage` with prompt_tokens / completion_tokens,
or `usage` with input_tokens / output_tokens). Where none is reported, the prompt is counted with
OpenAI's o200k_base encoding through `bpe-openai` (the `tokens` extra: it carries the encoding,
where tiktoken downloads it on first use, which an offline machine cannot), else as characters / 4.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, TypeGuard

from triage.decision import last_ai_message

ENCODING = "o200k_base"


@dataclass(frozen=True, slots=True)
class Tokens:
    prompt: int
    output: int | None
    measured: bool  # reported by the model; else estimated from the prompt


@functools.cache
def _encoding() -> Any:
    try:
        import bpe_openai  # type: ignore[import-untyped]
    except ImportError:
        return None
    return bpe_openai.get_encoding(ENCODING)


def estimator() -> str:
    """How estimates are made on this installation, for the user to know what a figure means."""
    return ENCODING if _encoding() is not None else "characters / 4"


def estimate_tokens(text: str) -> int:
    encoding = _encoding()
    if encoding is None:
        return (len(text) + 3) // 4
    return len(encoding.encode_ordinary(text))


def reported_usage(state: dict[str, Any]) -> tuple[int, int] | None:
    """(input, output) tokens the model reported on its answer, if it did."""
    message = last_ai_message(state)
    if message is None:
        return None
    metadata = message.get("response_metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    for usage, names in (
        (message.get("usage_metadata"), ("input_tokens", "output_tokens")),
        (metadata.get("token_usage"), ("prompt_tokens", "completion_tokens")),
        (metadata.get("usage"), ("input_tokens", "output_tokens")),
    ):
        if isinstance(usage, dict):
            given, made = (usage.get(name) for name in names)
            if _count(given) and _count(made):
                return given, made
    return None


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def tokens_of(state: dict[str, Any] | None, prompt: str) -> Tokens:
    """The run's tokens: reported, else the prompt's estimate (output unknown)."""
    reported = reported_usage(state) if state is not None else None
    if reported is not None:
        return Tokens(*reported, measured=True)
    return Tokens(estimate_tokens(prompt), None, measured=False)
