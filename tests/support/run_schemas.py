"""The request bodies the installed LangGraph server accepts: the OpenAPI schemas it publishes,
checked by its own validators (`langgraph_api.validation`), so the stub refuses what it would."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

# (method, path) -> the schema of its body, as LangGraph's own routes validate them.
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/runs(/wait)?$"), "RunCreateStateless"),
    ("POST", re.compile(r"^/threads$"), "ThreadCreate"),
    ("POST", re.compile(r"^/threads/search$"), "ThreadSearchRequest"),
    ("POST", re.compile(r"^/threads/[^/]+/runs(/wait)?$"), "RunCreateStateful"),
)


@functools.cache
def _validators() -> Any:
    from langgraph_api import validation  # the server's package: installed with the server extra

    return validation


def schema_problem(method: str, path: str, raw: bytes) -> str | None:
    """Why LangGraph would refuse this body with 422, or None if it would take it."""
    for route_method, pattern, schema in _ROUTES:
        if method == route_method and pattern.match(path):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return "the body is not JSON"
            errors = getattr(_validators(), schema).iter_errors(body)
            said = [f"{'/'.join(map(str, e.instance_path)) or 'body'}: {e.message}" for e in errors]
            return f"{schema}: {'; '.join(said)}" if said else None
    return None
