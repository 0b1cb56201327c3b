"""Inserts that another process may have made first: `INSERT … ON CONFLICT DO NOTHING`.

Two triage processes on one store can both find a row missing and both insert it. Each such
insert here leaves the row that won, and tells the caller whether it was this one, so no
IntegrityError ever reaches a user. SQLite and PostgreSQL take the same statement; another
database gets a plain INSERT (and a race there is an error, as before).
"""

from __future__ import annotations

import importlib
from typing import Any

from sqlalchemy import Connection, Insert, Table, insert

# The dialects whose INSERT takes ON CONFLICT DO NOTHING; each is imported when first used (the
# PostgreSQL one loads in 0.15 s, which a command on SQLite should not pay).
_WITH_ON_CONFLICT = ("sqlite", "postgresql")
# Built once per table and dialect: building a statement costs more than running it.
_BUILT: dict[tuple[str, str, str | None], Insert] = {}


def insert_new(table: Table, dialect: str, returning: str | None = None) -> Insert:
    """An INSERT that does nothing where the row (by any unique key) exists already."""
    key = (table.name, dialect, returning)
    if key not in _BUILT:
        if dialect in _WITH_ON_CONFLICT:
            dialect_insert = importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert
            statement: Insert = dialect_insert(table).on_conflict_do_nothing()
        else:
            statement = insert(table)
        _BUILT[key] = statement if returning is None else statement.returning(table.c[returning])
    return _BUILT[key]


def inserted(connection: Connection, table: Table, values: dict[str, Any] | list[dict[str, Any]]) -> bool:
    """Insert unless the row exists; True if this call made it."""
    result = connection.execute(insert_new(table, connection.dialect.name), values)
    return bool(result.rowcount)


def inserted_id(connection: Connection, table: Table, values: dict[str, Any]) -> int | None:
    """Insert unless the row exists; the new row's `id`, or None where another was there first."""
    row = connection.execute(insert_new(table, connection.dialect.name, "id"), values).first()
    return None if row is None else int(row[0])
