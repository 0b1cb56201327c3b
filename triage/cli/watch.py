"""`triage watch`: the daemon."""

from __future__ import annotations

import argparse


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


def cmd_watch(args: argparse.Namespace) -> int:
    import logging

    from triage.cli import stderr_logging
    from triage.config import load_settings
    from triage.mailbox_watcher import Target
    from triage.watch import Daemon

    settings = load_settings(args.config)
    stderr_logging.configure(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    accounts = settings.mail_accounts(args.account)
    several = len(accounts) > 1
    targets = [
        Target(imap, mailbox, f"{imap.account_name}/{mailbox}" if several else mailbox)
        for imap in accounts
        for mailbox in (args.mailbox or imap.mailboxes)
    ]
    return Daemon(settings, targets, wait_for_lease=args.wait, dry_run=args.dry_run).run()
