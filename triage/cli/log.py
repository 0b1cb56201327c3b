"""`triage log`, `show` and `export`: the decision log, read.

Also what the other commands over the log share (triage.cli.stats, corrections, replay, purge): the
filters, opening the log, and printing values. Argument parsing and printing only; the queries live
in triage.log.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from triage.errors import TriageError
from triage.log.labels import KINDS, STATUSES

if TYPE_CHECKING:  # at run time, each command imports what it needs when it runs (see triage.cli)
    from sqlalchemy import Engine

    from triage.log.query import Filters
    from triage.store.decisions import Store


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    log = commands.add_parser("log", help="recorded decisions, newest first")
    add_filters(log)
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

    export = commands.add_parser("export", help="the log as CSV or JSON lines, oldest first")
    add_filters(export)
    export.add_argument("--format", choices=("csv", "jsonl"), default="jsonl", help="default: jsonl")
    export.add_argument("--output", "-o", type=Path, help="write to this file (default: stdout)")
    export.add_argument("--limit", type=int, help="at most N decisions")
    export.set_defaults(handler=cmd_export)


# --- shared by the commands over the log -------------------------------------------------------


def add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decision", choices=KINDS, help="recorded decision")
    parser.add_argument("--status", choices=STATUSES, help="recorded status")
    parser.add_argument("--since", help="decided at or after: a date, date-time (UTC) or age like 2h, 7d")
    parser.add_argument("--until", help="decided before: a date, date-time (UTC) or age")
    parser.add_argument("--from", dest="sender", help="sender contains this text")
    parser.add_argument("--mailbox", help="mailbox name")
    parser.add_argument("--thread", help="thread id, as recorded or as corrected")
    parser.add_argument("-q", dest="text", help="words in subject, sender, body or reason (all of them)")
    parser.add_argument("--corrected", action="store_true", help="only decisions with a correction")


def filters_of(args: argparse.Namespace) -> Filters:
    """The Filters the options of add_filters ask for."""
    from triage.log.query import Filters, parse_when

    return Filters(
        decision=args.decision,
        status=args.status,
        since=parse_when(args.since) if args.since else None,
        until=parse_when(args.until) if args.until else None,
        sender=args.sender,
        mailbox=args.mailbox,
        thread=args.thread,
        text=args.text,
        corrected=args.corrected,
    )


@contextmanager
def open_log_engine(args: argparse.Namespace) -> Iterator[Engine]:
    """The configured log, brought up to date; a missing SQLite file is an error, not a new log.

    The engine alone, for the commands that only read through SQLAlchemy Core (`log`, `export`).
    """
    from triage.config import load_settings
    from triage.store.engine import existing_engine

    url = load_settings(args.config).store.url
    engine = existing_engine(url, up_to_date=True)
    if engine is None:
        raise TriageError(f"no decision log at {url} yet: run `triage backfill` or `triage watch` first")
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def open_log(args: argparse.Namespace) -> Iterator[Store]:
    """The configured log as a Store, for the commands that write to it or load whole rows."""
    from triage.store.decisions import Store

    with open_log_engine(args) as engine:
        yield Store(engine)


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_value, ensure_ascii=False)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def text(value: Any) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, datetime) else str(value)


def cell(value: str | None, width: int) -> str:
    """On one line, and cut to the width."""
    line = " ".join((value or "-").split())
    return line if len(line) <= width else line[: width - 1] + "…"


# --- log / export ------------------------------------------------------------------------------


@contextmanager
def _reader_may_leave() -> Iterator[None]:
    """`triage log | head`: when the reader has gone, stop quietly, as other Unix tools do."""
    try:
        yield
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit


def cmd_log(args: argparse.Namespace) -> int:
    from triage.log.query import LOG_FIELDS, entries

    with _reader_may_leave(), open_log_engine(args) as engine:
        rows = entries(engine, filters_of(args), limit=args.limit or None)
        if args.json:
            _write_jsonl(rows, sys.stdout)
        elif args.csv:
            _write_csv(rows, LOG_FIELDS, sys.stdout)
        else:
            _write_table(rows, sys.stdout)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from triage.log.query import EXPORT_FIELDS, entries

    with _reader_may_leave(), open_log_engine(args) as engine:
        rows = entries(engine, filters_of(args), limit=args.limit, full=True, newest_first=False)
        out = args.output.open("w", encoding="utf-8", newline="") if args.output else sys.stdout
        try:
            count = _write_csv(rows, EXPORT_FIELDS, out) if args.format == "csv" else _write_jsonl(rows, out)
        finally:
            if args.output:
                out.close()
    if args.output:
        print(f"exported {count} decisions to {args.output}", file=sys.stderr)
    return 0


def _write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for count, row in enumerate(rows, 1):  # noqa: B007 - the count is the result
        out.write(to_json(row) + "\n")
    return count


def _write_csv(rows: Iterable[dict[str, Any]], columns: tuple[str, ...], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(columns)
    count = 0
    for count, row in enumerate(rows, 1):  # noqa: B007 - the count is the result
        writer.writerow([text(row[c]) for c in columns])
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
            cell(row["mailbox"], 12),
            cell(row["from"], 24),
            cell(row["subject"], 40),
            cell(decision, 24),
            cell(row["corrected_thread_id"] or row["thread_id"], 12),
            row["status"],
            latency,
        )
        out.write(_TABLE.format(*cells) + "\n")
        out.flush()


# --- show --------------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    from triage.log.explain import explain, resolve

    with open_log(args) as store:
        entry = explain(store, resolve(store, args.ref))
    if args.prompt:
        if entry["prompt"] is None:
            raise TriageError(f"decision {entry['id']} has no stored prompt (purged, or never sent)")
        sys.stdout.write(entry["prompt"])
    elif args.json:
        print(to_json(entry))
    else:
        print_explanation(entry, sys.stdout)
    return 0


def print_explanation(entry: dict[str, Any], out: TextIO) -> None:
    """The human view of `show`: essentials first, then request, prompt and response verbatim."""
    print_essentials(entry, out)
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
        ("routing", to_json(entry["routing"]) if entry["routing"] else "none recorded"),
    ]
    for name, value in lines:
        if value not in (None, ""):
            out.write(f"{name:<15} {text(value)}\n")
    for c in entry["corrections"]:
        thread = f" thread {c['thread_id']}" if c["thread_id"] else ""
        note = f"  ({c['note']})" if c["note"] else ""
        who = f"by {c['author'] or '?'} at {text(c['created_at'])}"
        out.write(f"{c['kind']:<15} {c['decision']}{thread} {who}{note}\n")
    for x in d["examples"] or ():
        was = f", was {x['was']}" if x["was"] else ""
        thread = f" thread {x['thread_id']}" if x["thread_id"] else ""
        source = f"(decision {x['decision_id']}, {x['kind']}{was}) from {x['sender'] or '?'}"
        out.write(f"{'example':<15} {x['decision']}{thread} {source}: {cell(x['subject'], 80)}\n")
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


def print_essentials(entry: dict[str, Any], out: TextIO) -> None:
    """Who sent what, and what was decided: the first lines of `show`, and each step of `review`."""
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
