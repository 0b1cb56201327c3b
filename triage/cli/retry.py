"""`triage retry`: run chosen recorded messages again."""

from __future__ import annotations

import argparse
from datetime import date

from triage.cli.backfill import print_summary, run_backfill_on


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retry = commands.add_parser("retry", help="run chosen recorded messages again")
    retry.add_argument("--status", choices=("error", "needs-review"), default="error")
    retry.add_argument("--account", help="only this account (default: every configured account)")
    retry.add_argument("--since", type=date.fromisoformat, help="only those recorded on or after YYYY-MM-DD")
    retry.add_argument("--quiet", action="store_true", help="no line per message, only the summary")
    retry.add_argument("--dry-run", action="store_true", help="list what would run again; change nothing")
    retry.set_defaults(handler=cmd_retry)


def cmd_retry(args: argparse.Namespace) -> int:
    from triage.backfill import BackfillPlan
    from triage.config import load_settings
    from triage.sources.imap import ImapSource
    from triage.store import mailboxes
    from triage.store.decisions import Store

    settings = load_settings(args.config)
    status = 0
    for imap in settings.mail_accounts(args.account):
        store = Store.open(settings.store.url)
        try:
            if args.dry_run:
                chosen = mailboxes.reopenable(store, imap.account_name, args.status, args.since)
            else:
                chosen = mailboxes.reopen(store, imap.account_name, args.status, args.since)
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
