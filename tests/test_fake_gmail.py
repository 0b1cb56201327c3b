"""The fake Gmail IMAP server, driven through triage's own IMAP client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import pytest
from pydantic import SecretStr

from tests.support.fake_gmail import FakeGmail
from triage.config import ActionSettings, ImapSettings
from triage.errors import LoginFailed
from triage.sources.imap import ImapSource

USER, PASSWORD = "me@example.com", "pw"
THRID = 1_278_455_344_230_334_865  # a real-looking 64-bit Gmail thread id


def mail(number: int) -> bytes:
    return (
        f"From: Ann <ann@example.com>\r\nTo: {USER}\r\nSubject: Note {number}\r\n"
        f"Message-ID: <{number}@example.com>\r\n\r\nBody {number}, caf\xe9.\r\n"
    ).encode()


def settings(server: FakeGmail, password: str = PASSWORD) -> ImapSettings:
    return ImapSettings(
        host=server.host,
        port=server.port,
        tls="none",
        username=USER,
        password=SecretStr(password),
        timeout_s=5,
    )


@contextmanager
def opened(server: FakeGmail, *, writable: bool = False) -> Iterator[ImapSource]:
    source = ImapSource(settings(server), writable=writable)
    try:
        source.select("INBOX")
        yield source
    finally:
        source.close()


@pytest.fixture
def gmail() -> Iterator[FakeGmail]:
    with FakeGmail(username=USER, password=PASSWORD) as server:
        yield server


def test_wrong_password_is_refused_and_never_recorded(gmail: FakeGmail) -> None:
    with pytest.raises(LoginFailed, match="Invalid credentials"):
        ImapSource(settings(gmail, "not-the-password"))
    assert f"LOGIN {USER} ***" in gmail.commands
    assert not any("not-the-password" in command for command in gmail.commands)


def test_select_list_and_fetch_exact_bytes_with_thread_ids(gmail: FakeGmail) -> None:
    first = gmail.add_message("INBOX", mail(1), thrid=THRID)
    second = gmail.add_message("INBOX", mail(2), thrid=THRID + 1)
    with opened(gmail) as source:
        assert source.select("INBOX") == 1
        assert source.uids() == [first, second]
        fetched = list(source.fetch([first, second]))
    assert [m.raw for m in fetched] == [mail(1), mail(2)]
    assert [m.gmail_thread_id for m in fetched] == [THRID, THRID + 1]
    assert all(m.internaldate is not None and m.uidvalidity == 1 for m in fetched)
    assert any(c.startswith("UID FETCH") and "X-GM-THRID" in c for c in gmail.commands)
    assert gmail.message("INBOX", first).flags == set()  # BODY.PEEK[]: not marked read


def test_search_by_date_uses_the_internal_date(gmail: FakeGmail) -> None:
    old = gmail.add_message("INBOX", mail(1), thrid=1, internal_date=datetime(2024, 3, 1, 12, tzinfo=UTC))
    new = gmail.add_message("INBOX", mail(2), thrid=2, internal_date=datetime(2024, 3, 5, 12, tzinfo=UTC))
    with opened(gmail) as source:
        assert source.uids(since=date(2024, 3, 2)) == [new]
        assert source.uids(before=date(2024, 3, 2)) == [old]
        assert source.uids_above(new) == []


def test_imapclient_reads_the_thread_id_as_an_int(gmail: FakeGmail) -> None:
    uid = gmail.add_message("INBOX", mail(1), thrid=THRID, labels=["\\Important", "Work"])
    with opened(gmail) as source:
        data = source._client.fetch([uid], [b"X-GM-THRID"])[uid]
        labels = source._client.get_gmail_labels([uid])[uid]
    assert data[b"X-GM-THRID"] == THRID and isinstance(data[b"X-GM-THRID"], int)
    assert sorted(labels) == ["Work", "\\Important"]


def test_actions_leave_label_and_flag_on_gmail(gmail: FakeGmail) -> None:
    uid = gmail.add_message("INBOX", mail(1), thrid=THRID, labels=["\\Important"])
    actions = ActionSettings(gmail_labels=["Triage/New"], add_flags=["$TriageNewTask"])
    with opened(gmail, writable=True) as source:
        done = source.apply_actions(uid, actions)
        assert source._client.get_gmail_labels([uid])[uid] == ["Triage/New", "\\Important"]
    assert done == ["flagged $TriageNewTask", "labelled Triage/New"]
    stored = gmail.message("INBOX", uid)
    assert stored.labels == {"\\Important", "Triage/New"}
    assert stored.flags == {"$TriageNewTask"}


def test_plain_server_skips_labels_and_thread_ids() -> None:
    with FakeGmail(username=USER, password=PASSWORD, gmail=False) as server:
        uid = server.add_message("INBOX", mail(1), thrid=THRID)
        actions = ActionSettings(gmail_labels=["Triage/New"], add_flags=["$TriageNewTask"])
        with opened(server, writable=True) as source:
            assert [m.gmail_thread_id for m in source.fetch([uid])] == [None]
            done = source.apply_actions(uid, actions)
        assert done == ["flagged $TriageNewTask", "labels skipped (the server is not Gmail)"]
        assert server.message("INBOX", uid).labels == set()
        assert not any("X-GM" in command for command in server.commands)


@pytest.mark.parametrize("without", [(), ("MOVE",)], ids=["MOVE", "COPY+EXPUNGE"])
def test_move_lands_in_the_other_mailbox(without: tuple[str, ...]) -> None:
    with FakeGmail(username=USER, password=PASSWORD, without=without) as server:
        uids = [server.add_message("INBOX", mail(n), thrid=THRID + n) for n in (1, 2, 3)]
        with opened(server, writable=True) as source:
            done = source.apply_actions(uids[0], ActionSettings(move_to="Triage/Done"))
            # Sequence numbers follow the expunge: the last message is now number 2.
            assert source._client.fetch([uids[2]], [b"FLAGS"])[uids[2]][b"SEQ"] == 2
            assert [m.raw for m in source.fetch(uids)] == [mail(2), mail(3)]
        assert done == ["moved to Triage/Done"]
        assert server.uids("INBOX") == uids[1:]
        (moved,) = server.uids("Triage/Done")
        assert server.message("Triage/Done", moved).raw == mail(1)
        assert server.message("Triage/Done", moved).thrid == THRID + 1
        assert 'CREATE "Triage/Done"' in server.commands
        verbs = {command.split(" ")[1] for command in server.commands if command.startswith("UID ")}
        assert ("MOVE" in verbs) == (not without)
        assert ({"COPY", "EXPUNGE"} <= verbs) == bool(without)


def test_idle_wakes_on_new_mail(gmail: FakeGmail) -> None:
    changed: list[bool] = []
    with opened(gmail) as source:
        watcher = threading.Thread(target=lambda: changed.append(source.idle_until_change(10, lambda: False)))
        watcher.start()
        gmail.wait_idling("INBOX", timeout=5)
        gmail.add_message("INBOX", mail(1), thrid=THRID)
        assert gmail.notify_new("INBOX") == 1
        watcher.join(30)
        assert changed == [True]
        assert source.uids() == [1]


def test_news_sent_with_the_idle_continuation_is_not_missed(gmail: FakeGmail) -> None:
    """The EXISTS comes in the same read as "+ idling": it sits in imaplib's buffer, where polling
    the socket never sees it."""
    with opened(gmail) as source:
        gmail.add_message("INBOX", mail(1), thrid=THRID)  # after SELECT: told at IDLE start
        started = time.monotonic()
        assert source.idle_until_change(10, lambda: False) is True
        assert time.monotonic() - started < 5
        assert source.uids() == [1]
