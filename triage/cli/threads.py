"""`triage threads`: the thread registry, and closing a thread."""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    threads = commands.add_parser("threads", help="the threads new tasks started; close one")
    threads.add_argument("--status", choices=("open", "closed"), help="only open or closed threads")
    threads.add_argument("--json", action="store_true", help="one JSON object per thread")
    threads.set_defaults(handler=cmd_threads)
    actions = threads.add_subparsers(dest="action", metavar="ACTION")
    close = actions.add_parser("close", help="close a thread: it is no longer offered as a candidate")
    close.add_argument("thread_id")
    close.set_defaults(handler=cmd_close)


def cmd_threads(args: argparse.Namespace) -> int:
    from triage.config import load_settings
    from triage.store import thread_registry as registry
    from triage.store.decisions import Store
    from triage.store.tables import as_utc

    with Store.existing(load_settings(args.config).store.url) as store:
        found = registry.list_threads(store, args.status) if store is not None else []
    for thread in found:
        if args.json:
            record = {
                "id": thread.id,
                "title": thread.title,
                "status": thread.status,
                "account": thread.account,
                "mailbox": thread.mailbox,
                "participants": thread.participants,
                "started_by": thread.started_by,
                "created_at": as_utc(thread.created_at).isoformat(),
                "last_activity_at": as_utc(thread.last_activity_at).isoformat(),
            }
            print(json.dumps(record))
        else:
            active = as_utc(thread.last_activity_at)
            print(f"{thread.id}  {thread.status:<6}  {active:%Y-%m-%d %H:%M}  {thread.title}")
    if not found and not args.json:
        print("no threads yet")
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    from triage.config import load_settings
    from triage.store import thread_registry as registry
    from triage.store.decisions import Store

    store = Store.open(load_settings(args.config).store.url)
    try:
        registry.close(store, args.thread_id)
    finally:
        store.close()
    print(f"closed {args.thread_id}")
    return 0
