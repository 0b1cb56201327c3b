"""The thread registry as `triage threads` shows it, and each thread with its messages."""

from __future__ import annotations

from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from triage.log.explain import explain
from triage.log.query import Filters, entries
from triage.store import thread_registry
from triage.store.models import DecisionRecord, Thread
from triage.web.pages import int_param, render, store_of

PAGE_SIZE = 100
THREAD_MESSAGES = 200  # the newest messages shown on a thread's page


def threads_page(request: Request) -> Response:
    status = request.query_params.get("status")
    status = status if status in ("open", "closed") else None
    start = int_param(request.query_params, "start") or 0
    found = thread_registry.list_threads(store_of(request), status)
    shown = found[start : start + PAGE_SIZE]
    later = start + PAGE_SIZE if len(found) > start + PAGE_SIZE else None
    return render(request, "threads.html", threads=shown, listed=status, total=len(found), later=later)


def thread_page(request: Request) -> Response:
    """The thread, the message that started it (its new task), and the decisions recorded in it or
    corrected into it (as `log --thread`)."""
    store, thread_id = store_of(request), request.path_params["thread_id"]
    with store.read_sessions() as session:
        thread = session.get(Thread, thread_id)
        if thread is None:
            raise HTTPException(404, f"no thread with id {thread_id!r}")
        started_by = session.scalar(
            select(DecisionRecord.id).where(DecisionRecord.message_pk == thread.started_by)
        )
    starter = explain(store, started_by) if started_by is not None else None
    rows = list(entries(store.engine, Filters(thread=thread_id), limit=THREAD_MESSAGES))
    return render(request, "thread.html", thread=thread, starter=starter, rows=rows, limit=THREAD_MESSAGES)
