"""The names a decision can have: light enough for the command line to offer them as choices."""

from __future__ import annotations

LABELS = ("new-task", "existing-thread", "ignore", "needs-review")
STATUSES = ("ok", "needs-review", "error", "unparseable", "pending")
KINDS = ("new-task", "existing-thread", "ignore")


def label(status: str, decision: str | None) -> str:
    """A decision's label in the matrices: its decision when `ok`, else its status."""
    return decision if status == "ok" and decision else status
