"""`triage route`: carry out decisions recorded while carrying out was off."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from triage.config import ImapSettings, Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    route = commands.add_parser(
        "route",
        help="carry out decisions recorded with routing.execute off, or by watch --dry-run",
    )
    route.add_argument("--account", help="only this account (default: every configured account)")
    route.add_argument(
        "--mailbox", action="append", help="IMAP mailbox (repeatable; default: imap.mailboxes)"
    )
    route.set_defaults(handler=cmd_route)


def cmd_route(args: argparse.Namespace) -> int:
    import asyncio

    from triage.config import load_settings

    settings = load_settings(args.config)
    failed = False
    for imap in settings.mail_accounts(args.account):
        outcomes = asyncio.run(_route_account(settings, imap, args.mailbox or imap.mailboxes))
        counted = ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items()) if n)
        print(f"{imap.account_name}: {counted or 'nothing recorded is left to carry out'}")
        failed = failed or bool(outcomes["error"] or outcomes["pending"])
    return 1 if failed else 0


async def _route_account(settings: Settings, imap: ImapSettings, mailboxes: list[str]) -> dict[str, int]:
    from triage.backfill import route_recorded
    from triage.pipeline import Pipeline
    from triage.prompt import PromptRenderer
    from triage.run_settings import RunsSettings
    from triage.runs import RunsClient
    from triage.sources.imap import ImapSource
    from triage.store import processes
    from triage.store.decisions import Store

    store = Store.open(settings.store.url)
    source = ImapSource(imap, writable=settings.has_mailbox_actions)
    try:
        watch = settings.watch
        with processes.registered(store, "route", heartbeat_s=watch.heartbeat_s, lease_s=watch.lease_s):
            async with RunsClient(RunsSettings.of(settings.langgraph)) as runs:
                await runs.check_reachable()
                renderer = PromptRenderer(settings.prompt.template)
                pipeline = Pipeline(settings, renderer, runs, store, mailbox_actions=True)
                return await route_recorded(source, pipeline, mailboxes)
    finally:
        source.close()
        store.close()
