"""Review benchmark: `triage log -q WORD --limit 50` and `triage stats` on a 1,000,000-decision log.

    python bench/review.py                 # 1,000,000 decisions (about two minutes to generate)
    python bench/review.py --rows 100000   # a smaller log
    python bench/review.py --keep /tmp/big.db   # keep (or reuse) the generated log

The log is made by `Store.open` (so it has every migration, the FTS5 index and its triggers) and
filled with executemany inside one transaction, the search triggers active. Messages cycle through
a pool of generated bodies; the searched words are rare (about 1 in 2,000 decisions) and common
(about 1 in 20). Decisions spread over 90 days, three assistants-and-templates eras, a realistic mix
of statuses and log-normal latencies.

Each command runs as a subprocess, as a user runs it (median of --repeat runs), beside figures from
the same run: a plain `SELECT count(*) FROM decisions` (sqlite3, in this process), the interpreter
start-up of `triage --help` (the floor of any triage command), and the same queries in-process
(triage.log, without start-up). Target: each command under 1 s.

Exit status: 0 when every command succeeded and printed what it should, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from triage.log.query import Filters, entries
from triage.log.stats import stats
from triage.store import Store

RARE_WORD = "quetzal"
COMMON_WORD = "invoice"
TARGET_S = 1.0
_WORDS = [
    *("project", "export", "report", "deploy", "server", "customer", "meeting", "agenda", "budget"),
    *("review", "release", "login", "page", "dashboard", "importer", "mobile", "crash", "error"),
    *("timeout", "upgrade", "license", "seats", "contract", "renewal", "payment", "schedule"),
    *("thursday", "friday", "monday", "office", "access", "account", "password", "reset", "ticket"),
    *("support", "billing", "quarter", "roadmap", "vendor", "security", "audit", "hiring"),
    *("onboarding", "retro", "incident", "database", "backup", "network"),
]
_NAMES = (
    "Priya",
    "Dana",
    "Marek",
    "Aiko",
    "Lena",
    "Sam",
    "Grace",
    "Ravi",
    "Chloe",
    "Felix",
    "Nadia",
    "Oliver",
)
_SENDERS = [f"{name} <{name.lower()}@example{i % 7}.org>" for i, name in enumerate(_NAMES * 40)]
_REASONS = {
    "new-task": "a personal message that may need action",
    "ignore": "mailing-list or newsletter mail",
    "existing-thread": "a reply whose headers match an offered thread",
}
_ERAS = (("agent", "a1b2c3d4e5f60001"), ("agent", "a1b2c3d4e5f60002"), ("agent-v2", "9f8e7d6c5b4a0003"))


def _bodies(rng: random.Random, count: int) -> list[str]:
    """A pool of bodies; 1 in 20 mentions the common word, 1 in 2,000 the rare one."""
    pool = []
    for i in range(count):
        words = rng.choices(_WORDS, k=45)
        if i % 20 == 0:
            words[rng.randrange(45)] = COMMON_WORD
        if i % 2000 == 7:
            words[rng.randrange(45)] = RARE_WORD
        pool.append(" ".join(words).capitalize() + ".")
    return pool


def _rows(total: int, seed: int = 7) -> Iterator[tuple[tuple[object, ...], tuple[object, ...]]]:
    """(message, decision) row pairs, oldest first, ids 1..total."""
    rng = random.Random(seed)
    bodies = _bodies(rng, 20_000)
    start = datetime.now(UTC) - timedelta(days=90)
    step = timedelta(days=90) / total
    for i in range(1, total + 1):
        when = (start + step * i).strftime("%Y-%m-%d %H:%M:%S.%f")
        subject = " ".join(rng.choices(_WORDS, k=6)).capitalize()
        body = bodies[i % len(bodies)]
        message = (i, "bench@example.com", "INBOX", 1, i, f"<m{i}@bench.example>", subject)
        message += (rng.choice(_SENDERS), "team@example.com", when, 2000, body, when)
        status = rng.choices(("ok", "needs-review", "error", "unparseable"), (90, 5, 3, 2))[0]
        kind = rng.choices(("new-task", "ignore", "existing-thread"), (50, 40, 10))[0]
        assistant, template = _ERAS[min(i * len(_ERAS) // total, len(_ERAS) - 1)]
        ran = status != "unparseable"
        latency = int(rng.lognormvariate(6.2, 0.6)) if status in ("ok", "needs-review") else None
        decided = (kind, _REASONS[kind]) if status == "ok" else (None, None)
        decision = (i, i, status, *decided, "run" if ran else "parser", assistant if ran else None)
        decision += (template if ran else None, 1, latency, when, when)
        yield message, decision


def generate(path: Path, total: int) -> float:
    """Create the log with triage's own migrations, then bulk-insert; returns seconds taken."""
    started = time.perf_counter()
    Store.open(f"sqlite:///{path}").close()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("BEGIN")
    batch: list[tuple[tuple[object, ...], tuple[object, ...]]] = []
    for pair in _rows(total):
        batch.append(pair)
        if len(batch) == 50_000:
            _insert(connection, batch)
            batch.clear()
    _insert(connection, batch)
    connection.execute("COMMIT")
    connection.execute("INSERT INTO decisions_search(decisions_search) VALUES ('optimize')")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.execute("ANALYZE")
    connection.close()
    return time.perf_counter() - started


def _insert(
    connection: sqlite3.Connection, batch: list[tuple[tuple[object, ...], tuple[object, ...]]]
) -> None:
    connection.executemany(
        "INSERT INTO messages (id, account, mailbox, uidvalidity, uid, message_id, subject, sender, "
        "recipients, sent_at, size, body_excerpt, first_seen_at) VALUES (" + ", ".join("?" * 13) + ")",
        (message for message, _ in batch),
    )
    connection.executemany(
        "INSERT INTO decisions (id, message_pk, status, decision, reason, decided_by, assistant_id, "
        "template_hash, attempts, latency_ms, created_at, updated_at) VALUES (" + ", ".join("?" * 12) + ")",
        (decision for _, decision in batch),
    )


def _median_s(action: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _command(folder: Path, *args: str) -> Callable[[], subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env["TRIAGE_STORE__URL"] = f"sqlite:///{folder / 'bench.db'}"

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "triage", *args],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    return run


def _count(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM decisions").fetchone()[0])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="triage-bench-review-") as tmp:
        folder = Path(tmp)
        db = folder / "bench.db"
        if args.keep and args.keep.exists():
            os.symlink(args.keep.resolve(), db)
            print(f"reusing {args.keep} ({_count(db):,} decisions)")
        else:
            target = args.keep or db
            print(f"generating {args.rows:,} decisions ...", flush=True)
            print(f"generated in {generate(target, args.rows):.1f} s ({target.stat().st_size / 1e6:.0f} MB)")
            if args.keep:
                os.symlink(args.keep.resolve(), db)
        return _measure(folder, db, args.repeat)


def _measure(folder: Path, db: Path, repeat: int) -> int:
    count_s, count = _median_s(lambda: _count(db), repeat)
    startup_s, _ = _median_s(_command(folder, "--help"), repeat)
    store = Store.open(f"sqlite:///{db}")
    inproc = {
        "log -q rare": _median_s(lambda: list(entries(store, Filters(text=RARE_WORD), limit=50)), repeat)[0],
        "log -q common": _median_s(lambda: list(entries(store, Filters(text=COMMON_WORD), limit=50)), repeat)[
            0
        ],
        "stats": _median_s(lambda: stats(store, Filters()), repeat)[0],
    }
    store.close()
    print(f"\nSELECT count(*) FROM decisions: {count_s * 1000:.0f} ms ({count:,} rows)")
    print(f"interpreter + imports (`triage --help`): {startup_s * 1000:.0f} ms\n")
    print(f"{'command':<38} {'wall ms':>8} {'x count(*)':>10} {'in-process ms':>14} {'target':>7}")
    failures = 0
    for name, args, check in (
        ("log -q rare", ("log", "-q", RARE_WORD, "--limit", "50"), lambda out: out.count("\n") > 1),
        ("log -q common", ("log", "-q", COMMON_WORD, "--limit", "50"), lambda out: out.count("\n") == 51),
        ("stats", ("stats", "--json"), lambda out: json.loads(out)["total"]["total"] == count),
    ):
        wall_s, result = _median_s(_command(folder, *args), repeat)
        ok = result.returncode == 0 and bool(check(result.stdout))  # type: ignore[attr-defined]
        failures += not ok
        verdict = ("met" if wall_s < TARGET_S else "MISSED") if ok else "FAILED"
        print(
            f"triage {' '.join(args):<31} {wall_s * 1000:>8.0f} {wall_s / count_s:>10.1f} "
            f"{inproc[name] * 1000:>14.0f} {verdict:>7}"
        )
        if not ok:
            print(result.stderr, file=sys.stderr)  # type: ignore[attr-defined]
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
