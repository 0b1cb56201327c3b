"""The needs-review queue (`triage review`), one decision at a time, with the same outcomes.

Accepting records a confirmation of the decision as it stands, as `triage review` does; correcting
records the chosen decision; both post to the decision's corrections and come back here, past it.
Skipping moves past a decision without recording anything. The page's position in the queue is in
its address (`before`: the queue goes newest first), so nothing about a review lives on the server.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from triage.log.corrections import review_queue
from triage.log.explain import explain
from triage.web.pages import int_param, render, store_of

QUEUE_LIMIT = 500  # ids looked at per page: the queue as `triage review --limit 500` walks it


def review_page(request: Request) -> Response:
    include_all = request.query_params.get("all") == "1"
    below = int_param(request.query_params, "before")
    recorded = int_param(request.query_params, "recorded")
    queue = review_queue(store_of(request), include_all=include_all, limit=QUEUE_LIMIT)
    waiting = [decision_id for decision_id in queue if below is None or decision_id < below]
    scope = {"all": "1"} if include_all else {}
    if not waiting:
        return render(request, "review.html", entry=None, recorded=recorded, scope=scope)
    current = waiting[0]
    past = urlencode({**scope, "before": current})
    return render(
        request,
        "review.html",
        entry=explain(store_of(request), current),
        recorded=recorded,
        scope=scope,
        waiting=len(waiting),
        more=len(queue) == QUEUE_LIMIT,
        skip_url=f"/review?{past}",
        done_url=f"/review?{past}&recorded={current}",
    )
