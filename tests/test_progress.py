"""The progress line a backfill prints on stderr where no terminal shows a bar."""

from __future__ import annotations

import io

from triage.progress import Progress


def test_the_line_says_how_many_runs_are_allowed_in_flight_now() -> None:
    stream = io.StringIO()
    progress = Progress("backfill", stream=stream, interval_s=0)
    progress.set_total(3)
    progress.advance(10)
    progress.advance(7)
    lines = stream.getvalue().splitlines()
    assert [line.startswith(f"backfill: {n}/3 messages, ") for n, line in enumerate(lines, 1)] == [True, True]
    assert [line.rpartition(", ")[2] for line in lines] == ["concurrency 10", "concurrency 7"]
