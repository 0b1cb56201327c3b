"""The figures of `triage stats`, as its tables and as charts: decisions per period by decision,
the needs-review and error rates, latency percentiles, and how corrections agree per template."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from triage.errors import TriageError
from triage.log.labels import KINDS
from triage.log.stats import stats
from triage.web.charts import Series, bar_rows, lines, stacked_bars
from triage.web.pages import filter_values, filters_from, percent, render, store_of

# What a period's bar is made of: the decisions made, then the statuses that are not decisions.
NOT_DECIDED = ("needs-review", "error", "unparseable")


def stats_page(request: Request) -> Response:
    values = filter_values(request.query_params)
    by = "week" if request.query_params.get("by") == "week" else "day"
    try:
        report = stats(store_of(request), filters_from(request.query_params), by=by)
    except TriageError as exc:
        return render(request, "stats.html", status=400, values=values, by=by, report=None, error=str(exc))
    return render(
        request, "stats.html", values=values, by=by, report=report, charts=charts(report), error=None
    )


def charts(report: dict[str, Any]) -> list[Markup]:
    """The report's charts, in the order the page shows them."""
    periods = report["periods"]
    labels = [p["period"] for p in periods]
    per = "day" if report["by"] == "day" else "week"
    decided = [Series(kind, [p["decisions"][kind] for p in periods]) for kind in KINDS]
    undecided = [Series(status, [p["statuses"][status] for p in periods]) for status in NOT_DECIDED]
    rates = [
        Series("needs-review rate", [p["needs_review_rate"] for p in periods]),
        Series("error rate", [p["error_rate"] for p in periods]),
    ]
    latency = [Series(name, [p["latency_ms"][name] for p in periods]) for name in ("p50", "p95", "p99")]
    templates = report["templates"]
    return [
        stacked_bars(f"Decisions per {per}, by decision", labels, decided + undecided),
        lines(f"Needs-review and error rates per {per}", labels, rates, percent),
        lines(f"Run latency per {per} (percentiles)", labels, latency, _milliseconds),
        bar_rows(
            "Corrections agreeing with the decision, per template",
            [(t["template_hash"], t["agreement_rate"]) for t in templates],
            percent,
        ),
        bar_rows(
            "Decisions corrected, per template",
            [(t["template_hash"], t["correction_rate"]) for t in templates],
            percent,
        ),
    ]


def _milliseconds(value: float) -> str:
    return f"{value:,.0f} ms"
