"""The watchers table: one daemon per mailbox (a lease renewed by heartbeats) and its health.

A lease is free when nobody holds it, when its holder stopped cleanly, when its heartbeat is older
than `lease_s`, or when its holder was a process on this host that no longer exists (a SIGKILLed
daemon restarted at once must not wait for the lease to age).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from triage.clock import utc_now
from triage.errors import MailboxTaken
from triage.store.decisions import Store
from triage.store.models import Watcher
from triage.store.processes import pid_alive
from triage.store.tables import as_utc

STATUS_FIELDS = (
    "state",
    "connected",
    "idle_since",
    "last_seen_uid",
    "last_decision_at",
    "backlog",
    "failures",
    "last_error",
)


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class WatcherStatus:
    account: str
    mailbox: str
    owner: str | None
    state: str
    connected: bool
    idle_since: datetime | None
    last_seen_uid: int | None
    last_decision_at: datetime | None
    backlog: int
    failures: int
    last_error: str | None
    started_at: datetime | None
    heartbeat_at: datetime


def _holder_alive(owner: str | None, heartbeat_at: datetime, lease_s: float) -> bool:
    if owner is None or utc_now() - as_utc(heartbeat_at) > timedelta(seconds=lease_s):
        return False
    host, _, pid = owner.rpartition(":")
    return host != socket.gethostname() or not pid.isdigit() or pid_alive(int(pid))


def acquire(store: Store, account: str, mailbox: str, owner: str, lease_s: float) -> None:
    """Take the mailbox's lease or raise MailboxTaken naming the holder."""
    now = utc_now()
    with store.sessions.begin() as session:
        row = session.scalar(select(Watcher).where(Watcher.account == account, Watcher.mailbox == mailbox))
        if row is None:
            session.add(
                Watcher(
                    account=account,
                    mailbox=mailbox,
                    owner=owner,
                    state="starting",
                    connected=False,
                    backlog=0,
                    failures=0,
                    started_at=now,
                    heartbeat_at=now,
                )
            )
            try:
                session.flush()
            except IntegrityError:
                raise MailboxTaken(
                    f"mailbox {mailbox!r} of {account} is being taken by another daemon"
                ) from None
            return
        if (
            row.owner != owner
            and row.state != "stopped"
            and _holder_alive(row.owner, row.heartbeat_at, lease_s)
        ):
            raise MailboxTaken(
                f"mailbox {mailbox!r} of {account} is already watched by {row.owner} "
                f"(heartbeat {as_utc(row.heartbeat_at):%H:%M:%S} UTC); use --wait to wait for it"
            )
        taken = session.execute(
            update(Watcher)
            .where(
                Watcher.id == row.id,
                Watcher.owner.is_not_distinct_from(row.owner),
                Watcher.heartbeat_at == row.heartbeat_at,
            )
            .values(
                owner=owner,
                state="starting",
                connected=False,
                failures=0,
                last_error=None,
                started_at=now,
                heartbeat_at=now,
            )
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            raise MailboxTaken(f"mailbox {mailbox!r} of {account} was just taken by another daemon")


def heartbeat(store: Store, account: str, mailbox: str, owner: str, **status: Any) -> bool:
    """Write the watcher's health; False if the lease was lost to another daemon."""
    unknown = set(status) - set(STATUS_FIELDS)
    if unknown:
        raise ValueError(f"unknown watcher fields: {sorted(unknown)}")
    with store.sessions.begin() as session:
        done = session.execute(
            update(Watcher)
            .where(Watcher.account == account, Watcher.mailbox == mailbox, Watcher.owner == owner)
            .values(heartbeat_at=utc_now(), **status)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]


def release(store: Store, account: str, mailbox: str, owner: str) -> None:
    heartbeat(store, account, mailbox, owner, state="stopped", connected=False)


def held_by_others(store: Store, owner: str, lease_s: float) -> set[tuple[str, str]]:
    """(account, mailbox) of the leases another live daemon holds."""
    return {
        (status.account, status.mailbox)
        for status in statuses(store)
        if status.owner != owner
        and status.state != "stopped"
        and _holder_alive(status.owner, status.heartbeat_at, lease_s)
    }


def statuses(store: Store) -> list[WatcherStatus]:
    with store.read_sessions() as session:
        rows = session.scalars(select(Watcher).order_by(Watcher.account, Watcher.mailbox))
        return [
            WatcherStatus(
                r.account,
                r.mailbox,
                r.owner,
                r.state,
                r.connected,
                r.idle_since,
                r.last_seen_uid,
                r.last_decision_at,
                r.backlog,
                r.failures,
                r.last_error,
                r.started_at,
                as_utc(r.heartbeat_at),
            )
            for r in rows
        ]
