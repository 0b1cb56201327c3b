"""Shared fixtures: a real `langgraph dev` serving the reference assistant, a private Dovecot.

Where a server is not installed the tests that need it skip with the reason, except in CI
(`CI=true`), where a missing server is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from dovecot import DOVECOT, DovecotServer

from triage.devserver import DevServer
from triage.store import Store

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, reason: str) -> None:
    if not available:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def langgraph_server() -> Iterator[DevServer]:
    require(
        shutil.which("langgraph") is not None, "langgraph dev is not installed (pip install -e '.[server]')"
    )
    with DevServer(jobs=32) as server:
        yield server


def _dovecot_available() -> bool:
    return Path(DOVECOT).exists() and os.geteuid() == 0


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    require(_dovecot_available(), "dovecot (Debian dovecot-imapd) is not installed, or not running as root")
    server = DovecotServer.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def dovecot_tls() -> Iterator[DovecotServer]:
    require(_dovecot_available(), "dovecot (Debian dovecot-imapd) is not installed, or not running as root")
    server = DovecotServer.start(tls=True)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A SQLite store's file, not yet made."""
    return tmp_path / "triage.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    """A migrated store in `db`, closed after the test."""
    opened = Store.open(f"sqlite:///{db}")
    yield opened
    opened.close()
