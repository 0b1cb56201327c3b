"""How daemons on one store divide the configured mailboxes (`watch.divide`).

Every daemon reads the same config, so each knows every mailbox. With n daemons alive (their
heartbeats in the store), each holds at most ceil(mailboxes / n) leases: one over its share releases
the excess, one under it takes free leases. A daemon that starts is under its share and the others
are over theirs until it has it; a daemon that dies stops renewing its leases, which fall free for
the others once they age past `watch.lease_s`. Each lease is taken atomically, so a mailbox is
never watched by two daemons.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

Mailbox = tuple[str, str]  # (account, mailbox)


@dataclass(frozen=True)
class Change:
    take: list[Mailbox]  # free ones to try to take, in the config's order
    drop: list[Mailbox]  # held ones to release


def fair_share(mailboxes: int, daemons: int) -> int:
    return ceil(mailboxes / max(daemons, 1))


def rebalance(configured: list[Mailbox], held: set[Mailbox], taken: set[Mailbox], daemons: int) -> Change:
    """What this daemon should take or release: `taken` are the leases other live daemons hold."""
    share = fair_share(len(configured), daemons)
    mine = [mailbox for mailbox in configured if mailbox in held]
    if len(mine) > share:
        return Change(take=[], drop=mine[share:])  # the config's last ones go; INBOX stays put
    free = [mailbox for mailbox in configured if mailbox not in held and mailbox not in taken]
    return Change(take=free[: share - len(mine)], drop=[])


def connections_each(max_connections: int, daemons: int) -> int:
    """Each daemon's part of an account's connection budget (at least one)."""
    return max(1, max_connections // max(daemons, 1))
