"""`triage backfill`: every message not yet decided, and the summary that `retry` and `demo` print too."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # at run time, each command imports what it needs when it runs (see triage.cli)
    from triage.backfill import BackfillPlan, Summary
    from triage.config import Settings
    from triage.estimate import Estimate
    from triage.message import Unparseable
    from triage.pipeline import Pipeline, Prepared, Triaged
    from triage.sources import Source


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("backfill", help="triage every message not yet decided")
    run.add_argument("--account", help="only this account (default: every configured account)")
    run.add_argument("--mailbox", action="append", help="IMAP mailbox (repeatable; default: imap.mailboxes)")
    run.add_argument("--since", type=date.fromisoformat, help="only mail dated on or after YYYY-MM-DD")
    run.add_argument("--before", type=date.fromisoformat, help="only mail dated before YYYY-MM-DD")
    run.add_argument("--limit", type=int, help="triage at most N messages")
    run.add_argument(
        "--source", default="imap", help="'imap' (default) or a path: mbox, Maildir, .eml folder"
    )
    run.add_argument(
        "--concurrency", type=at_least_one, help="runs in flight (default: langgraph.max_concurrency)"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print prompts, requests and the actions each decision would lead to; send and write nothing",
    )
    run.add_argument(
        "--estimate",
        action="store_true",
        help="count the runs, tokens and cost this backfill would make; send and write nothing",
    )
    run.add_argument(
        "--no-dedupe", action="store_true", help="run copies of mail decided elsewhere in the store too"
    )
    run.add_argument("--quiet", action="store_true", help="no line per message, only the summary")
    run.set_defaults(handler=cmd_backfill)


def at_least_one(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return number


def cmd_backfill(args: argparse.Namespace) -> int:
    from triage.config import load_settings
    from triage.estimate import Estimate
    from triage.sources.files import FileSource
    from triage.sources.imap import ImapSource

    settings = load_settings(args.config)
    estimate = Estimate() if args.estimate else None
    if args.source != "imap":
        files = FileSource(Path(args.source))
        status = _backfill_source(settings, files, [files.mailbox_name], args, estimate)
    else:
        status = 0
        for imap in settings.mail_accounts(args.account):
            writable = settings.has_mailbox_actions and not (args.dry_run or args.estimate)
            source = ImapSource(imap, writable=writable)
            status |= _backfill_source(settings, source, args.mailbox or imap.mailboxes, args, estimate)
    if estimate is not None:
        print("\n".join(estimate.lines(settings.cost, _measured_output(settings))))
    return status


def _measured_output(settings: Settings) -> float | None:
    """The answers' average output tokens, where the store has measured any."""
    from triage.log.stats import token_totals
    from triage.store.decisions import Store

    with Store.existing(settings.store.url) as store:
        return None if store is None else token_totals(store).output_per_run


def _backfill_source(
    settings: Settings,
    source: Source,
    mailboxes: list[str],
    args: argparse.Namespace,
    estimate: Estimate | None,
) -> int:
    """The exit status of one account's backfill: 1 where messages stay undecided."""
    from triage.backfill import BackfillPlan

    plan = BackfillPlan(
        mailboxes=mailboxes,
        since=args.since,
        before=args.before,
        limit=args.limit,
        concurrency=args.concurrency or settings.langgraph.max_concurrency,
        dry_run=args.dry_run or estimate is not None,
        circuit_breaker=settings.langgraph.circuit_breaker,
        dedupe=not args.no_dedupe,
    )
    summary = run_backfill_on(settings, source, plan, quiet=args.quiet, estimate=estimate)
    return 0 if estimate is not None else print_summary(summary, plan)


def run_backfill_on(
    settings: Settings, source: Source, plan: BackfillPlan, *, quiet: bool, estimate: Estimate | None = None
) -> Summary:
    """Backfill from an open source, and close it."""
    import asyncio

    try:
        return asyncio.run(run_backfill(settings, source, plan, quiet=quiet, estimate=estimate))
    finally:
        source.close()


async def run_backfill(
    settings: Settings, source: Source, plan: BackfillPlan, *, quiet: bool, estimate: Estimate | None = None
) -> Summary:
    from triage.backfill import backfill
    from triage.pipeline import Pipeline
    from triage.progress import Progress
    from triage.prompt import PromptRenderer
    from triage.run_settings import RunsSettings
    from triage.runs_worker import RunsWorker
    from triage.store import processes
    from triage.store.decisions import Store

    renderer = PromptRenderer(settings.prompt.template)
    mailbox_actions = source.can_act
    if plan.dry_run:
        with Store.existing(settings.store.url) as store:
            preview = Pipeline(
                settings, renderer, None, store, mailbox_actions=mailbox_actions, dedupe=plan.dedupe
            )
            if estimate is not None:
                return await backfill(source, preview, plan, on_prepared=lambda p: estimate.add(preview, p))
            return await backfill(source, preview, plan, on_prepared=lambda p: _print_prepared(preview, p))
    store = Store.open(settings.store.url)
    progress = Progress("backfill")
    try:
        # --concurrency is the ceiling of the runs in flight (and of the connection pool).
        pooled = RunsSettings.of(settings.langgraph, max_concurrency=plan.concurrency)
        runs = RunsWorker(pooled)
        with processes.registered(
            store,
            "backfill",
            heartbeat_s=settings.watch.heartbeat_s,
            lease_s=settings.watch.lease_s,
            run_concurrency=lambda: runs.concurrency,
        ):
            async with runs:
                await runs.check_reachable()
                pipeline = Pipeline(
                    settings, renderer, runs, store, mailbox_actions=mailbox_actions, dedupe=plan.dedupe
                )

                def on_triaged(triaged: Triaged) -> None:
                    progress.advance(runs.concurrency)
                    if not quiet:
                        progress.print(triaged_line(triaged))

                return await backfill(
                    source, pipeline, plan, on_planned=progress.set_total, on_triaged=on_triaged
                )
    finally:
        progress.close()
        store.close()


def triaged_line(triaged: Triaged) -> str:
    """One line per message; in a dry run, with what carrying the decision out would have done."""
    line = _verdict_line(triaged)
    return f"{line}\n{'':>9}would: {'; '.join(triaged.planned)}" if triaged.planned else line


def _verdict_line(triaged: Triaged) -> str:
    raw, outcome = triaged.raw, triaged.outcome
    if outcome is None:
        verdict, detail = "skipped", "already decided"
    elif outcome.status == "ok":
        verdict, detail = outcome.decision or "", outcome.reason or ""
    elif outcome.status == "error":
        verdict, detail = "error", f"{outcome.error_kind}: {outcome.error_text}"
    else:
        verdict, detail = outcome.status, outcome.problem or ""
    subject = triaged.subject or "(no subject)"
    return f"{raw.uid:>7}  {verdict:<16} {_clip(subject, 50):<50}  {_clip(detail, 70)}"


def _print_prepared(pipeline: Pipeline, prepared: Prepared | Unparseable) -> None:
    from triage.message import Unparseable
    from triage.store.decisions import Outcome

    if isinstance(prepared, Unparseable):
        print(f"--- unparseable: {prepared.reason}\n")
        return
    raw, decided = prepared.raw, prepared.without_run
    print(f"--- uid {raw.uid} in {raw.mailbox}: prompt ---")
    print(prepared.prompt)
    if decided is not None:
        print(f"--- no run: {decided.decided_by} decides {decided.decision} ---")
        print(f"would: {_steps(pipeline.plan_for(raw, decided))}", end="\n\n")
        return
    print("--- request to POST /runs/wait ---")
    print(json.dumps({**prepared.request, "input": "(the prompt above)"}, indent=2, default=str))
    print("--- then, by the assistant's answer ---")
    chosen = Outcome("ok", "existing-thread", thread_id="(the thread it names)")
    for outcome in (Outcome("ok", "new-task"), chosen, Outcome("ok", "ignore"), Outcome("needs-review")):
        print(f"{outcome.decision or outcome.status}: {_steps(pipeline.plan_for(raw, outcome))}")
    print()


def _steps(steps: list[str]) -> str:
    return "; ".join(steps) or "nothing (recorded only)"


def print_summary(summary: Summary, plan: BackfillPlan) -> int:
    """Print the summary; the exit status: 1 where planned messages stay undecided, saying why."""
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items()) if n) or "nothing to do"
    if plan.dry_run:
        print(f"dry run: {statuses}; nothing was sent or written")
        return 0
    decisions = ", ".join(f"{n} {d}" for d, n in sorted(summary.decisions.items()))
    print(
        f"triaged {summary.processed} of {summary.planned} planned in {summary.elapsed_s:.1f} s "
        f"({summary.rate:.1f} msg/s): {statuses}" + (f" [{decisions}]" if decisions else "")
    )
    if not summary.undecided:
        return 0
    why = [f"{summary.statuses['error']} failed runs"] if summary.statuses["error"] else []
    if summary.stopped_because:
        why.append(f"{summary.not_sent} not sent: stopped after {summary.stopped_because}")
    print(
        f"triage: {summary.undecided} messages stay undecided ({'; '.join(why)});"
        " the next backfill retries them",
        file=sys.stderr,
    )
    return 1


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
