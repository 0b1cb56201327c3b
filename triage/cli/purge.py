"""`triage purge`: forget mail bodies and prompts (or whole rows) before a date."""

from __future__ import annotations

import argparse

from triage.cli.log import open_log


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    purge = commands.add_parser("purge", help="forget mail bodies and prompts (or whole rows) before a date")
    purge.add_argument("--before", required=True, help="a date, date-time or age (e.g. 90d)")
    purge.add_argument(
        "--keep-decisions",
        action="store_true",
        help="keep the decision rows (counts, headers, answers); drop only bodies, prompts, responses",
    )
    purge.set_defaults(handler=cmd_purge)


def cmd_purge(args: argparse.Namespace) -> int:
    from triage.log.query import parse_when
    from triage.store.retention import purge

    before = parse_when(args.before)
    with open_log(args) as store:
        purged = purge(store, before, keep_decisions=args.keep_decisions)
    print(
        f"removed the bodies of {purged.bodies} messages and the prompts and responses of "
        f"{purged.prompts} decisions from before {before.isoformat()}"
    )
    if args.keep_decisions:
        print("the decisions are kept")
    else:
        print(f"deleted {purged.deleted_decisions} decisions and {purged.deleted_messages} messages")
        if purged.kept:
            print(f"kept {purged.kept} decisions (without bodies) whose messages the thread registry names")
    print("vacuumed the store")
    return 0
