"""Run a private PostgreSQL cluster on loopback for tests: Debian's server binaries, a temporary folder.

The cluster lives in its own folder under /tmp, owned by the user it runs as: PostgreSQL refuses to
run as root, so a root test session runs it as Debian's `postgres` user (else `nobody`), and a
session of another user runs it as that user. It listens on 127.0.0.1 only, on a free port, with
no Unix socket, and takes passwords (SCRAM) over TCP, so a URL's password is really checked.
Each test asks for a database of its own (`new_database()`), made from an empty template in a few
tens of milliseconds.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import URL, create_engine, text

from triage.store.decisions import Store

if TYPE_CHECKING:
    import psycopg

BIN = Path(os.environ.get("TRIAGE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "triage"
PASSWORD = "pg-test-secret-7f3a"  # the cluster's superuser; a test that looks for leaks looks for it
UNPRIVILEGED = ("postgres", "nobody")  # who runs the server when the tests run as root
_START_TIMEOUT_S = 60
_MIGRATED_TEMPLATE = "triage_migrated"


def unavailable() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg 3 is not installed (pip install -e '.[postgres]')"
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (BIN / name).exists()]
    if missing:
        return (
            f"PostgreSQL server binaries not found in {BIN} ({', '.join(missing)}): "
            "apt-get install postgresql-15, or set TRIAGE_TEST_PG_BIN"
        )
    if os.geteuid() == 0 and _server_user() is None:
        return f"running as root and none of the users {UNPRIVILEGED} exists to run PostgreSQL as"
    return None


def _server_user() -> pwd.struct_passwd | None:
    """The user the server runs as: this one, unless it is root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in UNPRIVILEGED:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresCluster:
    """A running private cluster; `stop()` (or leaving the `with`) shuts it down and deletes it."""

    def __init__(self) -> None:
        user = _server_user()
        assert user is not None, unavailable()
        self._user = user
        self.root = Path(tempfile.mkdtemp(prefix="triage-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._admin: psycopg.Connection[tuple[object, ...]] | None = None
        self._migrated = False  # whether the migrated template exists

    def start(self) -> PostgresCluster:
        os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        password_file = self.root / "password"
        password_file.write_text(PASSWORD)
        os.chown(password_file, self._user.pw_uid, self._user.pw_gid)
        self._run(
            "initdb", f"--pgdata={self.data}", f"--username={USER}", f"--pwfile={password_file}",
            "--auth-host=scram-sha-256", "--auth-local=reject", "--encoding=UTF8", "--locale=C.UTF-8",
            "--no-sync",
        )  # fmt: skip
        password_file.unlink()
        settings = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
        )
        self._run(
            "pg_ctl", "start", "--wait", f"--timeout={_START_TIMEOUT_S}", f"--pgdata={self.data}",
            f"--log={self.root / 'server.log'}", f"--options={settings}",
        )  # fmt: skip
        import psycopg  # only where PostgreSQL is tested: the fast tier needs no driver

        self._admin = psycopg.connect(self.conninfo("postgres"), autocommit=True)
        return self

    def conninfo(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} password={PASSWORD} dbname={database}"

    def url(self, database: str, password: str = PASSWORD) -> str:
        """A store.url for one of the cluster's databases (SQLAlchemy with psycopg 3)."""
        return f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self, *, migrated: bool = False) -> str:
        """A fresh database, empty or (`migrated`) a copy of one triage's migrations made once for
        the session, which is much faster than migrating each; its store.url."""
        template = "template0"
        if migrated:
            if not self._migrated:
                self._create(_MIGRATED_TEMPLATE, "template0")
                Store.open(self.url(_MIGRATED_TEMPLATE)).close()  # closed: a template has no sessions
                self._migrated = True
            template = _MIGRATED_TEMPLATE
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._create(name, template)
        return self.url(name)

    def _create(self, name: str, template: str) -> None:
        from psycopg import sql

        assert self._admin is not None, "the cluster is not started"
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
        self._admin.execute(create.format(sql.Identifier(name), sql.Identifier(template)))

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "--wait", "--mode=fast", f"--pgdata={self.data}")
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """The server's log, for a failure's message."""
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, program: str, *args: str) -> None:
        command: Sequence[str] = [str(BIN / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", self._user.pw_name, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{self.log()}")


def committed_rows(url: str | URL, statement: str, **params: object) -> list[tuple[object, ...]]:
    """What another process sees of any store (SQLite or PostgreSQL): its own engine and connection."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(statement), params)]
    finally:
        engine.dispose()
