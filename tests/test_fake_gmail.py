"""The fake Gmail IMAP server, driven through triage's own IMAP client: XOAUTH2 only, folders as
labels, partial fetches."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import pytest
from pydantic import SecretStr

from tests.support.fake_gmail import ALL_MAIL, FakeGmail
from triage.config import ActionSettings, ImapSettings
from triage.errors import ConnectionLimited, LoginFailed
from triage.sources.imap import ImapSource

USER, PASSWORD, TOKEN = "me@example.com", "pw", "ya29.a0-fake-gmail-token"
THRID = 1_278_455_344_230_334_865  # a real-looking 64-bit Gmail thread id


def mail(number: int) -> bytes:
    return (
        f"From: Ann <ann@example.com>\r\nTo: {USER}\r\nSubject: Note {number}\r\n"
        f"Message-ID: <{number}@example.com>\r\n\r\nBody {number}, caf\xe9.\r\n"
    ).encode()


def settings(server: FakeGmail, secret: str | None = None, **more: object) -> ImapSettings:
    """Gmail: an access token from oauth2_token_command; a plain server: a password."""
    credential: dict[str, object] = (
        {"oauth2_token_command": f"echo {secret or TOKEN}"}
        if server.gmail
        else {"password": SecretStr(secret or PASSWORD)}
    )
    return ImapSettings.model_validate(
        {
            "host": server.host,
            "port": server.port,
            "tls": "none",
            "username": USER,
            "timeout_s": 5,
            **credential,
            **more,
        }
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
    with FakeGmail(username=USER, token=TOKEN) as server:
        yield server


def test_a_token_logs_in_by_xoauth2(gmail: FakeGmail) -> None:
    with opened(gmail) as source:
        assert source.uids() == []
    assert gmail.logins == [("XOAUTH2", USER, True)]
    assert "AUTHENTICATE XOAUTH2" in gmail.commands and not any(c.startswith("LOGIN") for c in gmail.commands)


def test_a_password_is_refused_as_gmail_refuses_it(gmail: FakeGmail) -> None:
    password_settings = ImapSettings(
        host=gmail.host, port=gmail.port, tls="none", username=USER, password=SecretStr(PASSWORD), timeout_s=5
    )
    with pytest.raises(LoginFailed, match="Application-specific password required"):
        ImapSource(password_settings)
    assert gmail.logins == [("LOGIN", USER, False)]


def test_a_login_past_gmails_connection_limit_is_a_limit_not_a_wrong_credential() -> None:
    """Gmail words it "Too many simultaneous connections": a connection to retry or do without,
    not a refused password, which would end the daemon."""
    with (
        FakeGmail(username=USER, token=TOKEN, max_connections=1) as server,
        opened(server),
        pytest.raises(ConnectionLimited, match="Too many simultaneous connections"),
    ):
        ImapSource(settings(server))
    assert not issubclass(ConnectionLimited, LoginFailed)


def test_a_wrong_token_is_refused_and_never_shown(gmail: FakeGmail, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "ya29.a0-revoked-token-7f3e"
    caplog.set_level(logging.DEBUG)  # imapclient's protocol log too
    with pytest.raises(LoginFailed, match=r"Invalid credentials") as refused:
        ImapSource(settings(gmail, wrong))
    assert gmail.logins == [("XOAUTH2", USER, False)]  # the token reached the server and was refused
    shown = str(refused.value) + caplog.text
    assert "AUTHENTICATE" in caplog.text and wrong not in shown


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
    with FakeGmail(username=USER, token=TOKEN, without=without) as server:
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


def test_folders_are_labels_copy_adds_one_and_move_relabels(gmail: FakeGmail) -> None:
    uid = gmail.add_message("INBOX", mail(1), thrid=THRID)
    with opened(gmail, writable=True) as source:
        client = source._client
        client.create_folder("Work")
        client.create_folder("Done")
        client.copy([uid], "Work")  # Gmail: the same message, labelled Work too
        assert client.get_gmail_labels([uid])[uid] == ["Work"]  # INBOX's own label is not listed
        client.add_flags([uid], [b"\\Flagged"])
        client.move([uid], "Done")  # relabelled: Done added, \\Inbox taken away
        assert client.search(["ALL"]) == []
        client.select_folder(ALL_MAIL)
        (kept,) = client.search(["ALL"])
        assert sorted(client.get_gmail_labels([kept])[kept]) == ["Done", "Work"]
    (in_work,), (in_done,) = gmail.uids("Work"), gmail.uids("Done")
    work, done = gmail.message("Work", in_work), gmail.message("Done", in_done)
    assert work.msgid == done.msgid and work.raw == mail(1)  # one message, shown in two folders
    assert work.labels == {"Done"} and done.labels == {"Work"}
    assert work.flags == done.flags == {"\\Flagged"}  # flags are the message's, in every folder
    assert gmail.uids("INBOX") == [] and len(gmail.uids(ALL_MAIL)) == 1


def test_expunging_from_a_folder_only_removes_its_label() -> None:
    without = ("MOVE",)  # so a move is COPY, \\Deleted and UID EXPUNGE
    with (
        FakeGmail(username=USER, token=TOKEN, without=without) as gmail,
        FakeGmail(username=USER, password=PASSWORD, gmail=False, without=without) as plain,
    ):
        uid = gmail.add_message("INBOX", mail(1), thrid=THRID, labels=["Work"])
        original = gmail.message("INBOX", uid).msgid
        plain_uid = plain.add_message("INBOX", mail(1), thrid=THRID)
        plain_original = plain.message("INBOX", plain_uid).msgid
        for server, moved in ((gmail, uid), (plain, plain_uid)):
            with opened(server, writable=True) as source:
                source.apply_actions(moved, ActionSettings(move_to="Done"))
        assert plain.uids("Done") == [1] and plain.uids("INBOX") == []
        assert plain.message("Done", 1).msgid != plain_original  # a plain server moved a copy
    (in_done,) = gmail.uids("Done")
    assert gmail.message("Done", in_done).msgid == original  # Gmail moved the message itself
    assert gmail.uids("INBOX") == [] and gmail.uids("Work") == [1]  # only \\Inbox was taken away
    assert gmail.message("Done", in_done).labels == {"Work"}


def test_a_large_message_is_read_from_its_structure_and_first_text_part(gmail: FakeGmail) -> None:
    """Over imap.max_message_bytes: headers, BODYSTRUCTURE and the first text part; never the rest."""
    attachment = b"QUFB" * 50_000  # 200 KB of base64
    big = (
        b"From: Ann <ann@example.com>\r\nSubject: Scans\r\nMessage-ID: <big@example.com>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe scans you asked for.\r\n"
        b"--b1\r\nContent-Type: application/pdf; name=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + attachment
        + b"\r\n--b1--\r\n"
    )
    uid = gmail.add_message("INBOX", big, thrid=THRID)
    with opened(gmail) as source:
        source.settings = settings(gmail, max_message_bytes=64 * 1024)
        before = gmail.sent_bytes
        (fetched,) = source.fetch([uid])
        sent = gmail.sent_bytes - before
    assert fetched.partial is not None and "over imap.max_message_bytes" in fetched.partial
    assert b"Subject: Scans" in fetched.raw and fetched.raw.endswith(b"The scans you asked for.")
    assert b"Content-Type: text/plain" in fetched.raw and attachment not in fetched.raw
    assert sent < len(attachment) / 10  # the attachment never crossed the wire
    fetches = [c for c in gmail.commands if c.startswith("UID FETCH")]
    assert any("BODYSTRUCTURE" in c and "BODY.PEEK[HEADER]<0.65536>" in c for c in fetches), fetches
    assert any("BODY.PEEK[1]<0.65536>" in c for c in fetches) and not any("BODY.PEEK[]" in c for c in fetches)
