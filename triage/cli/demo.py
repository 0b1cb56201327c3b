"""`triage demo`: the bundled sample mailbox, triaged by the bundled assistant on a local langgraph dev."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from triage.cli.backfill import print_summary, run_backfill_on

SAMPLE_MAILBOX = Path(__file__).resolve().parent.parent / "sample" / "inbox.mbox"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo", help="triage the bundled sample mailbox with the bundled assistant on a local langgraph dev"
    )
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from triage.backfill import BackfillPlan
    from triage.config import load_settings
    from triage.devserver import DevServer
    from triage.sources.files import FileSource

    settings = load_settings(args.config)
    print("starting langgraph dev with the reference assistant ...", file=sys.stderr)
    with DevServer() as server:
        settings.langgraph.url = server.url
        print(f"langgraph dev is serving on {server.url}; triaging {SAMPLE_MAILBOX.name}", file=sys.stderr)
        source = FileSource(SAMPLE_MAILBOX)
        plan = BackfillPlan(
            mailboxes=[source.mailbox_name],
            concurrency=settings.langgraph.max_concurrency,
            circuit_breaker=settings.langgraph.circuit_breaker,
        )
        summary = run_backfill_on(settings, source, plan, quiet=False)
    status = print_summary(summary, plan)
    print(f"decisions stored in {settings.store.url}")
    return status
