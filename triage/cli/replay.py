"""`triage replay`: stored messages run again with a template or assistant, and the comparison printed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.cli.log import add_filters, cell, filters_of, open_log, to_json
from triage.log.labels import LABELS

if TYPE_CHECKING:  # at run time, each command imports what it needs when it runs (see triage.cli)
    from triage.log.replay import Replayed, ReplayReport


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = commands.add_parser(
        "replay", help="run stored messages again with a template/assistant and compare; writes nothing"
    )
    add_filters(replay)
    replay.add_argument("--template", type=Path, help="prompt template (default: prompt.template)")
    replay.add_argument("--assistant", help="assistant id (default: langgraph.assistant_id)")
    replay.add_argument("--url", help="run server (default: langgraph.url)")
    replay.add_argument("--limit", type=int, help="at most N decisions, newest first")
    replay.add_argument("--concurrency", type=int, help="runs in flight (default: langgraph.max_concurrency)")
    replay.add_argument(
        "--record", action="store_true", help="make the replayed decisions the recorded ones (production log)"
    )
    replay.add_argument(
        "--no-examples",
        action="store_true",
        help="offer no labelled examples (the baseline for the lift of --corrected)",
    )
    replay.add_argument("--json", action="store_true", help="one JSON object")
    replay.set_defaults(handler=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncio

    from triage.config import load_settings
    from triage.log.replay import ReplayOptions, replay

    settings = load_settings(args.config)
    options = ReplayOptions(
        template=args.template,
        assistant_id=args.assistant,
        url=args.url,
        record=args.record,
        concurrency=settings.langgraph.max_concurrency if args.concurrency is None else args.concurrency,
        limit=args.limit,
        examples="none" if args.no_examples else "now" if args.corrected else "recorded",
    )
    with open_log(args) as store:
        report = asyncio.run(replay(store, settings, filters_of(args), options))
    if args.json:
        print(to_json(_report_data(report)))
    else:
        _print_report(report, args.record)
    return 0


def _report_data(report: ReplayReport) -> dict[str, Any]:
    def matrix(counts: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for (old, new), n in sorted(counts.items()):
            table.setdefault(old, {})[new] = n
        return table

    return {
        "template_hash": report.template_hash,
        "template": report.template_path,
        "assistant_id": report.assistant_id,
        "url": report.url,
        "replayed": report.replayed,
        "skipped": dict(report.skipped),
        "recorded_back": report.recorded_back,
        "agreement": {
            "recorded": {"agree": report.agree_recorded, "total": report.replayed},
            "corrections": {"agree": report.agree_corrections, "total": report.corrected},
        },
        "prompts": {"compared": report.prompts_compared, "identical": report.prompts_identical},
        "lift": {
            template: {"labelled": labelled, "recorded_agree": recorded, "replayed_agree": replayed}
            for template, (labelled, recorded, replayed) in sorted(report.lift.items())
        },
        "confusion": {
            "recorded": matrix(report.against_recorded),
            "corrections": matrix(report.against_corrections),
        },
        "changed": [_changed_data(item) for item in report.changed],
    }


def _changed_data(item: Replayed) -> dict[str, Any]:
    return {
        "id": item.id,
        "mailbox": item.mailbox,
        "uid": item.uid,
        "subject": item.subject,
        "recorded": str(item.recorded),
        "corrected": str(item.corrected) if item.corrected else None,
        "replayed": str(item.replayed),
        "reason": item.reason,
    }


def _print_report(report: ReplayReport, recorded: bool) -> None:
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
    print(
        f"replayed {report.replayed} decisions with template {report.template_hash} ({report.template_path}) "
        f"on assistant {report.assistant_id!r} at {report.url}" + (f"; skipped {skipped}" if skipped else "")
    )
    print(f"agreement with recorded decisions: {_ratio(report.agree_recorded, report.replayed)}")
    print(f"agreement with corrections:        {_ratio(report.agree_corrections, report.corrected)}")
    if report.prompts_compared:
        same = f"{report.prompts_identical} of {report.prompts_compared}"
        print(f"prompts identical to the recorded ones (same template): {same}")
    _print_matrix("recorded", report.against_recorded)
    if report.corrected:
        _print_matrix("corrected", report.against_corrections)
        _print_lift(report)
    print(f"\nchanged ({len(report.changed)}):")
    for item in report.changed:
        corrected = f" [corrected: {item.corrected}]" if item.corrected else ""
        print(
            f"{item.id:>7}  {cell(item.mailbox, 12):<12} uid {item.uid:<6} "
            f"{item.recorded} -> {item.replayed}{corrected}  {cell(item.subject, 50)}"
        )
    if recorded:
        print(f"\nrecorded {report.recorded_back} replayed decisions in the log (decided_by 'replay')")
    else:
        print("\nnothing was written (use --record to make these the recorded decisions)")


def _print_lift(report: ReplayReport) -> None:
    """Agreement with the labels: as recorded, and as replayed now; per template of the recorded."""
    widths = (20, 10, 22, 22, 10)
    header = ("recorded template", "labelled", "recorded agree", "replayed agree", "lift")
    rows = [header]
    for template, (labelled, recorded, replayed) in sorted(report.lift.items()):
        lift = f"{(replayed - recorded) / labelled:+.1%}"
        rows.append((template, str(labelled), _ratio(recorded, labelled), _ratio(replayed, labelled), lift))
    print()
    for name, *cells in rows:
        print(f"{name:<{widths[0]}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths[1:], strict=True)))


def _ratio(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.1%})" if whole else "-"


def _print_matrix(rows_name: str, counts: dict[tuple[str, str], int]) -> None:
    columns = [*LABELS, "error"]
    corner = f"{rows_name} / replayed"
    print(f"\n{corner:<28}" + "".join(f"{c:>16}" for c in columns))
    for old in sorted({old for old, _ in counts}, key=_label_order):
        print(f"{old:<28}" + "".join(f"{counts.get((old, new), 0):>16}" for new in columns))


def _label_order(name: str) -> tuple[int, str]:
    order = [*LABELS, "error"]
    return (order.index(name) if name in order else len(order), name)
