"""The decision log: SQLAlchemy over SQLite (WAL) by default, any SQLAlchemy URL accepted.

    engine.py           the engine, SQLite's settings, migrations run by one process at a time
    decisions.py        Store: claims, outcomes, and decisions carried over to the same mail
    transactions.py     Store's base: connections and sessions to read and write, and batches
    messages.py         what is kept of each message, and the Email rebuilt from it
    thread_registry.py  the threads new tasks started, and candidate ranking
    routing_log.py      routing outcomes on decisions, and their claims
    leases.py           one daemon per mailbox, and its health for `triage status`
    processes.py        the processes working on the store: a claim lives as long as its owner
    mailboxes.py        each mailbox's UIDVALIDITY and watermark, and which UIDs are decided
    labels.py           the decisions people corrected, confirmed or re-filed
    moves.py            the same mail seen again under another identity: moved, or a copy
    retention.py        forgetting old mail's text, or whole rows (`triage purge`)
    conflicts.py        inserts another process may have made first
    tables.py           the tables, in SQLAlchemy Core (changed only through migrations/)
    models.py           the ORM classes mapped onto them, for code that loads whole rows

Import from the module that holds a name (`from triage.store.decisions import Store`): this
package's own import stays empty, so a reader of the log (`triage log`) loads neither the ORM nor the
repository.
"""
