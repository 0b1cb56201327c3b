"""Shared fixtures: a real `langgraph dev` serving the reference assistant, a private Dovecot.

Where a server is not installed the tests that need it skip with the reason, except in CI (`CI`
set to anything but empty, 0, false or no), where a missing server is a failure.

Two tiers: tests marked `integration` need a real Dovecot, a real `langgraph dev`, root, triage
run as a subprocess, or signals and crashes; the rest (`pytest -m "not integration"`) need none of
them and run in-process in well under a minute. A module marks itself (`pytestmark`) or its tests;
the hook below also marks any test that asks for a real server, so the fast tier never needs one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support import static_checks
from tests.support.dovecot import DOVECOT, DovecotServer
from tests.support.postgres import PostgresCluster
from tests.support.postgres import unavailable as postgres_unavailable
from tests.support.token_introspection import TokenIntrospection
from triage.devserver import DevServer
from triage.store.decisions import Store

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
# Fixtures that start a real server: a test asking for one is an integration test.
REAL_SERVERS = frozenset({"dovecot", "dovecot_tls", "dovecot_oauth2", "langgraph_server", "postgres"})
# Modules whose tests all fill their logs by real backfills, and which cannot carry their own mark.
INTEGRATION_MODULES = frozenset({"test_review.py"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needs_a_server = REAL_SERVERS & set(getattr(item, "fixturenames", ()))
        if needs_a_server or item.path.name in INTEGRATION_MODULES:
            item.add_marker(pytest.mark.integration)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the static checks this session will run now, so they run beside the other tests.

    Not in a worker of `pytest -n` (each collects every test): there the checks run when their
    test does, once, in the worker that gets it."""
    if session.config.option.collectonly or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    for item in session.items:
        if item.path.name == "test_static.py" and isinstance(item, pytest.Function):
            static_checks.start(item.callspec.params["check"])


def pytest_sessionfinish() -> None:
    static_checks.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """In CI a skip of any kind (a `skipif` too) is a failure: CI must not go green on skips."""
    report: pytest.TestReport = yield
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be: {report.longrepr}"
    return report


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


@pytest.fixture
def stateless_runs(langgraph_server: DevServer) -> Callable[[], int]:
    """How many stateless runs the session's `langgraph dev` has executed since the test began.

    A test's records cannot show a run made twice (one decision per message is the schema's
    rule), the server's count can. A worker runs its tests one at a time, so the difference is
    this test's alone."""
    base = langgraph_server.runs_started(stateless=True)
    return lambda: langgraph_server.runs_started(stateless=True) - base


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
def dovecot_oauth2() -> Iterator[tuple[DovecotServer, TokenIntrospection]]:
    """A private Dovecot that also takes XOAUTH2 and OAUTHBEARER logins, checked by the token
    introspection endpoint beside it, whose `token` is valid for the Dovecot user."""
    require(_dovecot_available(), "dovecot (Debian dovecot-imapd) is not installed, or not running as root")
    with TokenIntrospection(DovecotServer.username) as issuer:
        server = DovecotServer.start(oauth2_url=issuer.url)
        try:
            yield server, issuer
        finally:
            server.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A SQLite store's file, not yet made."""
    return tmp_path / "triage.db"


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store migrated once a session (each xdist worker its own), closed: a test's migrated
    store is a copy, as migrating each costs about a tenth of a second. Tests of migrating itself
    open a file not yet made (`db`, `store_url`)."""
    path = tmp_path_factory.mktemp("migrated") / "triage.db"
    Store.open(f"sqlite:///{path}").close()
    assert not path.with_name(f"{path.name}-wal").exists()  # all of it is in the one file
    return path


@pytest.fixture
def store(db: Path, migrated_sqlite: Path) -> Iterator[Store]:
    """A migrated store in `db`, closed after the test."""
    shutil.copyfile(migrated_sqlite, db)
    opened = Store.open(f"sqlite:///{db}")
    yield opened
    opened.close()


@pytest.fixture
def clean_triage_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """For triage called in this process: no TRIAGE_* variable from outside, the test's folder as
    the working directory (where ./triage.toml would be looked for)."""
    for name in list(os.environ):
        if name.startswith("TRIAGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster on loopback for this session (each xdist worker its own)."""
    reason = postgres_unavailable()
    require(reason is None, reason or "")
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new store: a SQLite file not yet made, then (integration tier) a fresh PostgreSQL database,
    migrated (a copy of one the session migrated: migrating each costs most of a second)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'triage.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.new_database(migrated=True)


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> str:
    """A fresh, empty PostgreSQL database's store.url."""
    return postgres.new_database()


@pytest.fixture
def any_store(store_url: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    """A migrated store at `store_url` (SQLite, then PostgreSQL), closed after the test."""
    database = make_url(store_url).database
    if store_url.startswith("sqlite") and database:
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), database)
    opened = Store.open(store_url)
    yield opened
    opened.close()
