"""The store's database: the engine, its SQLite settings, and migrations run by one process at a time.

SQLite (WAL) by default; any SQLAlchemy URL is accepted. Reading transactions take no lock. Writing
ones (`writer()`) take SQLite's write lock when they begin: a transaction that reads and then writes
would otherwise take the lock only at its first write, and fail at once ("database is locked",
whatever the busy timeout) when another process wrote since its read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from triage.errors import ConfigError, StoreFailed, TriageError

# The newest migration in migrations/versions (a test keeps the two in step).
SCHEMA_HEAD = "0015"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The advisory lock that PostgreSQL processes take to migrate one at a time (any constant will do).
_MIGRATION_LOCK = 0x7472696167
_BUSY_TIMEOUT_S = 30  # how long SQLite waits for another writer's lock; `?timeout=S` in the URL


def open_engine(url: str) -> Engine:
    """An engine for `url`, connecting lazily: nothing is created yet."""
    try:
        parsed = make_url(url)
        sqlite = parsed.get_backend_name() == "sqlite"
        waits = sqlite and "timeout" not in parsed.query  # else the URL's own, passed on by pysqlite
        engine = create_engine(parsed, connect_args={"timeout": _BUSY_TIMEOUT_S} if waits else {})
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"store.url is not a valid SQLAlchemy URL: {exc}") from None
    except (ImportError, SQLAlchemyError) as exc:
        raise ConfigError(f"store.url {safe_url(url)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def existing_engine(url: str, *, up_to_date: bool = False) -> Engine | None:
    """None where an SQLite file does not exist yet (nothing is created); else an engine for `url`,
    its schema brought up to date where `up_to_date` asks (a store only read needs not)."""
    engine = open_engine(url)  # connects lazily: nothing is created yet
    if engine.dialect.name == "sqlite":
        database = engine.url.database or ""
        if database in ("", ":memory:") or not Path(database).exists():
            return None
    return migrated(engine) if up_to_date else engine


def migrated_engine(url: str) -> Engine:
    """An engine for `url` whose schema is brought up to date, by this process or another."""
    return migrated(open_engine(url))


def migrated(engine: Engine) -> Engine:
    """The engine, its schema brought up to date by this process or another."""
    try:
        with engine.connect() as connection:
            current = _schema_version(connection) == SCHEMA_HEAD
        if not current:
            # One process migrates; the others wait for its lock and find the schema current.
            with writer(engine).begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
                if _schema_version(connection) != SCHEMA_HEAD:
                    _migrate(connection)
    except OperationalError as exc:
        raise TriageError(f"cannot open store {safe_url(str(engine.url))}: {one_line(exc)}") from None
    return engine


def writer(engine: Engine) -> Engine:
    """The engine for writes: on SQLite its transactions take the write lock when they begin."""
    return engine.execution_options(sqlite_begin="BEGIN IMMEDIATE")


def store_failed(exc: SQLAlchemyError) -> StoreFailed:
    """One line a user can act on; nothing is lost, as unrecorded mail stays undecided."""
    reason = one_line(exc)
    hints = {
        "locked": "another program holds a lock on it",
        "readonly": "the file or its folder is read-only",
        "read-only": "the file or its folder is read-only",
        "disk": "is the disk full?",
        "full": "is the disk full?",
    }
    hint = next((text for word, text in hints.items() if word in reason.lower()), "")
    return StoreFailed(
        f"cannot write the decision log ({reason}{'; ' + hint if hint else ''}); stopping."
        " Mail not yet recorded stays undecided and is triaged at the next start"
    )


def as_store_error(exc: BaseException) -> StoreFailed | None:
    """The store's one line for a database failure (locked past its timeout, disk full, read-only)."""
    return store_failed(exc) if isinstance(exc, OperationalError) else None


def one_line(exc: SQLAlchemyError) -> str:
    return " ".join(str(getattr(exc, "orig", None) or exc).split())


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(unparsable URL)"


def _schema_version(connection: Connection) -> str | None:
    """The store's migration revision, read without loading Alembic (most starts need none)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _migrate(connection: Connection) -> None:
    from alembic import command  # imported only when the schema has to change: it is slow to load
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # transactions begin where SQLAlchemy says (_sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql(connection.get_execution_options().get("sqlite_begin", "BEGIN"))
