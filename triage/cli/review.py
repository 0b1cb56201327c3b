"""`triage log`, `show`, `stats`, `export`, `correct`, `review`, `replay` and `purge`.

Argument parsing and printing only; the queries live in triage.review.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from triage import review
from triage.config import load_settings
from triage.errors import TriageError
from triage.review import Filters, Replayed, ReplayOptions, ReplayReport
from triage.store import Store

Commands = argparse._SubParsersAction  # type: ignore[type-arg]


def register(commands: Commands) -> None:
    log = commands.add_parser("log", help="recorded decisions, newest first")
    _add_filters(log)
    log.add_argument("--limit", type=int, default=50, help="at most N decisions (default 50; 0: all)")
    shape = log.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="one JSON object per line")
    shape.add_argument("--csv", action="store_true", help="CSV with a header line")
    log.set_defaults(handler=cmd_log)

    show = commands.add_parser("show", help="everything about one decision: prompt, response, corrections")
    show.add_argument("ref", metavar="ID", help="a decision id or a Message-ID")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.add_argument("--prompt", action="store_true", help="only the prompt, exactly as it was sent")
    show.set_defaults(handler=cmd_show)

    stats = commands.add_parser("stats", help="counts, rates, latencies and corrections over a period")
    _add_filters(stats)
    stats.add_argument("--by", choices=("day", "week"), default="day", help="period (default: day)")
    stats.add_argument("--json", action="store_true", help="one JSON object")
    stats.set_defaults(handler=cmd_stats)

    export = commands.add_parser("export", help="the log as CSV or JSON lines, oldest first")
    _add_filters(export)
    export.add_argument("--format", choices=("csv", "jsonl"), default="jsonl", help="default: jsonl")
    export.add_argument("--output", "-o", type=Path, help="write to this file (default: stdout)")
    export.add_argument("--limit", type=int, help="at most N decisions")
    export.set_defaults(handler=cmd_export)

    correct = commands.add_parser("correct", help="record a human correction beside a decision")
    correct.add_argument("ref", metavar="ID", help="a decision id or a Message-ID")
    correct.add_argument("--decision", required=True, help="new-task, existing-thread or ignore")
    correct.add_argument("--thread", help="the thread id (required for existing-thread)")
    correct.add_argument("--note", help="why")
    correct.add_argument("--author", default=_user(), help="who corrects (default: the login name)")
    correct.set_defaults(handler=cmd_correct)

    walk = commands.add_parser("review", help="walk the needs-review queue in the terminal, one key each")
    walk.add_argument("--all", action="store_true", help="recent decisions of any status, not only the queue")
    walk.add_argument("--limit", type=int, default=50, help="at most N decisions (default 50)")
    walk.add_argument("--author", default=_user(), help="who corrects (default: the login name)")
    walk.set_defaults(handler=cmd_review)

    replay = commands.add_parser(
        "replay", help="run stored messages again with a template/assistant and compare; writes nothing"
    )
    _add_filters(replay)
    replay.add_argument("--template", type=Path, help="prompt template (default: prompt.template)")
    replay.add_argument("--assistant", help="assistant id (default: langgraph.assistant_id)")
    replay.add_argument("--url", help="run server (default: langgraph.url)")
    replay.add_argument("--limit", type=int, help="at most N decisions, newest first")
    replay.add_argument("--concurrency", type=int, help="runs in flight (default: langgraph.max_concurrency)")
    replay.add_argument(
        "--record", action="store_true", help="make the replayed decisions the recorded ones (production log)"
    )
    replay.add_argument("--json", action="store_true", help="one JSON object")
    replay.set_defaults(handler=cmd_replay)

    purge = commands.add_parser("purge", help="forget mail bodies and prompts (or whole rows) before a date")
    purge.add_argument("--before", required=True, help="a date, date-time or age (e.g. 90d)")
    purge.add_argument(
        "--keep-decisions",
        action="store_true",
        help="keep the decision rows (counts, headers, answers); drop only bodies, prompts, responses",
    )
    purge.set_defaults(handler=cmd_purge)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decision", choices=review.KINDS, help="recorded decision")
    parser.add_argument("--status", choices=review.STATUSES, help="recorded status")
    parser.add_argument("--since", help="decided at or after: a date, date-time (UTC) or age like 2h, 7d")
    parser.add_argument("--until", help="decided before: a date, date-time (UTC) or age")
    parser.add_argument("--from", dest="sender", help="sender contains this text")
    parser.add_argument("--mailbox", help="mailbox name")
    parser.add_argument("--thread", help="thread id, as recorded or as corrected")
    parser.add_argument("-q", dest="text", help="words in subject, sender, body or reason (all of them)")
    parser.add_argument("--corrected", action="store_true", help="only decisions with a correction")


def _filters(args: argparse.Namespace) -> Filters:
    return Filters(
        decision=args.decision,
        status=args.status,
        since=review.parse_when(args.since) if args.since else None,
        until=review.parse_when(args.until) if args.until else None,
        sender=args.sender,
        mailbox=args.mailbox,
        thread=args.thread,
        text=args.text,
        corrected=args.corrected,
    )


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[Store]:
    """The configured log, brought up to date; a missing SQLite file is an error, not a new log."""
    url = load_settings(args.config).store.url
    probe = Store.open_existing(url)
    if probe is None:
        raise TriageError(f"no decision log at {url} yet: run `triage backfill` or `triage watch` first")
    probe.close()
    store = Store.open(url)
    try:
        yield store
    finally:
        store.close()


def _json(value: Any) -> str:
    return json.dumps(value, default=_json_value, ensure_ascii=False)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, datetime) else str(value)


# --- log / export ------------------------------------------------------------------------------


@contextmanager
def _reader_may_leave() -> Iterator[None]:
    """`triage log | head`: when the reader has gone, stop quietly, as other Unix tools do."""
    try:
        yield
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit


def cmd_log(args: argparse.Namespace) -> int:
    with _reader_may_leave(), _store(args) as store:
        rows = review.entries(store, _filters(args), limit=args.limit or None)
        if args.json:
            _write_jsonl(rows, sys.stdout)
        elif args.csv:
            _write_csv(rows, review.LOG_FIELDS, sys.stdout)
        else:
            _write_table(rows, sys.stdout)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    with _reader_may_leave(), _store(args) as store:
        rows = review.entries(store, _filters(args), limit=args.limit, full=True, newest_first=False)
        out = args.output.open("w", encoding="utf-8", newline="") if args.output else sys.stdout
        try:
            count = (
                _write_csv(rows, review.EXPORT_FIELDS, out)
                if args.format == "csv"
                else _write_jsonl(rows, out)
            )
        finally:
            if args.output:
                out.close()
    if args.output:
        print(f"exported {count} decisions to {args.output}", file=sys.stderr)
    return 0


def _write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for count, row in enumerate(rows, 1):  # noqa: B007 - the count is the result
        out.write(_json(row) + "\n")
    return count


def _write_csv(rows: Iterable[dict[str, Any]], columns: tuple[str, ...], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(columns)
    count = 0
    for count, row in enumerate(rows, 1):  # noqa: B007 - the count is the result
        writer.writerow([_text(row[c]) for c in columns])
    return count


_TABLE = "{:>7}  {:<16}  {:<12}  {:<24}  {:<40}  {:<24}  {:<12}  {:<12}  {:>7}"


def _write_table(rows: Iterable[dict[str, Any]], out: TextIO) -> None:
    """Fixed widths, so each line prints as soon as its row arrives (no look-ahead)."""
    header = ("ID", "TIME (UTC)", "MAILBOX", "FROM", "SUBJECT", "DECISION", "THREAD", "STATUS", "LATENCY")
    out.write(_TABLE.format(*header) + "\n")
    for row in rows:
        decision = row["decision"] or "-"
        if row["corrected_decision"]:
            decision = f"{decision}->{row['corrected_decision']}"
        latency = f"{row['latency_ms']}ms" if row["latency_ms"] is not None else "-"
        cells = (
            row["id"],
            f"{row['time']:%Y-%m-%d %H:%M}",
            _cell(row["mailbox"], 12),
            _cell(row["from"], 24),
            _cell(row["subject"], 40),
            _cell(decision, 24),
            _cell(row["corrected_thread_id"] or row["thread_id"], 12),
            row["status"],
            latency,
        )
        out.write(_TABLE.format(*cells) + "\n")
        out.flush()


def _cell(value: str | None, width: int) -> str:
    text = " ".join((value or "-").split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --- show --------------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    with _store(args) as store:
        entry = review.explain(store, review.resolve(store, args.ref))
    if args.prompt:
        if entry["prompt"] is None:
            raise TriageError(f"decision {entry['id']} has no stored prompt (purged, or never sent)")
        sys.stdout.write(entry["prompt"])
    elif args.json:
        print(_json(entry))
    else:
        print_explanation(entry, sys.stdout)
    return 0


def print_explanation(entry: dict[str, Any], out: TextIO) -> None:
    """The human view of `show`: essentials first, then request, prompt and response verbatim."""
    _print_essentials(entry, out)
    m, d = entry["message"], entry["decision"]
    lines = [
        ("to", m["recipients"]),
        ("date", m["sent_at_text"] or m["sent_at"]),
        ("in-reply-to", m["in_reply_to"]),
        ("list-id", m["list_id"]),
        ("auto-submitted", m["auto_submitted"]),
        ("identity", f"{m['account']} / {m['mailbox']}  uidvalidity {m['uidvalidity']}  uid {m['uid']}"),
        ("decided by", entry["decided_by"]),
        ("problem", d["problem"]),
        ("error", f"{d['error_kind']}: {d['error_text']}" if d["error_kind"] else None),
        ("attempts", d["attempts"]),
        ("latency", f"{d['latency_ms']} ms" if d["latency_ms"] is not None else None),
        ("claimed at", d["created_at"]),
        ("updated at", d["updated_at"]),
        ("routing", _json(entry["routing"]) if entry["routing"] else "none recorded"),
    ]
    for name, value in lines:
        if value not in (None, ""):
            out.write(f"{name:<15} {_text(value)}\n")
    for c in entry["corrections"]:
        thread = f" thread {c['thread_id']}" if c["thread_id"] else ""
        note = f"  ({c['note']})" if c["note"] else ""
        who = f"by {c['author'] or '?'} at {_text(c['created_at'])}"
        out.write(f"{'correction':<15} {c['decision']}{thread} {who}{note}\n")
    out.write(f"--- request metadata ---\n{json.dumps(d['request_metadata'], indent=2)}\n")
    if entry["prompt"] is None:
        out.write("--- prompt: not stored (purged, or never sent) ---\n")
    else:
        out.write(f"--- prompt as sent ({len(entry['prompt'])} characters) ---\n{entry['prompt']}\n")
        out.write("--- end of prompt ---\n")
    response = (
        json.dumps(entry["raw_response"], indent=2, ensure_ascii=False) if entry["raw_response"] else "(none)"
    )
    out.write(f"--- raw response ---\n{response}\n")


def _print_essentials(entry: dict[str, Any], out: TextIO) -> None:
    m, d = entry["message"], entry["decision"]
    verdict = d["decision"] or "-"
    if d["thread_id"]:
        verdict += f" (thread {d['thread_id']})"
    confidence = f"  confidence {d['confidence']:.2f}" if d["confidence"] is not None else ""
    out.write(f"decision {entry['id']}: {d['status']}  {verdict}{confidence}\n")
    for name, value in (
        ("message-id", m["message_id"]),
        ("from", m["sender"]),
        ("subject", m["subject"]),
        ("title", d["title"]),
        ("reason", d["reason"]),
    ):
        if value:
            out.write(f"{name:<15} {value}\n")


# --- stats -------------------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    with _store(args) as store:
        report = review.stats(store, _filters(args), by=args.by)
    if args.json:
        print(_json(report))
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
    return 0


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
                _cell(str(row[key]) if key else "total", 18),
                row["total"],
                decisions["new-task"],
                decisions["existing-thread"],
                decisions["ignore"],
                statuses["needs-review"],
                statuses["error"],
                statuses["unparseable"],
                _percent(row["needs_review_rate"]),
                _percent(row["error_rate"]),
                *(_text(latency[p]) or "-" for p in ("p50", "p95", "p99")),
                _percent(row["correction_rate"]),
            )
        )
    print()


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}"


# --- correct / review --------------------------------------------------------------------------


def cmd_correct(args: argparse.Namespace) -> int:
    with _store(args) as store:
        decision_id = review.resolve(store, args.ref)
        correction = review.correct(
            store, decision_id, args.decision, thread_id=args.thread, note=args.note, author=args.author
        )
    thread = f" (thread {correction['thread_id']})" if correction["thread_id"] else ""
    print(f"decision {decision_id} corrected to {correction['decision']}{thread}; the original is kept")
    return 0


_KEYS = "[a]ccept  [n]ew-task  [e]xisting-thread  [i]gnore  [s]kip  [o]pen  [q]uit"
_CORRECTIONS = {"n": "new-task", "e": "existing-thread", "i": "ignore"}


def cmd_review(args: argparse.Namespace) -> int:
    done: dict[str, int] = {"accepted": 0, "corrected": 0, "skipped": 0}
    with _store(args) as store:
        queue = review.review_queue(store, include_all=args.all, limit=args.limit)
        if not queue:
            print("nothing to review")
            return 0
        for position, decision_id in enumerate(queue, 1):
            entry = review.explain(store, decision_id)
            print(f"\n[{position}/{len(queue)}] ", end="")
            _print_essentials(entry, sys.stdout)
            outcome = _review_one(store, entry, args.author)
            if outcome == "quit":
                break
            done[outcome] += 1
    print("\nreviewed: " + ", ".join(f"{n} {what}" for what, n in done.items()))
    return 0


def _review_one(store: Store, entry: dict[str, Any], author: str | None) -> str:
    """Ask until the user settles this decision; returns accepted, corrected, skipped or quit."""
    while True:
        key = _read_key(f"{_KEYS} ? ")
        if key in ("q", ""):
            return "quit"
        if key == "s":
            return "skipped"
        if key == "o":
            print_explanation(entry, sys.stdout)
        elif key == "a":
            recorded = entry["decision"]
            if recorded["decision"] is None:
                print("nothing to accept: the assistant gave no valid decision; press n, e or i")
                continue
            _correct(store, entry, recorded["decision"], recorded["thread_id"], "accepted in review", author)
            return "accepted"
        elif key in _CORRECTIONS:
            thread = _read_line("thread id: ").strip() or None if key == "e" else None
            try:
                _correct(store, entry, _CORRECTIONS[key], thread, None, author)
            except TriageError as exc:
                print(exc)
                continue
            return "corrected"
        else:
            print(f"unknown key {key!r}")


def _correct(
    store: Store,
    entry: dict[str, Any],
    decision: str,
    thread: str | None,
    note: str | None,
    author: str | None,
) -> None:
    review.correct(store, entry["id"], decision, thread_id=thread, note=note, author=author)
    print(f"recorded: {decision}" + (f" (thread {thread})" if thread else ""))


def _read_key(prompt: str) -> str:
    """One key press on a terminal (no Enter needed); the first character of a line otherwise."""
    sys.stdout.write(prompt)
    sys.stdout.flush()
    if not sys.stdin.isatty():
        return sys.stdin.readline()[:1].lower()
    import termios
    import tty

    descriptor = sys.stdin.fileno()
    saved = termios.tcgetattr(descriptor)
    try:
        tty.setcbreak(descriptor)
        key = sys.stdin.read(1)
    finally:
        termios.tcsetattr(descriptor, termios.TCSADRAIN, saved)
    print(key if key.isprintable() else "")
    return "" if key == "\x04" else key.lower()


def _read_line(prompt: str) -> str:
    sys.stdout.write(prompt)
    sys.stdout.flush()
    return sys.stdin.readline()


# --- replay ------------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    options = ReplayOptions(
        template=args.template,
        assistant_id=args.assistant,
        url=args.url,
        record=args.record,
        concurrency=settings.langgraph.max_concurrency if args.concurrency is None else args.concurrency,
        limit=args.limit,
    )
    with _store(args) as store:
        report = asyncio.run(review.replay(store, settings, _filters(args), options))
    if args.json:
        print(_json(_report_data(report)))
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
    print(f"\nchanged ({len(report.changed)}):")
    for item in report.changed:
        corrected = f" [corrected: {item.corrected}]" if item.corrected else ""
        print(
            f"{item.id:>7}  {_cell(item.mailbox, 12):<12} uid {item.uid:<6} "
            f"{item.recorded} -> {item.replayed}{corrected}  {_cell(item.subject, 50)}"
        )
    if recorded:
        print(f"\nrecorded {report.recorded_back} replayed decisions in the log (decided_by 'replay')")
    else:
        print("\nnothing was written (use --record to make these the recorded decisions)")


def _ratio(part: int, whole: int) -> str:
    return f"{part}/{whole} ({part / whole:.1%})" if whole else "-"


def _print_matrix(rows_name: str, counts: dict[tuple[str, str], int]) -> None:
    columns = [*review.LABELS, "error"]
    corner = f"{rows_name} / replayed"
    print(f"\n{corner:<28}" + "".join(f"{c:>16}" for c in columns))
    for old in sorted({old for old, _ in counts}, key=_label_order):
        print(f"{old:<28}" + "".join(f"{counts.get((old, new), 0):>16}" for new in columns))


def _label_order(name: str) -> tuple[int, str]:
    order = [*review.LABELS, "error"]
    return (order.index(name) if name in order else len(order), name)


# --- purge -------------------------------------------------------------------------------------


def cmd_purge(args: argparse.Namespace) -> int:
    before = review.parse_when(args.before)
    with _store(args) as store:
        purged = review.purge(store, before, keep_decisions=args.keep_decisions)
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
