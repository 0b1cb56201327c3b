"""Learning benchmark: what choosing examples costs a backfill, on a log of 100,000 decisions.

    python bench/learning.py                  # 100,000 decisions, 2,000 of them labelled
    python bench/learning.py --labels 20000   # the pool's limit
    python bench/learning.py --repeat 5

The log is bench/review.py's (triage's own migrations, then bulk inserts), with `--labels` of its
decisions corrected by a person (most of them to ignore) and its messages in the file source's
account. A backfill of `--messages` new mails from the log's own senders, with subjects of its own
words, then runs as a user runs it (`triage backfill --source FILE` as a subprocess, the stub run
server in a process of its own, latency 0, so that nothing but triage's own work is measured) on a
fresh copy of the log: once with `prompt.max_examples = 4`, once with 0, alternating which goes
first, `--repeat` times each. CPU seconds are the backfill's and its run worker's (os.wait4).

All of it twice: against a stub that reports no token usage (as the offline reference assistant:
triage then counts the prompt's tokens itself, a longer prompt costing more to count) and one
that reports it, as a LangGraph assistant calling a chat model does.

Printed: CPU per message with and without examples, the extra as a share of the backfill's CPU per
message (target under 10 %), beside the parts measured in this process: reading the labels into
the pool, and choosing for one message.

Exit status: 0 when every backfill recorded every message with one run each and offered examples
(with) or none (without); 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import mailbox
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.backfill import clean_env, run_measured
from bench.review import _SENDERS, _WORDS, generate
from tests.support.run_server import run_server_process
from triage.examples import Examples
from triage.message import Email, parse_email
from triage.sources.files import FILES_ACCOUNT
from triage.store.decisions import Store

TARGET_SHARE = 0.10
# How the stub answers: as the offline reference assistant does (no usage reported: triage counts
# the prompt's tokens itself), and as an assistant calling a chat model does (usage reported).
ANSWERS = (("ok", "answers without usage"), ("ok-usage:1500,40", "answers reporting usage"))
_LIST = "Weekly <weekly.example0.org>"


def label(db: Path, labels: int, seed: int = 11) -> None:
    """Put the log's messages in the file source's account, and have a person label `labels` of its
    decided messages: four in five corrected to ignore, the rest confirmed."""
    rng = random.Random(seed)
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("BEGIN")
    connection.execute("UPDATE messages SET account = ?", (FILES_ACCOUNT,))
    decided = [pk for (pk,) in connection.execute("SELECT id FROM decisions WHERE status = 'ok'")]
    chosen = rng.sample(decided, labels)
    for pk in chosen:
        (sender, decision) = connection.execute(
            "SELECT m.sender, d.decision FROM decisions d JOIN messages m ON m.id = d.message_pk "
            "WHERE d.id = ?",
            (pk,),
        ).fetchone()
        name, _, address = sender.partition(" <")
        listed = _LIST if rng.random() < 0.1 else None
        connection.execute(
            "UPDATE messages SET from_addresses = ?, list_id = ? "
            "WHERE id = (SELECT message_pk FROM decisions WHERE id = ?)",
            (json.dumps([[name, address.rstrip(">")]]), listed, pk),
        )
        kind, to = ("correction", "ignore") if rng.random() < 0.8 else ("confirmation", decision)
        connection.execute(
            "INSERT INTO corrections (decision_pk, kind, decision, author, created_at) "
            "VALUES (?, ?, ?, 'bench', ?)",
            (pk, kind, to, "2026-11-30 12:00:00.000000"),
        )
    connection.execute("COMMIT")
    connection.close()


def new_mail(count: int, seed: int = 5) -> list[bytes]:
    """Mail from the log's senders (a tenth from strangers), with subjects and bodies of its words."""
    rng = random.Random(seed)
    messages = []
    for n in range(count):
        sender = rng.choice(_SENDERS) if rng.random() < 0.9 else f"Someone <stranger{n}@elsewhere.example>"
        subject = " ".join(rng.choices(_WORDS, k=5)).capitalize()
        body = " ".join(rng.choices(_WORDS, k=120))
        headers = [f"From: {sender}", "To: team@example.com", f"Subject: {subject}"]
        headers += [f"Message-ID: <new{n}@bench.example>", "Date: Tue, 01 Dec 2026 09:00:00 +0000"]
        messages.append(("\r\n".join(headers) + f"\r\n\r\n{body}\r\n").encode())
    return messages


def in_process(db: Path, mail: list[bytes]) -> tuple[float, float, int]:
    """Seconds to read the pool, microseconds to choose for one message, examples offered in all."""
    store = Store.open(f"sqlite:///{db}")
    try:
        examples = Examples(store, 4)
        started = time.perf_counter()
        size = examples.pool().size
        load_s = time.perf_counter() - started
        emails = [e for e in (parse_email(raw, 4000) for raw in mail) if isinstance(e, Email)]
        started = time.perf_counter()
        offered = sum(len(examples.choose(FILES_ACCOUNT, email)) for email in emails)
        choose_us = (time.perf_counter() - started) / len(emails) * 1e6
    finally:
        store.close()
    print(f"pool: {size} labelled decisions read in {load_s * 1000:.0f} ms")
    return load_s, choose_us, offered


def backfill_cpu(log: Path, box: Path, url: str, workdir: Path, examples: int) -> tuple[float, list[str]]:
    """CPU seconds of one backfill of the mail file into a fresh copy of the log, and what is wrong."""
    db = workdir / f"run-{examples}.db"
    shutil.copyfile(log, db)
    env = clean_env(
        TRIAGE_LANGGRAPH__URL=url,
        TRIAGE_STORE__URL=f"sqlite:///{db}",
        TRIAGE_PROMPT__MAX_EXAMPLES=str(examples),
    )
    argv = [
        sys.executable,
        "-m",
        "triage",
        "backfill",
        "--source",
        str(box),
        "--quiet",
        "--concurrency",
        "16",
    ]
    run = run_measured(argv, env=env, cwd=workdir, timeout_s=600)
    problems = [] if run.returncode == 0 else [f"exit {run.returncode}: {run.stderr.strip()[-300:]}"]
    with sqlite3.connect(db) as connection:
        new = connection.execute(
            "SELECT count(*), sum(json_array_length(examples) > 0) FROM decisions d "
            "JOIN messages m ON m.id = d.message_pk WHERE m.mailbox = ?",
            (str(box),),
        ).fetchone()
    db.unlink()
    return run.cpu_s, problems + _check(new, examples)


def _check(found: tuple[int, int | None], examples: int) -> list[str]:
    count, offered = found[0], found[1] or 0
    wrong = []
    if examples and offered == 0:
        wrong.append("no decision was offered examples")
    if not examples and offered:
        wrong.append(f"{offered} decisions offered examples with max_examples = 0")
    return wrong + ([] if count else ["nothing recorded"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000, help="decisions in the log")
    parser.add_argument("--labels", type=int, default=2_000, help="of them labelled by a person")
    parser.add_argument("--messages", type=int, default=2_000, help="new mail the backfill decides")
    parser.add_argument("--repeat", type=int, default=3, help="backfills of each kind, alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="triage-bench-learning-") as tmp:
        workdir = Path(tmp)
        log = workdir / "log.db"
        generate(log, args.rows)
        label(log, args.labels)
        mail = new_mail(args.messages)
        box = workdir / "new.mbox"
        mbox = mailbox.mbox(box)
        for raw in mail:
            mbox.add(raw)
        mbox.close()
        load_s, choose_us, offered = in_process(log, mail)
        problems: list[str] = []
        per_message: dict[str, dict[int, float]] = {}
        for answer, stub in ANSWERS:
            cpu: dict[int, list[float]] = {4: [], 0: []}
            with run_server_process(0.0, answer=answer) as server:
                for round_ in range(args.repeat):
                    for examples in (4, 0) if round_ % 2 == 0 else (0, 4):
                        seconds, wrong = backfill_cpu(log, box.resolve(), server.url, workdir, examples)
                        cpu[examples].append(seconds)
                        problems += wrong
                stats = server.stats()
            expected_runs = args.messages * args.repeat * 2
            if stats["runs"] != expected_runs:
                problems.append(f"{stub}: the stub ran {stats['runs']} runs for {expected_runs} messages")
            per_message[stub] = {k: statistics.median(v) / args.messages * 1e6 for k, v in cpu.items()}
    print(f"log: {args.rows:,} decisions, {args.labels:,} labelled; backfill of {args.messages:,} new mails")
    each = offered / args.messages
    print(f"choosing in this process: {choose_us:.0f} µs a message, {each:.1f} examples offered")
    print(f"reading the pool: {load_s * 1000:.0f} ms, once a process and when labels change")
    for stub, cpu_us in per_message.items():
        share = (cpu_us[4] - cpu_us[0]) / cpu_us[0]
        print(f"{stub}:")
        print(f"  backfill CPU a message, without examples: {cpu_us[0]:.0f} µs (median of {args.repeat})")
        print(f"  backfill CPU a message, with 4 examples:  {cpu_us[4]:.0f} µs")
        print(f"  examples cost {share:+.1%} of a backfill's CPU a message (target under {TARGET_SHARE:.0%})")
        print(f"  choosing alone, against the backfill without: {choose_us / cpu_us[0]:.1%}")
    for problem in problems:
        print(f"WRONG: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
