"""What every page shares: its templates, the store it reads, its query parameters as the log's
Filters, and one way of telling a visitor what went wrong."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from triage.errors import TriageError
from triage.log.labels import KINDS, STATUSES
from triage.log.query import Filters, parse_when
from triage.store.decisions import Store
from triage.web.charts import NO_VALUE

HERE = Path(__file__).parent
# The query parameters of the log's filters, as `triage log` names its options.
FILTER_PARAMS = ("q", "decision", "status", "mailbox", "from", "thread", "since", "until", "corrected")


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def percent(rate: float | None) -> str:
    return NO_VALUE if rate is None else f"{rate * 100:.1f} %"


def _environment() -> Environment:
    """Autoescaped everywhere: mail only ever reaches a page as text."""
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(when=_when, pretty_json=_pretty_json, percent=percent)
    environment.globals.update(KINDS=KINDS, STATUSES=STATUSES)
    return environment


TEMPLATES = Jinja2Templates(env=_environment())


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> Response:
    """A page, with what the layout needs: the session's CSRF token, whether forms are offered."""
    state = request.app.state
    context.update(
        session=request.state.session,
        read_only=state.read_only,
        token_required=state.token_required,
    )
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status)


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def filter_values(params: QueryParams) -> dict[str, str]:
    """The filters a page was asked for, non-empty only: to refill its form and build its links."""
    return {name: params[name].strip() for name in FILTER_PARAMS if params.get(name, "").strip()}


def filters_from(params: QueryParams) -> Filters:
    """The log's Filters from a page's query parameters; a bad value is a TriageError (400)."""
    values = filter_values(params)
    for name, allowed in (("decision", KINDS), ("status", STATUSES)):
        if name in values and values[name] not in allowed:
            raise TriageError(f"{name} must be one of {', '.join(allowed)}, not {values[name]!r}")
    since, until = values.get("since"), values.get("until")
    return Filters(
        decision=values.get("decision"),
        status=values.get("status"),
        since=parse_when(since) if since else None,
        until=parse_when(until) if until else None,
        sender=values.get("from"),
        mailbox=values.get("mailbox"),
        thread=values.get("thread"),
        text=values.get("q"),
        corrected="corrected" in values,
        below_id=int_param(params, "before"),
    )


def int_param(params: QueryParams, name: str) -> int | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise TriageError(f"{name} must be a whole number, not {value!r}")
    return int(value)


def not_found(error: TriageError) -> HTTPException:
    return HTTPException(404, str(error))
