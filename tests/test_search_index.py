"""The full-text index of the log (SQLite's FTS5) holds exactly the decided messages.

Each step goes through the store's own writes; after each, FTS5's integrity check compares the
index with the content it reads from, so a trigger that forgot or doubled a row fails here.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

from triage.message import Email, parse_email
from triage.sources import RawMessage
from triage.store import Claim, Outcome, Store, mailboxes
from triage.store.engine import MIGRATIONS
from triage.store.retention import purge


def _email(word: str) -> Email:
    raw = (
        f"From: a@example.com\r\nSubject: About {word}\r\nMessage-ID: <{word}@x>\r\n\r\nThe {word} body.\r\n"
    )
    email = parse_email(raw.encode(), 4000)
    assert isinstance(email, Email)
    return email


def _found(db: Path, word: str) -> list[int]:
    """Decision ids whose subject, sender, body or reason has the word; the index checked first."""
    with sqlite3.connect(db) as connection:
        connection.execute(
            "INSERT INTO decisions_search(decisions_search, rank) VALUES ('integrity-check', 1)"
        )
        query = "SELECT rowid FROM decisions_search WHERE decisions_search MATCH ? ORDER BY rowid"
        return [row[0] for row in connection.execute(query, (f'"{word}"',))]


def test_a_decision_is_searchable_once_decided_and_follows_every_change(store: Store, db: Path) -> None:
    mailboxes.note(store, "acct", "INBOX", 1)
    raw = RawMessage("acct", "INBOX", 1, 1, b"x")
    email = _email("quetzal")
    claimed = store.claim(raw, email, Claim("prompt", "hash", "agent", {}))
    assert claimed is not None
    assert _found(db, "quetzal") == []  # pending: a run in flight

    store.record(claimed, Outcome("ok", "ignore", reason="a newsletter about axolotls"))
    decision = claimed.decision_pk
    assert _found(db, "quetzal") == [decision]
    assert _found(db, "axolotls") == [decision]

    assert mailboxes.reopen(store, "acct", "ok", None) == {"INBOX": {1}}
    assert _found(db, "quetzal") == []

    claimed_again = store.claim(raw, email, Claim("prompt", "hash", "agent", {}))
    assert claimed_again is not None
    store.record(claimed_again, Outcome("ok", "new-task", title="T", reason="a request about narwhals"))
    assert _found(db, "narwhals") == [decision]
    assert _found(db, "axolotls") == []

    purge(store, datetime.now(UTC) + timedelta(days=1), keep_decisions=True)
    assert _found(db, "body") == []  # the body is forgotten; subject and reason stay searchable
    assert _found(db, "quetzal") == [decision]
    assert _found(db, "narwhals") == [decision]

    purge(store, datetime.now(UTC) + timedelta(days=1), keep_decisions=False)
    assert _found(db, "quetzal") == []


def test_an_unparseable_message_and_a_failed_run_are_indexed_when_recorded(store: Store, db: Path) -> None:
    assert store.record_unparseable(RawMessage("acct", "INBOX", 1, 1, b"\x00"), "not mail")
    claimed = store.claim(RawMessage("acct", "INBOX", 1, 2, b"x"), _email("okapi"), Claim("p", "h", "a", {}))
    assert claimed is not None
    store.record(claimed, Outcome("error", error_kind="timeout", error_text="no answer"))
    assert _found(db, "okapi") == [claimed.decision_pk]


def test_upgrading_takes_pending_decisions_out_of_an_existing_index(db: Path) -> None:
    url = f"sqlite:///{db}"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0008")
    engine.dispose()
    with sqlite3.connect(db) as connection:
        for uid, status, word in ((1, "pending", "quetzal"), (2, "ok", "narwhal")):
            connection.execute(
                "INSERT INTO messages (id, account, mailbox, uidvalidity, uid, size, subject, first_seen_at)"
                " VALUES (?, 'acct', 'INBOX', 1, ?, 1, ?, '2026-11-01 00:00:00')",
                (uid, uid, f"About {word}"),
            )
            connection.execute(
                "INSERT INTO decisions (id, message_pk, status, decided_by, attempts, routing_attempts,"
                " created_at, updated_at) VALUES (?, ?, ?, 'run', 0, 0, '2026-11-01', '2026-11-01')",
                (uid, uid, status),
            )
        found = "SELECT rowid FROM decisions_search WHERE decisions_search MATCH ?"
        assert connection.execute(found, ('"quetzal"',)).fetchall() == [(1,)]  # indexed at 0008
    Store.open(url).close()
    assert _found(db, "quetzal") == []
    assert _found(db, "narwhal") == [2]
