"""Review benchmark: `triage log -q WORD --limit 50` and `triage stats` on a 1,000,000-decision log,
warm and cold.

    python bench/review.py                 # 1,000,000 decisions (about 13 minutes to generate; 18.5 GB)
    python bench/review.py --quick         # 100,000 decisions, three runs of each command
    python bench/review.py --rows 300000   # another size
    python bench/review.py --keep /tmp/big.db   # keep (or reuse) the generated log

The log is made by `Store.open` (so it has every migration, the FTS5 index and its triggers) and
filled with executemany inside one transaction, the search and rollup triggers active, and then
left as triage leaves a log: no ANALYZE, no 'optimize' of the search index. It is filled like a real
one: each decision keeps a 4,000-character body (triage's default prompt.max_body_chars), the prompt
triage's own template renders from it (about 5 KB), and a raw answer holding the JSON of a
LangGraph final state (the human message echoing the prompt, then the AI's decision with its token
usage), so a row is about 15 KB. Bodies are drawn by Zipf's law from about 6,000 words and rows take
them from a pool of 4,000 in turn; the searched words are rare (1 in 2,000 decisions) and common
(1 in 20). Decisions spread over 90 days, three assistants-and-templates eras, a realistic mix of
statuses and log-normal latencies.

Each command runs as a subprocess, as a user runs it (median of --repeat runs), warm (right after
the same command) and cold: before each cold run the kernel's page cache is dropped (`echo 1 >
/proc/sys/vm/drop_caches`, root only), or where that is refused the log is copied to a new path
and its pages evicted with posix_fadvise(DONTNEED) (the interpreter's files then stay cached); the
output says which. Beside them, from the same run: a plain `SELECT count(*) FROM decisions`
(sqlite3, in this process), the interpreter start-up of `triage --help` (the floor of any triage
command), both warm and cold, and the same queries in-process (triage.log, warm, without
start-up). Target: each command under 1 s, warm and cold.

Every run's output is checked against what the generated log says: each search lists exactly the
50 newest decisions whose body holds the word, and `stats` counts every decision and each status as
sqlite3 counts them in the table itself.

Exit status: 0 when every command succeeded and printed what it should (targets met or not), 1
otherwise.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from triage.log.query import Filters, entries
from triage.log.stats import stats
from triage.message import Email, parse_email
from triage.prompt import PromptRenderer
from triage.store.decisions import Store

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


_VOCABULARY = 6_000  # distinct words of the bodies besides _WORDS, drawn by Zipf's law as text is
_POOL = 4_000  # bodies, each with its rendered prompt and raw answer; rows take them in turn
BODY_CHARS = 4_000  # triage's default prompt.max_body_chars: what the log keeps of a body


@functools.cache
def _vocabulary() -> tuple[list[str], list[float]]:
    """Made-up words and their cumulative Zipf weights: a few very common, most rare, as in mail."""
    rng = random.Random(3)
    syllables = ["ka", "lo", "mer", "tan", "vi", "sul", "dra", "pen", "ro", "bek", "nis", "tor", "al"]
    words = list(_WORDS)
    while len(words) < len(_WORDS) + _VOCABULARY:
        word = "".join(rng.choices(syllables, k=rng.randrange(2, 5)))
        if word not in words and word not in (RARE_WORD, COMMON_WORD):
            words.append(word)
    return words, list(itertools.accumulate(1 / rank for rank in range(1, len(words) + 1)))


@functools.cache
def _bodies() -> tuple[str, ...]:
    """The pool of 4,000-character bodies; 1 in 20 mentions the common word, 1 in 2,000 the rare one."""
    rng = random.Random(7)
    words, weights = _vocabulary()
    pool = []
    for i in range(_POOL):
        drawn = rng.choices(words, cum_weights=weights, k=BODY_CHARS // 5)
        if i % 20 == 0:
            drawn[rng.randrange(100)] = COMMON_WORD
        if i % 2000 == 7:
            drawn[rng.randrange(100)] = RARE_WORD
        lines = (" ".join(drawn[at : at + 12]).capitalize() + "." for at in range(0, len(drawn), 12))
        pool.append("\n".join(lines)[:BODY_CHARS])  # a sentence a line: wrapping text costs seconds
    return tuple(pool)


def matching_ids(word: str, total: int, limit: int) -> list[int]:
    """The newest `limit` decision ids whose body holds `word`, as `triage log -q` must list them:
    only bodies hold the searched words, and row i has body i % _POOL."""
    holding = {n for n, body in enumerate(_bodies()) if word in re.findall(r"\w+", body.lower())}
    return [i for i in range(total, 0, -1) if i % _POOL in holding][:limit]


@dataclass(frozen=True, slots=True)
class _Pooled:
    """What rows with the same body share: the body, its prompt and the run's final state."""

    body: str
    prompt: str
    raw_response: str  # JSON
    prompt_tokens: int


def _pooled(rng: random.Random) -> list[_Pooled]:
    """Each body rendered into triage's own prompt template, and a LangGraph-like final state
    answering it: the human message echoes the prompt, as a real server's state does."""
    renderer = PromptRenderer()
    pooled = []
    for n, body in enumerate(_bodies()):
        sender = rng.choice(_SENDERS)
        subject = " ".join(rng.choices(_WORDS, k=6)).capitalize()
        raw = (
            f"From: {sender}\r\nTo: team@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <pool-{n}@bench.example>\r\nDate: Tue, 03 Nov 2026 09:00:00 +0000\r\n\r\n{body}"
        )
        email = parse_email(raw.encode(), BODY_CHARS)
        assert isinstance(email, Email)
        prompt = renderer.render(email, account="bench@example.com", mailbox="INBOX", threads=[])
        kind = rng.choice(tuple(_REASONS))
        answer = {"decision": kind, "title": subject, "reason": _REASONS[kind], "confidence": 0.86}
        usage = {"input_tokens": len(prompt) // 4, "output_tokens": 48, "total_tokens": len(prompt) // 4 + 48}
        state = {
            "messages": [
                {"type": "human", "content": prompt, "id": str(uuid.UUID(int=rng.getrandbits(128)))},
                {
                    "type": "ai",
                    "content": json.dumps(answer),
                    "id": f"run-{uuid.UUID(int=rng.getrandbits(128))}-0",
                    "tool_calls": [],
                    "invalid_tool_calls": [],
                    "usage_metadata": usage,
                    "response_metadata": {"model_name": "gpt-4o-mini-2024-07-18", "finish_reason": "stop"},
                },
            ]
        }
        pooled.append(_Pooled(body, prompt, json.dumps(state), len(prompt) // 4))
    return pooled


def _rows(total: int, seed: int = 7) -> Iterator[tuple[tuple[object, ...], tuple[object, ...]]]:
    """(message, decision) row pairs, oldest first, ids 1..total."""
    rng = random.Random(seed)
    pool = _pooled(rng)
    start = datetime.now(UTC) - timedelta(days=90)
    step = timedelta(days=90) / total
    for i in range(1, total + 1):
        when = (start + step * i).strftime("%Y-%m-%d %H:%M:%S.%f")
        subject = " ".join(rng.choices(_WORDS, k=6)).capitalize()
        shared = pool[i % _POOL]
        sender = rng.choice(_SENDERS)
        body, size = shared.body, 2000 + 2 * len(shared.body)
        message: tuple[object, ...] = (i, "bench@example.com", "INBOX", 1, i, f"<m{i}@bench.example>")
        message += (subject, sender, "team@example.com", when, size, body, len(body), when)
        status = rng.choices(("ok", "needs-review", "error", "unparseable"), (90, 5, 3, 2))[0]
        kind = rng.choices(("new-task", "ignore", "existing-thread"), (50, 40, 10))[0]
        assistant, template = _ERAS[min(i * len(_ERAS) // total, len(_ERAS) - 1)]
        ran = status != "unparseable"
        answered = status in ("ok", "needs-review")
        latency = int(rng.lognormvariate(6.2, 0.6)) if answered else None
        decided = (kind, _REASONS[kind], f"t-{i % 50_000}", 0.86) if status == "ok" else (None,) * 4
        decision: tuple[object, ...] = (
            i,
            i,
            status,
            *decided,
            "run" if ran else "parser",
            assistant if ran else None,
        )
        decision += (template if ran else None, shared.prompt if ran else None)
        decision += (json.dumps({"account": "bench@example.com", "mailbox": "INBOX", "uid": i}),)
        decision += (shared.raw_response if answered else None, f"run-{i}" if ran else None)
        decision += ("timeout" if status == "error" else None, 1, latency, when, when)
        decision += (shared.prompt_tokens if ran else None, 48 if answered else None, answered or None)
        yield message, decision


def generate(path: Path, total: int) -> float:
    """Create the log with triage's own migrations, then bulk-insert with its triggers active;
    returns seconds taken. No ANALYZE and no index 'optimize': triage runs neither on a log."""
    started = time.perf_counter()
    Store.open(f"sqlite:///{path}").close()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA cache_size=-262144")  # 256 MB for this connection: the index's merges
    connection.execute("BEGIN")
    batch: list[tuple[tuple[object, ...], tuple[object, ...]]] = []
    for pair in _rows(total):
        batch.append(pair)
        if len(batch) == 20_000:
            _insert(connection, batch)
            batch.clear()
    _insert(connection, batch)
    connection.execute("COMMIT")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return time.perf_counter() - started


def _insert(
    connection: sqlite3.Connection, batch: list[tuple[tuple[object, ...], tuple[object, ...]]]
) -> None:
    connection.executemany(
        "INSERT INTO messages (id, account, mailbox, uidvalidity, uid, message_id, subject, sender, "
        "recipients, sent_at, size, body_excerpt, body_chars, first_seen_at) VALUES ("
        + ", ".join("?" * 14)
        + ")",
        (message for message, _ in batch),
    )
    connection.executemany(
        "INSERT INTO decisions (id, message_pk, status, decision, reason, thread_id, confidence, "
        "decided_by, assistant_id, template_hash, prompt, request_metadata, raw_response, run_id, "
        "error_kind, attempts, latency_ms, created_at, updated_at, prompt_tokens, output_tokens, "
        "tokens_measured) VALUES (" + ", ".join("?" * 22) + ")",
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


def _statuses(path: Path) -> dict[str, int]:
    """Decisions by status, counted by sqlite3 from the table itself (stats reads daily rollups)."""
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT status, count(*) FROM decisions GROUP BY status").fetchall()
    return {str(status): int(n) for status, n in rows}


# --------------------------------------------------------------------------- a cold page cache


def drop_caches() -> bool:
    """Empty the kernel's page cache (root only): a command then reads the log, and its own
    interpreter and libraries, from the disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        return False
    return True


def evict(path: Path) -> None:
    """Ask the kernel to drop one file's cached pages (what an unprivileged user can do)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


@dataclass(frozen=True, slots=True)
class Cold:
    """How each cold run starts: the whole page cache dropped, or (not root) the log's pages only."""

    how: str
    prepare: Callable[[], object]


def cold_start(folder: Path, db: Path) -> tuple[Cold, Path]:
    """The way to make a run cold here, and the log it is to read. Without root the log is copied
    to a new path first: a copy made just now has no pages another reader keeps warm."""
    if drop_caches():
        return Cold("page cache dropped (echo 1 > /proc/sys/vm/drop_caches)", drop_caches), db
    copy = folder / "cold" / db.name
    copy.parent.mkdir()
    shutil.copyfile(db, copy)
    return Cold("a copy of the log, its pages evicted (posix_fadvise DONTNEED)", lambda: evict(copy)), copy


def _cold(cold: Cold, action: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        cold.prepare()
        return action()

    return run


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 decisions and 3 runs of each")
    parser.add_argument("--repeat", type=int, help="runs of each command, warm and cold (default 5)")
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this file")
    args = parser.parse_args()
    rows = 100_000 if args.quick else args.rows
    repeat = args.repeat or (3 if args.quick else 5)
    with tempfile.TemporaryDirectory(prefix="triage-bench-review-") as tmp:
        folder = Path(tmp)
        db = folder / "bench.db"
        if args.keep and args.keep.exists():
            os.symlink(args.keep.resolve(), db)
            print(f"reusing {args.keep} ({_count(db):,} decisions)")
        else:
            target = args.keep or db
            print(f"generating {rows:,} decisions ...", flush=True)
            print(f"generated in {generate(target, rows):.1f} s ({target.stat().st_size / 1e6:,.0f} MB)")
            if args.keep:
                os.symlink(args.keep.resolve(), db)
        print(_describe_log(db))
        return _measure(folder, db, repeat)


def _describe_log(db: Path) -> str:
    """Mean sizes of what the log holds a decision: what the timings are timings of."""
    with sqlite3.connect(db) as connection:
        body, prompt, raw = connection.execute(
            "SELECT avg(length(m.body_excerpt)), avg(length(d.prompt)), avg(length(d.raw_response)) "
            "FROM decisions d JOIN messages m ON m.id = d.message_pk"
        ).fetchone()
    return (
        f"a decision holds on average: body {body:,.0f}, prompt {prompt:,.0f}, "
        f"raw answer {raw:,.0f} characters"
    )


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[str, ...]
    check: Callable[[str], str | None]  # what is wrong with its output, or None


def _commands(total: int, statuses: dict[str, int]) -> list[Command]:
    """The measured commands, each with what the generated data says it must print."""

    def listing(word: str) -> Callable[[str], str | None]:
        expected = matching_ids(word, total, 50)

        def check(out: str) -> str | None:
            ids = [json.loads(line)["id"] for line in out.splitlines() if line.strip()]
            return None if ids == expected else f"ids {ids[:3]}... ({len(ids)}), expected {expected[:3]}..."

        return check

    def tally(out: str) -> str | None:
        summary = json.loads(out)["total"]
        found = {status: n for status, n in summary["statuses"].items() if n}
        if summary["total"] != total or found != statuses:
            return f"total {summary['total']} {found}, expected {total} {statuses}"
        return None

    return [
        Command("log -q rare", ("log", "-q", RARE_WORD, "--limit", "50", "--json"), listing(RARE_WORD)),
        Command("log -q common", ("log", "-q", COMMON_WORD, "--limit", "50", "--json"), listing(COMMON_WORD)),
        Command("stats", ("stats", "--json"), tally),
    ]


def _measure(folder: Path, db: Path, repeat: int) -> int:
    count = _count(db)
    commands = _commands(count, _statuses(db))
    count_s, _ = _median_s(lambda: _count(db), repeat)
    startup_s, _ = _median_s(_command(folder, "--help"), repeat)
    inproc = _in_process(db, repeat)
    warm = {c.name: _median_s(_command(folder, *c.args), repeat) for c in commands}
    cold, cold_db = cold_start(folder, db)
    cold_count_s, _ = _median_s(_cold(cold, lambda: _count(cold_db)), repeat)
    cold_startup_s, _ = _median_s(_cold(cold, _command(cold_db.parent, "--help")), repeat)
    cold_runs = {c.name: _median_s(_cold(cold, _command(cold_db.parent, *c.args)), repeat) for c in commands}
    print(f"\ncold runs: {cold.how}")
    print(f"SELECT count(*) FROM decisions ({count:,} rows): ", end="")
    print(f"{count_s * 1000:.0f} ms warm, {cold_count_s * 1000:.0f} ms cold")
    print(f"interpreter + imports (`triage --help`): {startup_s * 1000:.0f} ms warm, ", end="")
    print(f"{cold_startup_s * 1000:.0f} ms cold\n")
    print(f"{'command':<38} {'warm ms':>8} {'cold ms':>8} {'x count(*)':>10} ", end="")
    print(f"{'in-process ms':>14} {'target':>7}")
    failures = 0
    for command in commands:
        wall_s, result = warm[command.name]
        cold_s, cold_result = cold_runs[command.name]
        problems = [_problem(command, r) for r in (result, cold_result)]  # type: ignore[arg-type]
        failures += any(problems)
        verdict = ("met" if max(wall_s, cold_s) < TARGET_S else "MISSED") if not any(problems) else "FAILED"
        print(
            f"triage {' '.join(command.args):<31} {wall_s * 1000:>8.0f} {cold_s * 1000:>8.0f} "
            f"{wall_s / count_s:>10.1f} {inproc[command.name] * 1000:>14.0f} {verdict:>7}"
        )
        for problem in filter(None, problems):
            print(f"  {problem}", file=sys.stderr)
    print("correctness: " + ("FAILED" if failures else "every command printed what the generated log holds"))
    return 1 if failures else 0


def _in_process(db: Path, repeat: int) -> dict[str, float]:
    """The same queries through triage.log in this (warm) process: the commands without start-up."""
    store = Store.open(f"sqlite:///{db}")
    queries: dict[str, Callable[[], object]] = {
        "log -q rare": lambda: list(entries(store.engine, Filters(text=RARE_WORD), limit=50)),
        "log -q common": lambda: list(entries(store.engine, Filters(text=COMMON_WORD), limit=50)),
        "stats": lambda: stats(store, Filters()),
    }
    try:
        return {name: _median_s(query, repeat)[0] for name, query in queries.items()}
    finally:
        store.close()


def _problem(command: Command, result: subprocess.CompletedProcess[str]) -> str | None:
    """What is wrong with one run of a command: its exit, or its output against the generated data."""
    if result.returncode != 0:
        return f"{command.name}: exit {result.returncode}: {result.stderr.strip()[-400:]}"
    try:
        wrong = command.check(result.stdout)
    except (ValueError, KeyError, TypeError) as exc:
        wrong = f"unreadable output ({exc!r}): {result.stdout[:200]!r}"
    return f"{command.name}: {wrong}" if wrong else None


if __name__ == "__main__":
    raise SystemExit(main())
