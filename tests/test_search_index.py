"""The full-text index of the log holds exactly the decided messages: SQLite's FTS5 index, and
PostgreSQL's `decisions.search_document`.

Each step goes through the store's own writes; after each, an integrity check compares the index
with the content it is made from (FTS5's own on SQLite; on PostgreSQL every row's document against
one made afresh), so a trigger that forgot or doubled a row fails here. Words are then looked up
the way `triage log -q` does.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from triage.log.query import Filters, entries
from triage.message import Email, parse_email
from triage.sources import RawMessage
from triage.store import mailboxes
from triage.store.decisions import Claim, Outcome, Store
from triage.store.engine import MIGRATIONS
from triage.store.retention import purge

# Decided rows whose stored search document is not the one their text makes (PostgreSQL).
_STALE_DOCUMENTS = """
SELECT count(*) FROM decisions d JOIN messages m ON m.id = d.message_pk
WHERE d.search_document IS DISTINCT FROM CASE WHEN d.status <> 'pending'
      THEN triage_search_document(m.subject, m.sender, m.body_excerpt, d.reason) END
"""


def _email(word: str) -> Email:
    raw = (
        f"From: a@example.com\r\nSubject: About {word}\r\nMessage-ID: <{word}@x>\r\n\r\nThe {word} body.\r\n"
    )
    email = parse_email(raw.encode(), 4000)
    assert isinstance(email, Email)
    return email


def _found(store: Store, words: str) -> list[int]:
    """Decision ids whose subject, sender, body or reason has the words; the index checked first."""
    with store.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            check = "INSERT INTO decisions_search(decisions_search, rank) VALUES ('integrity-check', 1)"
            connection.execute(text(check))
        else:
            assert connection.execute(text(_STALE_DOCUMENTS)).scalar_one() == 0
    return sorted(row["id"] for row in entries(store.engine, Filters(text=words)))


def test_a_decision_is_searchable_once_decided_and_follows_every_change(any_store: Store) -> None:
    store = any_store
    mailboxes.note(store, "acct", "INBOX", 1)
    raw = RawMessage("acct", "INBOX", 1, 1, b"x")
    email = _email("quetzal")
    claimed = store.claim(raw, email, Claim("prompt", "hash", "agent", {}))
    assert claimed is not None
    assert _found(store, "quetzal") == []  # pending: a run in flight

    store.record(claimed, Outcome("ok", "ignore", reason="a newsletter about axolotls"))
    decision = claimed.decision_pk
    assert _found(store, "quetzal") == [decision]
    assert _found(store, "axolotls") == [decision]

    assert mailboxes.reopen(store, "acct", "ok", None) == {"INBOX": {1}}
    assert _found(store, "quetzal") == []

    claimed_again = store.claim(raw, email, Claim("prompt", "hash", "agent", {}))
    assert claimed_again is not None
    store.record(claimed_again, Outcome("ok", "new-task", title="T", reason="a request about narwhals"))
    assert _found(store, "narwhals") == [decision]
    assert _found(store, "axolotls") == []

    purge(store, datetime.now(UTC) + timedelta(days=1), keep_decisions=True)
    assert _found(store, "body") == []  # the body is forgotten; subject and reason stay searchable
    assert _found(store, "quetzal") == [decision]
    assert _found(store, "narwhals") == [decision]

    purge(store, datetime.now(UTC) + timedelta(days=1), keep_decisions=False)
    assert _found(store, "quetzal") == []


def test_an_unparseable_message_and_a_failed_run_are_indexed_when_recorded(any_store: Store) -> None:
    store = any_store
    assert store.record_unparseable(RawMessage("acct", "INBOX", 1, 1, b"\x00"), "not mail")
    claimed = store.claim(RawMessage("acct", "INBOX", 1, 2, b"x"), _email("okapi"), Claim("p", "h", "a", {}))
    assert claimed is not None
    store.record(claimed, Outcome("error", error_kind="timeout", error_text="no answer"))
    assert _found(store, "okapi") == [claimed.decision_pk]


def test_upgrading_takes_pending_decisions_out_of_an_existing_index(db: Path) -> None:
    url = f"sqlite:///{db}"
    _migrate_to(url, "0008")
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
    store = Store.open(url)
    assert _found(store, "quetzal") == []
    assert _found(store, "narwhal") == [2]
    store.close()


@pytest.mark.integration
def test_upgrading_a_postgresql_store_indexes_what_it_holds_already(postgres_url: str) -> None:
    _migrate_to(postgres_url, "0013")
    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        for uid, status, word in ((1, "pending", "quetzal"), (2, "ok", "narwhal")):
            connection.execute(
                text(
                    "INSERT INTO messages (id, account, mailbox, uidvalidity, uid, size, subject, first_seen_at)"
                    " VALUES (:uid, 'acct', 'INBOX', 1, :uid, 1, :subject, '2026-11-01 00:00:00+00')"
                ),
                {"uid": uid, "subject": f"About {word}"},
            )
            connection.execute(
                text(
                    "INSERT INTO decisions (id, message_pk, status, decided_by, attempts, routing_attempts,"
                    " created_at, updated_at, reason)"
                    " VALUES (:uid, :uid, :status, 'run', 0, 0, '2026-11-01', '2026-11-01', 'a reason')"
                ),
                {"uid": uid, "status": status},
            )
    engine.dispose()
    store = Store.open(postgres_url)
    assert _found(store, "quetzal") == []  # pending: not indexed
    assert _found(store, "narwhal") == [2]
    assert _found(store, "reason") == [2]
    store.close()


@pytest.mark.parametrize(
    ("words", "found"),
    [
        ("alice", True),  # a part of an address: the index splits addresses as FTS5 does
        ("example*", True),
        ("ALICE@EXAMPLE.COM", True),  # an address is the phrase of its parts, in any case
        ("invoice-2026", True),
        ("invoice 2026", True),  # all words, anywhere
        ("2026 invoice", True),
        ('"quarterly invoice"', True),  # quotes are not syntax: the word's letters count
        ("invo*", True),
        ("invo", False),  # a word is whole unless it ends in *
        ("2026-invoice", False),  # the parts of a word are a phrase, in order
        ("quetzal nowhere", False),
        ("axolotl*", True),  # the reason is searched too
    ],
)
def test_search_words_mean_the_same_on_every_store(any_store: Store, words: str, found: bool) -> None:
    raw = (
        b"From: Alice <alice@example.com>\r\nSubject: Quarterly invoice-2026\r\n"
        b"Message-ID: <q@x>\r\n\r\nThe quetzal body.\r\n"
    )
    email = parse_email(raw, 4000)
    assert isinstance(email, Email)
    claimed = any_store.claim(RawMessage("acct", "INBOX", 1, 1, raw), email, Claim("p", "h", "a", {}))
    assert claimed is not None
    any_store.record(claimed, Outcome("ok", "ignore", reason="About axolotls"))
    assert _found(any_store, words) == ([claimed.decision_pk] if found else [])


def _migrate_to(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()
