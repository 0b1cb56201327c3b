"""IDLE through the real client against a real Dovecot, over TLS too: news is seen at once, and
a quiet mailbox just times out."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import SecretStr

from tests.support.dovecot import DovecotServer
from triage.config import ImapSettings
from triage.sources.imap import ImapSource

pytestmark = pytest.mark.integration


def _mail(n: int) -> bytes:
    return f"From: a@example.com\r\nSubject: idle {n}\r\nMessage-ID: <idle-{n}@x>\r\n\r\nhi\r\n".encode()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_idle_sees_news_at_once_and_times_out_when_quiet(
    tls: bool, dovecot: DovecotServer, dovecot_tls: DovecotServer
) -> None:
    server = dovecot_tls if tls else dovecot
    settings = ImapSettings(
        host="127.0.0.1",
        port=server.tls_port if tls else server.port,
        tls="implicit" if tls else "none",
        ca_file=server.ca_file if tls else None,
        username=server.username,
        password=SecretStr(server.password),
        timeout_s=10,
    )
    source = ImapSource(settings)
    try:
        source.select("INBOX")
        started = time.monotonic()
        assert source.idle_until_change(1.0, lambda: False) is False
        assert 0.9 <= time.monotonic() - started < 5

        server.append([_mail(1)])  # lands before IDLE starts: reported with the continuation
        started = time.monotonic()
        assert source.idle_until_change(10.0, lambda: False) is True
        assert time.monotonic() - started < 5

        later = threading.Timer(0.5, server.append, args=([_mail(2)],))
        later.start()
        started = time.monotonic()
        assert source.idle_until_change(10.0, lambda: False) is True
        assert time.monotonic() - started < 5
        later.join()
        assert source.uids() == [1, 2]
    finally:
        source.close()
