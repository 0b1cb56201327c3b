"""`triage watch`, `triage status` and `triage retry`."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, date, datetime

from triage import logs
from triage.backfill import BackfillPlan
from triage.cli.backfill import print_summary, run_backfill_on
from triage.config import load_settings
from triage.sources.imap import ImapSource
from triage.store import Store
from triage.store import watchers as leases
from triage.watch import Daemon, Target


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = commands.add_parser("watch", help="triage new mail as it arrives, until stopped")
    watch.add_argument(
        "--mailbox", action="append", help="mailbox to watch (repeatable; default: imap.mailboxes)"
    )
    watch.add_argument(
        "--wait", action="store_true", help="wait for another daemon's lease instead of refusing"
    )
    watch.add_argument("--account", help="only this account (default: every configured account)")
    watch.add_argument("--log-format", choices=("text", "json"), default="text", help="stderr log format")
    watch.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    watch.add_argument(
        "--dry-run",
        action="store_true",
        help="triage and record, but carry nothing out (no threads, flags or moves): log what it would do",
    )
    watch.set_defaults(handler=cmd_watch)

    status = commands.add_parser("status", help="per watched mailbox: connection, backlog, failures")
    status.add_argument("--json", action="store_true", help="one JSON object per mailbox")
    status.set_defaults(handler=cmd_status)

    retry = commands.add_parser("retry", help="run chosen recorded messages again")
    retry.add_argument("--status", choices=("error", "needs-review"), default="error")
    retry.add_argument("--account", help="only this account (default: every configured account)")
    retry.add_argument("--since", type=date.fromisoformat, help="only those recorded on or after YYYY-MM-DD")
    retry.add_argument("--quiet", action="store_true", help="no line per message, only the summary")
    retry.add_argument("--dry-run", action="store_true", help="list what would run again; change nothing")
    retry.set_defaults(handler=cmd_retry)


def cmd_watch(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    logs.configure(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    accounts = settings.mail_accounts(args.account)
    several = len(accounts) > 1
    targets = [
        Target(imap, mailbox, f"{imap.account_name}/{mailbox}" if several else mailbox)
        for imap in accounts
        for mailbox in (args.mailbox or imap.mailboxes)
    ]
    return Daemon(settings, targets, wait_for_lease=args.wait, dry_run=args.dry_run).run()


def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    store = Store.open_existing(settings.store.url)
    found = leases.statuses(store) if store is not None else []
    now = datetime.now(UTC)
    stale_after = settings.watch.lease_s
    for status in found:
        alive = status.state != "stopped" and (now - status.heartbeat_at).total_seconds() <= stale_after
        if args.json:
            print(json.dumps({**_as_dict(status), "alive": alive}, default=str))
        else:
            state = status.state if alive or status.state == "stopped" else f"stale ({status.state})"
            link = "connected" if status.connected and alive else "offline"
            print(
                f"{status.mailbox:<20} {state:<14} {link:<10} "
                f"idle since {_hm(status.idle_since)}  last uid {status.last_seen_uid or '-'}  "
                f"last decision {_hm(status.last_decision_at)}  backlog {status.backlog}  "
                f"failures {status.failures}" + (f"  ({status.last_error})" if status.last_error else "")
            )
    if not found and not args.json:
        print("no mailbox has been watched with this store")
    return 0


def _as_dict(status: leases.WatcherStatus) -> dict[str, object]:
    return {name: getattr(status, name) for name in status.__slots__}


def _hm(when: datetime | None) -> str:
    return "-" if when is None else f"{when:%Y-%m-%d %H:%M:%S}"


def cmd_retry(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    status = 0
    for imap in settings.mail_accounts(args.account):
        store = Store.open(settings.store.url)
        try:
            if args.dry_run:
                chosen = store.reopenable(imap.account_name, args.status, args.since)
            else:
                chosen = store.reopen(imap.account_name, args.status, args.since)
        finally:
            store.close()
        if not chosen:
            print(f"{imap.account_name}: no {args.status} decisions to retry")
            continue
        if args.dry_run:
            for mailbox, uids in sorted(chosen.items()):
                listed = ", ".join(str(uid) for uid in sorted(uids))
                print(f"{imap.account_name}/{mailbox}: would run {len(uids)} again: uids {listed}")
            continue
        plan = BackfillPlan(
            mailboxes=sorted(chosen),
            concurrency=settings.langgraph.max_concurrency,
            only_uids=chosen,
            circuit_breaker=settings.langgraph.circuit_breaker,
        )
        summary = run_backfill_on(
            settings, ImapSource(imap, writable=settings.has_mailbox_actions), plan, quiet=args.quiet
        )
        status = max(status, print_summary(summary, plan))
    return status
