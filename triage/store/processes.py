"""The triage processes working on a store, so that a claim lives exactly as long as its owner.

Every process that claims messages or routing steps registers itself here and keeps a heartbeat.
A claim names its owner; it may be taken by another process only once that owner's row is gone.
Rows go when a process stops cleanly, when their heartbeat is older than the lease, and at once
when their process is on this host and no longer exists (a SIGKILLed process restarted at once
must not wait for its own leftovers). A live process's claims are never taken, however long its
run takes.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from triage.clock import utc_now
from triage.store import tables

if TYPE_CHECKING:
    from triage.store.decisions import Store

log = logging.getLogger("triage.store")

_PROCESSES = tables.processes
# A claim is live while its owner's row is: the statements that take claims test this.
LIVE_OWNERS = select(_PROCESSES.c.id)


def new_owner_id() -> str:
    """host:pid:nonce: the nonce keeps apart two stores opened in one process, and a process from
    a dead one whose pid it was given (that one's claims then wait for its lease to end)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with this pid exists (one we may not signal does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(store: Store, lease_s: float) -> int:
    """Forget processes that are gone: a heartbeat older than the lease, or a dead pid here."""
    host, me = socket.gethostname(), store.owner
    with store.sessions.begin() as session:
        stale = _PROCESSES.c.heartbeat_at < utc_now() - timedelta(seconds=lease_s)
        gone = session.execute(delete(_PROCESSES).where(stale)).rowcount  # type: ignore[attr-defined]
        local = session.execute(select(_PROCESSES.c.id, _PROCESSES.c.pid).where(_PROCESSES.c.host == host))
        dead = [owner for owner, pid in local if owner != me and not pid_alive(pid)]
        if dead:
            session.execute(delete(_PROCESSES).where(_PROCESSES.c.id.in_(dead)))
    return int(gone or 0) + len(dead)


def beat(store: Store, command: str, run_concurrency: int | None = None) -> None:
    """Renew this process's row; write it again if another process reaped it as stale."""
    now = utc_now()
    news = {"heartbeat_at": now, "run_concurrency": run_concurrency}
    with store.sessions.begin() as session:
        renewed = session.execute(
            update(_PROCESSES).where(_PROCESSES.c.id == store.owner).values(**news)
        ).rowcount  # type: ignore[attr-defined]
        if not renewed:
            host, pid, _ = store.owner.split(":")
            session.execute(
                insert(_PROCESSES).values(
                    id=store.owner, host=host, pid=int(pid), command=command, started_at=now, **news
                )
            )


def run_concurrency(store: Store) -> dict[str, int]:
    """host:pid -> the runs each registered process lets be in flight now (where it said)."""
    query = select(_PROCESSES.c.host, _PROCESSES.c.pid, _PROCESSES.c.run_concurrency).where(
        _PROCESSES.c.run_concurrency.is_not(None)
    )
    with store.engine.connect() as connection:
        return {f"{host}:{pid}": int(limit) for host, pid, limit in connection.execute(query)}


def live(store: Store, command: str, lease_s: float) -> int:
    """How many processes running `command` have a heartbeat younger than the lease."""
    fresh = _PROCESSES.c.heartbeat_at >= utc_now() - timedelta(seconds=lease_s)
    query = select(func.count()).select_from(_PROCESSES).where(_PROCESSES.c.command == command, fresh)
    with store.engine.connect() as connection:
        return int(connection.scalar(query) or 0)


def leave(store: Store) -> None:
    """A clean stop: this process's remaining claims are free at once."""
    with store.sessions.begin() as session:
        session.execute(delete(_PROCESSES).where(_PROCESSES.c.id == store.owner))


@contextmanager
def registered(
    store: Store,
    command: str,
    *,
    heartbeat_s: float,
    lease_s: float,
    run_concurrency: Callable[[], int | None] = lambda: None,
) -> Iterator[None]:
    """Register this process for the duration, renewing its heartbeat on a thread of its own (with
    what `run_concurrency()` says then).

    A thread, not a task on the event loop: a loop busy for a while (a large batch, a slow parse)
    must not make the claims it holds look abandoned.
    """
    beat(store, command)
    reap(store, lease_s)
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.wait(heartbeat_s):
            try:
                beat(store, command, run_concurrency())
                reap(store, lease_s)
            except SQLAlchemyError as exc:  # the work itself reports a store that cannot be written
                log.debug("heartbeat not written: %s", exc)

    thread = threading.Thread(target=keep_alive, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        try:
            leave(store)
        except SQLAlchemyError as exc:
            log.debug("process row not removed: %s", exc)
