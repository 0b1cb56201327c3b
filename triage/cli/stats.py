"""`triage stats`: counts, rates, latencies and corrections over a period, printed or as JSON."""

from __future__ import annotations

import argparse
from typing import Any

from triage.cli.log import add_filters, cell, filters_of, open_log, text, to_json


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stats = commands.add_parser("stats", help="counts, rates, latencies and corrections over a period")
    add_filters(stats)
    stats.add_argument("--by", choices=("day", "week"), default="day", help="period (default: day)")
    stats.add_argument("--json", action="store_true", help="one JSON object")
    stats.set_defaults(handler=cmd_stats)


def cmd_stats(args: argparse.Namespace) -> int:
    from triage.config import load_settings
    from triage.log.stats import stats

    cost = load_settings(args.config).cost
    with open_log(args) as store:
        report = stats(store, filters_of(args), by=args.by, cost=cost)
    if args.json:
        print(to_json(report))
        return 0
    total = report["total"]
    if not total["total"]:
        print("no decisions match")
        return 0
    print(f"{total['total']} decisions from {total['first_day']} to {total['last_day']} (UTC days)\n")
    _print_split(f"by {report['by']}", "period", report["periods"])
    _print_split("by assistant", "assistant_id", report["assistants"])
    _print_split("by template (in order of first use)", "template_hash", report["templates"])
    _print_split("all", None, [total])
    _print_tokens(report["tokens"])
    return 0


def _print_tokens(tokens: dict[str, Any]) -> None:
    if not tokens["runs"]:
        print("tokens: no runs")
        return
    estimated = f", {tokens['estimated_runs']} of them estimated" if tokens["estimated_runs"] else ""
    per_run = f"{tokens['prompt_tokens_per_run']:,.0f} a run{estimated}"
    print(
        f"tokens: {tokens['prompt_tokens']:,} prompt ({per_run}),"
        f" {tokens['output_tokens']:,} output over {tokens['runs']:,} runs"
    )
    if "cost" in tokens:
        print(f"cost: {tokens['cost']['amount']:,.4f} {tokens['cost']['currency']}")


_STATS_ROW = "{:<18} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}"


def _print_split(title: str, key: str | None, rows: list[dict[str, Any]]) -> None:
    print(title)
    print(
        _STATS_ROW.format(
            "", "total", "new-task", "existing", "ignore", "review", "error", "unpars",
            "review%", "error%", "p50ms", "p95ms", "p99ms", "correct%",
        )
    )  # fmt: skip
    for row in rows:
        statuses, decisions, latency = row["statuses"], row["decisions"], row["latency_ms"]
        print(
            _STATS_ROW.format(
                cell(str(row[key]) if key else "total", 18),
                row["total"],
                decisions["new-task"],
                decisions["existing-thread"],
                decisions["ignore"],
                statuses["needs-review"],
                statuses["error"],
                statuses["unparseable"],
                _percent(row["needs_review_rate"]),
                _percent(row["error_rate"]),
                *(text(latency[p]) or "-" for p in ("p50", "p95", "p99")),
                _percent(row["correction_rate"]),
            )
        )
    print()


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}"
