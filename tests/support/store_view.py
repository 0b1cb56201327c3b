"""Read a triage store independently of triage's own code: a SQLite file with plain sqlite3, a
PostgreSQL database (given by its URL) through a connection of its own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import exc

from tests.support.postgres import committed_rows

# What reading a store not yet made raises: SQLite's, and PostgreSQL's through SQLAlchemy.
NOT_MADE_YET = (sqlite3.OperationalError, exc.ProgrammingError)


def rows(db: Path | str, sql: str, *params: object) -> list[tuple[object, ...]]:
    """`?` parameters; `db` a SQLite file, or a store URL of another database."""
    if isinstance(db, Path):
        with sqlite3.connect(db) as connection:
            return list(connection.execute(sql, params))
    named = sql.replace("?", "{}").format(*(f":p{n}" for n in range(len(params))))
    return committed_rows(db, named, **{f"p{n}": value for n, value in enumerate(params)})


def outcomes(db: Path | str) -> dict[int, tuple[str, str | None, int]]:
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


def final_count(db: Path | str) -> int:
    """Decisions with a final status so far; 0 while the store is still being created."""
    try:
        found = rows(
            db, "SELECT count(*) FROM decisions WHERE status IN ('ok', 'needs-review', 'unparseable')"
        )
    except NOT_MADE_YET:
        return 0
    return int(found[0][0])  # type: ignore[call-overload]
