"""The log (`triage log`), one decision (`triage show`), and corrections (`triage correct`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from triage.errors import TriageError
from triage.log.corrections import confirm, correct
from triage.log.explain import explain, resolve
from triage.log.query import entries
from triage.store.decisions import Store
from triage.web.pages import filter_values, filters_from, not_found, render, store_of
from triage.web.security import local_path

PAGE_SIZE = 50
WEB_AUTHOR = "web"  # who a correction is by when the form names nobody


def log_page(request: Request) -> Response:
    """Newest first, PAGE_SIZE at a time; the next page is the decisions older than the last shown."""
    values = filter_values(request.query_params)
    paged = "before" in request.query_params
    page: dict[str, Any] = {"values": values, "paged": paged, "rows": [], "older": None, "error": None}
    try:
        filters = filters_from(request.query_params)
        rows = list(entries(store_of(request).engine, filters, limit=PAGE_SIZE + 1))
    except TriageError as exc:
        return render(request, "log.html", status=400, **{**page, "error": str(exc)})
    older = {**values, "before": rows[PAGE_SIZE - 1]["id"]} if len(rows) > PAGE_SIZE else None
    return render(request, "log.html", **{**page, "rows": rows[:PAGE_SIZE], "older": older})


def _decision_id(request: Request) -> int:
    try:
        return resolve(store_of(request), request.path_params["ref"])
    except TriageError as exc:
        raise not_found(exc) from None


def decision_page(request: Request) -> Response:
    """Everything `triage show` prints; a Message-ID in the address leads to the decision's own page."""
    decision_id = _decision_id(request)
    if request.path_params["ref"] != str(decision_id):
        return RedirectResponse(f"/decisions/{decision_id}", 303)
    return _decision(request, decision_id, form={}, error=None)


def _decision(request: Request, decision_id: int, *, form: Mapping[str, str], error: str | None) -> Response:
    entry = explain(store_of(request), decision_id)
    status = 400 if error else 200
    return render(request, "decision.html", status=status, entry=entry, form=form, error=error)


def prompt_text(request: Request) -> Response:
    """The prompt exactly as it was sent (`triage show --prompt`), as plain text."""
    entry = explain(store_of(request), _decision_id(request))
    if entry["prompt"] is None:
        return PlainTextResponse(f"decision {entry['id']} has no stored prompt (purged, or never sent)", 404)
    return PlainTextResponse(entry["prompt"])


async def correction_post(request: Request) -> Response:
    """Records a correction, or with `confirm` a confirmation, through the functions `triage correct`
    and `triage correct --confirm` call; then back to the page (303)."""
    decision_id = await run_in_threadpool(_decision_id, request)
    form: dict[str, str] = request.state.form
    try:
        await run_in_threadpool(_label, store_of(request), decision_id, form)
    except TriageError as exc:
        return await run_in_threadpool(_decision, request, decision_id, form=form, error=str(exc))
    return RedirectResponse(local_path(form.get("next") or f"/decisions/{decision_id}"), 303)


def _label(store: Store, decision_id: int, form: Mapping[str, str]) -> None:
    given = {name: form.get(name, "").strip() or None for name in ("decision", "thread_id", "note", "author")}
    author = given["author"] or WEB_AUTHOR
    if "confirm" not in form:
        correct(
            store,
            decision_id,
            given["decision"] or "",
            thread_id=given["thread_id"],
            note=given["note"],
            author=author,
        )
    elif given["decision"] or given["thread_id"]:
        raise TriageError("a confirmation takes the recorded decision and thread: give neither")
    else:
        confirm(store, decision_id, note=given["note"], author=author)
