"""The decision log: SQLAlchemy over SQLite (WAL) by default, any SQLAlchemy URL accepted.

    engine.py           the engine, SQLite's settings, migrations run by one process at a time
    decisions.py        Store: claims, outcomes, and decisions carried over to the same mail
    transactions.py     Store's base: connections and sessions to read and write, and batches
    messages.py         what is kept of each message, and the Email rebuilt from it
    thread_registry.py  the threads new tasks started, and candidate ranking
    routing_log.py      routing outcomes on decisions, and their claims
    leases.py           one daemon per mailbox, and its health for `triage status`
    processes.py        the processes working on the store: a claim lives as long as its owner
    conflicts.py        inserts another process may have made first
    models.py           the tables (changed only through migrations/)

This module only re-exports what callers use most.
"""

from triage.store.decisions import FINAL_STATUSES, Claim, Claimed, Outcome, Store
from triage.store.engine import as_store_error, store_failed

__all__ = ["FINAL_STATUSES", "Claim", "Claimed", "Outcome", "Store", "as_store_error", "store_failed"]
