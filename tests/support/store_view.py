"""Read a triage SQLite store with plain sqlite3, independently of triage's own code."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def rows(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as connection:
        return list(connection.execute(sql, params))


def outcomes(db: Path) -> dict[int, tuple[str, str | None, int]]:
    """uid -> (status, decision, attempts), one entry per message; fails on a duplicate uid."""
    found = rows(
        db,
        "SELECT m.uid, d.status, d.decision, d.attempts FROM messages m "
        "JOIN decisions d ON d.message_pk = m.id",
    )
    result = {
        int(uid): (str(status), decision, int(attempts))  # type: ignore[arg-type]
        for uid, status, decision, attempts in found
    }
    assert len(result) == len(found), "a uid was recorded twice"
    return result  # type: ignore[return-value]


def final_count(db: Path) -> int:
    """Decisions with a final status so far; 0 while the store is still being created."""
    try:
        found = rows(
            db, "SELECT count(*) FROM decisions WHERE status IN ('ok', 'needs-review', 'unparseable')"
        )
    except sqlite3.OperationalError:
        return 0
    return int(found[0][0])  # type: ignore[call-overload]
