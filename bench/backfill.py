"""Backfill benchmark: `triage backfill` against a stub run server, as ratios to same-run baselines.

    python bench/backfill.py            # full run (about fifteen minutes on two cores)
    python bench/backfill.py --quick    # smoke run with small mailboxes (under a minute)
    python bench/backfill.py --profile /tmp/b.prof   # also profile scenario b under cProfile
    python bench/backfill.py --against main~3  # also scenarios b and a, this checkout against a revision

Every figure is compared with something measured in the same run, so the machine's speed cancels out.
Scenarios a and b run three times each (`--repeat N`) and the run of median throughput counts: this
machine's speed changes from minute to minute, and one run is one draw of it.

The mailboxes have the sizes of a real one (bench/realistic_corpus.py, seeded): plain replies of a
few KB, HTML newsletters of 30 to 100 KB, a tenth of the mail with attachments of 100 KB to 5 MB,
one message in 500 of 11 to 14 MB, and one in 20 an odd message of the varied test corpus.
The huge ones are over imap.max_message_bytes (10 MiB), which caps IMAP fetches only: from an mbox
file triage reads and triages them whole, so they are expected `ok`, recorded at their full size.

a. latency 100 ms, concurrency 32: throughput against the ideal concurrency / latency (target >= 0.90).
b. latency 0, concurrency 32: end-to-end throughput (target >= 500 msg/s), beside
c. latency 0, concurrency 1: one run at a time (the next message is prepared while it is in flight,
   as in every backfill); b/c is the speed-up of concurrency.
d. latency 0, concurrency 32, 10,000 messages: peak RSS of triage and its run worker (target < 150 MB),
   beside the peak RSS of `python -c "import triage.cli"` (its own VmHWM, read as it ends).
e. as d, but every message from a new sender with a new subject, so no candidate lookup finds a
   match early and the thread registry grows to 10,000 threads: e/d shows whether a backfill slows
   down as its registry grows (it should stay near 1).

The stub run server is the tests' own (`tests/support/run_server.py`), run in its own process (its
own GIL) without recording requests: a hand-written asyncio HTTP/1.1 protocol with keep-alive that
answers `POST /runs/wait` after a fixed latency with a LangGraph-like final state (the human message
echoes the prompt, as a real server's state does, then an AI message holding a `new-task` decision),
`GET /ok` with 200, and `GET /_stats` with its counters.
Its capacity is measured first with a raw-socket load client, so a low triage figure is not the stub's.
Beside scenario a, the same 100 ms stub is driven by that raw-socket client and by triage's own run
client alone (RunsClient, no message to prepare or record): the ceilings that scenario a can reach.

Each scenario runs `python -m triage backfill --source X.mbox --quiet --concurrency C` as a subprocess
with a fresh SQLite database and no inherited `TRIAGE_*` variables. Every row shows two rates: triage's
own (its summary line: the backfill loop, without interpreter start-up, migrations, the run worker's
spawn and shutdown) and the whole process's (messages / its wall clock), beside the wall clock itself.
Correctness: the database must hold exactly one decision per message, `ok` for every message that is
mail and `unparseable` for the `garbage_bytes` kind (which is not mail), every huge message recorded
at its full size, and the stub must have served exactly one run per `ok` message (no retries).

`--against REV` checks REV out into a temporary git worktree and runs scenarios b and a three times
each (`--repeat N`), alternating this checkout and REV (each imported through PYTHONPATH) against the
same stub, so that a change's speed-up is measured in one run however fast the machine is that day.
The order swaps every round (this checkout first in even rounds, REV first in odd ones), so neither
side always runs on the page cache and CPU frequency the other left. A change of a few percent needs
about ten rounds to show which way it goes on this machine.

Exit status: 0 when every run finished and every correctness check passed (targets missed or not),
1 otherwise. Nothing is written outside a temporary directory, which is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import mailbox
import os
import pstats
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

from bench.realistic_corpus import NOT_MAIL, realistic_messages
from tests.support.corpus import kinds, varied_messages
from tests.support.run_server import RunServerProcess, run_server_process

REPO = Path(__file__).resolve().parent.parent
MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # imap.max_message_bytes's default
SUMMARY_LINE = re.compile(r"triaged (\d+) of (\d+) planned in ([\d.]+) s \(([\d.]+) msg/s\)")


# --------------------------------------------------------------------------- load on the stub


async def _load(url: str, connections: int, per_connection: int, body: bytes) -> int:
    """Raw keep-alive POSTs to /runs/wait; the number of 200 responses."""
    host, port = url.removeprefix("http://").split(":")
    request = (
        f"POST /runs/wait HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def one_connection() -> int:
        reader, writer = await asyncio.open_connection(host, int(port))
        ok = 0
        try:
            for _ in range(per_connection):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                await _read_body(reader, head)
                ok += head.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()
        return ok

    return sum(await asyncio.gather(*(one_connection() for _ in range(connections))))


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> None:
    """The body after `head`: by its Content-Length, or chunked (a slow run's answer is)."""
    declared = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    if declared is not None:
        await reader.readexactly(int(declared.group(1)))
        return
    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
        await reader.readexactly(size + 2)
    await reader.readuntil(b"\r\n")


def _load_body() -> dict[str, object]:
    prompt = "You triage email. " + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 50
    return {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": prompt}]}}


def measure_stub_capacity(
    server: RunServerProcess, requests: int, connections: int = 32
) -> tuple[int, float]:
    """Requests answered and seconds taken by a raw-socket client (a lower bound of the capacity)."""
    body = json.dumps(_load_body()).encode()
    per_connection = max(1, requests // connections)
    started = time.perf_counter()
    answered = asyncio.run(
        asyncio.wait_for(_load(server.url, connections, per_connection, body), timeout=120)
    )
    return answered, time.perf_counter() - started


def measure_run_client(server: RunServerProcess, runs: int, concurrency: int) -> tuple[int, float]:
    """Runs answered and seconds taken by triage's RunsClient alone, with twice as many callers as
    connections (as a backfill's run worker has them), and nothing to prepare or record."""
    from triage.run_settings import RunsSettings
    from triage.runs import RunsClient

    settings = RunsSettings(server.url, None, 60.0, concurrency, 1, 0.0)
    body = _load_body()
    left = runs

    async def caller(client: RunsClient) -> int:
        nonlocal left
        answered = 0
        while left > 0:
            left -= 1
            await client.run(body)
            answered += 1
        return answered

    async def drive() -> int:
        async with RunsClient(settings) as client:
            return sum(await asyncio.gather(*(caller(client) for _ in range(2 * concurrency))))

    started = time.perf_counter()
    answered = asyncio.run(asyncio.wait_for(drive(), timeout=300))
    return answered, time.perf_counter() - started


# --------------------------------------------------------------------------- running triage


@dataclass(slots=True)
class Run:
    """One finished subprocess: exit code, wall and CPU seconds, peak RSS and what it printed."""

    returncode: int
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    stdout: str
    stderr: str


def run_measured(argv: list[str], *, env: dict[str, str], cwd: Path, timeout_s: float) -> Run:
    """Run a subprocess and reap it alone with os.wait4, so its rusage is its own and nobody else's.

    CPU time includes the processes it started and waited for (triage's run worker). Peak RSS is
    the sum of each process's own peak (VmHWM), sampled while they run. wait4's ru_maxrss is not
    used: Linux carries the high-water mark of the memory a child leaves at exec into it, and a
    child forked (or vforked) from this benchmark leaves this benchmark's own, so a child smaller
    than the benchmark would be reported at the benchmark's size.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        deadline = started + timeout_s
        peaks_kib: dict[int, int] = {}
        next_sample = started
        try:
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{argv[:4]} still running after {timeout_s:g} s")
                if time.perf_counter() >= next_sample:
                    _sample_peaks(process.pid, peaks_kib)
                    next_sample = time.perf_counter() + 0.02
                time.sleep(0.002)
        except BaseException:
            process.kill()
            process.wait(timeout=10)
            raise
        wall_s = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Run(
            process.returncode,
            wall_s,
            usage.ru_utime + usage.ru_stime,
            sum(peaks_kib.values()) / 1024,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def _sample_peaks(pid: int, peaks_kib: dict[int, int]) -> None:
    """The peak RSS so far of a process and of every process below it, from /proc.

    A child caught between fork and exec still runs its parent's program in its parent's memory
    (vfork shares it outright): it is skipped until it runs a command line of its own.
    """
    pending: list[tuple[int, bytes | None]] = [(pid, None)]
    while pending:
        current, parent_cmdline = pending.pop()
        with contextlib.suppress(OSError, ValueError):  # gone, or a zombie (no VmHWM line)
            cmdline = Path(f"/proc/{current}/cmdline").read_bytes()
            if cmdline == parent_cmdline:
                continue
            status = Path(f"/proc/{current}/status").read_text()
            hwm = status.split("VmHWM:", 1)[1].split()[0] if "VmHWM:" in status else "0"
            peaks_kib[current] = max(peaks_kib.get(current, 0), int(hwm))
            children = Path(f"/proc/{current}/task/{current}/children").read_text()
            pending += [(int(child), cmdline) for child in children.split()]


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment without any TRIAGE_* variable (no stray config), plus the overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(overrides)
    return env


@dataclass(slots=True)
class Backfill:
    """A `triage backfill` run and what its database holds afterwards."""

    name: str
    messages: int
    concurrency: int
    latency_s: float
    run: Run
    processed: int
    run_s: float
    rate: float
    statuses: dict[str, int]
    runs_served: int
    problems: list[str] = field(default_factory=list)

    @property
    def wall_rate(self) -> float:
        """Messages a second over the whole process: start-up, migrations and the worker's spawn included."""
        return self.messages / self.run.wall_s


Corpus = Callable[[int], Iterable[tuple[str, bytes]]]


def varied_corpus(count: int) -> Iterable[tuple[str, bytes]]:
    """(kind, raw) of the varied test corpus: small messages of every odd shape (bench/run_limits.py)."""
    return zip(kinds(count), varied_messages(count), strict=True)


@dataclass(frozen=True, slots=True)
class Mailbox:
    path: Path
    messages: int
    unparseable: int  # messages of the corpus kind that is not mail at all
    huge: int = 0  # messages over imap.max_message_bytes (the realistic corpus's `huge` kind)
    sizes: tuple[int, ...] = ()  # of each message, in order

    @property
    def mail(self) -> int:
        return self.messages - self.unparseable

    def describe(self) -> str:
        """Its size mix in one line: what the throughput figures are figures of."""
        total = sum(self.sizes)
        return (
            f"{self.messages} messages, {total / 1e6:.0f} MB: "
            f"mean {total / max(self.messages, 1) / 1e3:.1f} KB, "
            f"median {statistics.median(self.sizes) / 1e3:.1f} KB, largest {max(self.sizes) / 1e6:.1f} MB; "
            f"{self.huge} over {MAX_MESSAGE_BYTES / 2**20:.0f} MiB, {self.unparseable} not mail"
        )


def write_mbox(path: Path, count: int, *, distinct: bool = False, corpus: Corpus = varied_corpus) -> Mailbox:
    """`count` corpus messages in an mbox file, written one at a time; `distinct`: each mail from a
    new sender, with a new subject (headers put first, where the parser reads them)."""
    box = mailbox.mbox(path)
    box.lock()
    sizes: list[int] = []
    unparseable = huge = 0
    try:
        for n, (kind, raw) in enumerate(corpus(count)):
            if distinct and kind != NOT_MAIL:
                raw = f"From: sender{n}@bench.example\r\nSubject: Matter number {n}\r\n".encode() + raw
            box.add(raw)
            sizes.append(len(raw))
            unparseable += kind == NOT_MAIL
            huge += len(raw) > MAX_MESSAGE_BYTES
        box.flush()
    finally:
        box.unlock()
        box.close()
    return Mailbox(path, count, unparseable, huge, tuple(sizes))


def db_statuses(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        rows = connection.execute("SELECT status, count(*) FROM decisions GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


def huge_recorded_ok(db: Path) -> int:
    """Messages over imap.max_message_bytes recorded at their full size and decided `ok`: a file
    source reads them whole (the cap is IMAP's), so each must be."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM messages m JOIN decisions d ON d.message_pk = m.id "
            "WHERE m.size > ? AND d.status = 'ok'",
            (MAX_MESSAGE_BYTES,),
        ).fetchone()
    return int(count)


def backfill(
    name: str,
    box: Mailbox,
    server: RunServerProcess,
    latency_s: float,
    concurrency: int,
    workdir: Path,
    *,
    profile: Path | None = None,
    code: Path | None = None,
) -> Backfill:
    """Run one scenario with a fresh database and check what it recorded.

    `code` is a checkout of triage to run instead of the installed one (through PYTHONPATH).
    """
    db = workdir / f"{name}.db"
    env = clean_env(TRIAGE_LANGGRAPH__URL=server.url, TRIAGE_STORE__URL=f"sqlite:///{db}")
    if code is not None:
        env["PYTHONPATH"] = str(code)
    runs_before = server.stats()["runs"]
    python = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else [sys.executable]
    argv = [*python, "-m", "triage", "backfill", "--source", str(box.path), "--quiet"]
    argv += ["--concurrency", str(concurrency)]
    timeout_s = 60 + box.messages * 0.2
    run = run_measured(argv, env=env, cwd=workdir, timeout_s=timeout_s)
    runs_served = server.stats()["runs"] - runs_before
    problems: list[str] = []
    match = SUMMARY_LINE.search(run.stdout)
    if run.returncode != 0 or match is None:
        problems.append(f"exit {run.returncode}: {(run.stdout + run.stderr).strip()[-400:]}")
        processed, rate = 0, 0.0
    else:
        processed, rate = int(match.group(1)), float(match.group(4))
    statuses = db_statuses(db) if db.exists() else {}
    expected = {"ok": box.mail, "unparseable": box.unparseable}
    if sum(statuses.values()) != box.messages:
        problems.append(f"{sum(statuses.values())} decisions for {box.messages} messages")
    if {k: v for k, v in statuses.items() if v} != {k: v for k, v in expected.items() if v}:
        problems.append(f"statuses {statuses}, expected {expected}")
    if runs_served != box.mail:
        problems.append(f"stub served {runs_served} runs for {box.mail} messages that are mail")
    if db.exists() and (whole := huge_recorded_ok(db)) != box.huge:
        problems.append(f"{whole} of {box.huge} messages over {MAX_MESSAGE_BYTES} bytes recorded whole, ok")
    run_s = processed / rate if rate > 0 else run.wall_s
    return Backfill(
        name,
        box.messages,
        concurrency,
        latency_s,
        run,
        processed,
        run_s,
        rate,
        statuses,
        runs_served,
        problems,
    )


def import_baseline(workdir: Path) -> Run:
    """Peak RSS of an interpreter that only imports triage's command line, as it reports it itself
    when done: it ends before a 20 ms sample would see its last imports."""
    code = "import triage.cli, pathlib; print(pathlib.Path('/proc/self/status').read_text())"
    run = run_measured([sys.executable, "-c", code], env=clean_env(), cwd=workdir, timeout_s=60)
    if run.returncode != 0:
        raise RuntimeError(f"import triage.cli failed: {run.stderr.strip()[-400:]}")
    run.max_rss_mb = int(run.stdout.split("VmHWM:", 1)[1].split()[0]) / 1024
    return run


# --------------------------------------------------------------------------- report


@dataclass(slots=True)
class Row:
    scenario: str
    messages: str
    wall_s: str
    run_s: str
    rate: str
    wall_rate: str
    rss: str
    reference: str
    ratio: str
    target: str
    met: str


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def _row(label: str, result: Backfill, reference: str, ratio: str, target: str = "-", met: str = "-") -> Row:
    return Row(
        label,
        str(result.messages),
        f"{result.run.wall_s:.2f}",
        f"{result.run_s:.2f}",
        f"{result.rate:.1f}",
        f"{result.wall_rate:.1f}",
        f"{result.run.max_rss_mb:.1f} MB",
        reference,
        ratio,
        target,
        met,
    )


def print_table(rows: list[Row]) -> None:
    header = Row(
        "scenario",
        "messages",
        "wall s",
        "run s",
        "msg/s",
        "whole msg/s",
        "peak RSS",
        "ideal / baseline",
        "ratio",
        "target",
        "met?",
    )
    table = [header, *rows]
    columns = [f.name for f in fields(Row)]
    widths = {c: max(len(getattr(r, c)) for r in table) for c in columns}
    for index, row in enumerate(table):
        print("  ".join(getattr(row, c).ljust(widths[c]) for c in columns).rstrip())
        if index == 0:
            print("  ".join("-" * widths[c] for c in columns))


def describe(result: Backfill) -> None:
    checks = "ok" if not result.problems else "FAILED: " + "; ".join(result.problems)
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(result.statuses.items()))
    print(
        f"  {result.name}: {result.processed} triaged in {result.run_s:.2f} s "
        f"({result.rate:.1f} msg/s; wall {result.run.wall_s:.2f} s = {result.wall_rate:.1f} msg/s, "
        f"CPU {result.run.cpu_s:.2f} s "
        f"= {1000 * result.run.cpu_s / max(result.messages, 1):.2f} ms/msg, "
        f"peak RSS {result.run.max_rss_mb:.1f} MB); "
        f"db: {statuses}; stub runs: {result.runs_served}; correctness {checks}",
        flush=True,
    )


def print_profile(path: Path, limit: int = 25) -> None:
    """The costliest functions of the profiled run, and triage's own share of them."""
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    entries = stats.stats  # type: ignore[attr-defined]
    print(f"\nprofile of scenario b ({path}): {total:.2f} s of CPU in the profiled process")
    print("  top functions in triage/ by cumulative time (share of the whole run):")
    own = [
        (cumulative, internal, key)
        for key, (_cc, _nc, internal, cumulative, _callers) in entries.items()
        if f"{os.sep}triage{os.sep}" in key[0]
    ]
    for cumulative, internal, (filename, line, function) in sorted(own, reverse=True)[:limit]:
        where = filename.split(f"{os.sep}triage{os.sep}", 1)[1]
        print(
            f"    {100 * cumulative / total:5.1f}% cum  {100 * internal / total:5.1f}% self  "
            f"triage/{where}:{line} {function}"
        )
    print("  top functions anywhere by self time:")
    by_self = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:limit]
    for (filename, line, function), (_cc, _nc, internal, _cum, _callers) in by_self:
        print(f"    {100 * internal / total:5.1f}% self  {Path(filename).name}:{line} {function}")


# --------------------------------------------------------------------------- main


@dataclass(frozen=True, slots=True)
class Sizes:
    messages: int
    memory_messages: int
    capacity_requests: int
    ceiling_runs: int  # for each client alone against the 100 ms stub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small mailboxes: a smoke run")
    parser.add_argument("--messages", type=int, help="messages for the throughput runs (default 2000)")
    parser.add_argument("--memory-messages", type=int, help="messages for the memory run (default 10000)")
    parser.add_argument("--concurrency", type=int, default=32, help="runs in flight (default 32)")
    parser.add_argument(
        "--repeat", type=int, help="runs of scenarios a and b, and rounds of --against (default 3)"
    )
    parser.add_argument("--profile", type=Path, help="also run scenario b under cProfile, writing PATH")
    parser.add_argument("--no-echo", action="store_true", help="stub answers '...', not the prompt")
    parser.add_argument("--against", metavar="REV", help="also compare this checkout with a git revision")
    args = parser.parse_args(argv)
    repeats = max(1, args.repeat or (1 if args.quick else 3))
    sizes = Sizes(300, 500, 3000, 320) if args.quick else Sizes(2000, 10_000, 20_000, 2000)
    sizes = Sizes(
        args.messages or sizes.messages,
        args.memory_messages or sizes.memory_messages,
        sizes.capacity_requests,
        sizes.ceiling_runs,
    )
    with tempfile.TemporaryDirectory(prefix="triage-bench-") as tmp:
        failed = _bench(
            Path(tmp), sizes, args.concurrency, args.profile, echo_prompt=not args.no_echo, repeats=repeats
        )
        if args.against:
            failed |= compare(args.against, Path(tmp), sizes.messages, args.concurrency, repeats)
    return failed


def compare(revision: str, workdir: Path, messages: int, concurrency: int, rounds: int) -> int:
    """Scenarios b and a, alternating this checkout and `revision` in an order swapped every round;
    medians of the loop's rate and of the whole process's, and their ratios."""
    other = workdir / "against"
    added = _git("worktree", "add", "--detach", str(other), revision)
    if added.returncode != 0:
        print(f"\ncannot check out {revision}: {added.stderr.strip()}")
        return 1
    try:
        box = write_mbox(workdir / "compare.mbox", messages, corpus=realistic_messages)
        print(f"\nthis checkout against {revision}, {rounds} alternating rounds, the order swapped each one:")
        problems: list[str] = []
        for label, latency_s in (("b  latency 0", 0.0), ("a  latency 100 ms", 0.1)):
            results: dict[Path, list[Backfill]] = {REPO: [], other: []}
            with run_server_process(latency_s) as server:
                for round_ in range(rounds):
                    for code in (REPO, other) if round_ % 2 == 0 else (other, REPO):
                        name = f"{label[0]}-{code.name}-{round_}"
                        result = backfill(name, box, server, latency_s, concurrency, workdir, code=code)
                        results[code].append(result)
                        problems += [f"{name}: {problem}" for problem in result.problems]
            print_comparison(f"{label}, c={concurrency}", results[REPO], results[other])
        verdict = "; ".join(problems) if problems else "every run recorded one decision per message"
        print(f"correctness: {'FAILED: ' if problems else ''}{verdict}")
        return 1 if problems else 0
    finally:
        _git("worktree", "remove", "--force", str(other))


def print_comparison(label: str, ours: list[Backfill], theirs: list[Backfill]) -> None:
    """The loop's rate and the whole process's, each as medians and their ratio, and every run's."""
    for what, rate in (("loop", lambda r: r.rate), ("whole process", lambda r: r.wall_rate)):
        mine, others = [rate(r) for r in ours], [rate(r) for r in theirs]
        print(
            f"  {label}, {what}: {statistics.median(mine):.1f} msg/s against {statistics.median(others):.1f}"
            f" = {statistics.median(mine) / max(statistics.median(others), 1e-9):.2f}x"
            f"  (runs: {_rates(mine)} against {_rates(others)})"
        )


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)


def _rates(rates: list[float]) -> str:
    return ", ".join(f"{rate:.0f}" for rate in rates)


def _median_of(
    times: int,
    name: str,
    box: Mailbox,
    server: RunServerProcess,
    latency_s: float,
    concurrency: int,
    workdir: Path,
) -> tuple[Backfill, list[Backfill]]:
    """The scenario run `times` times: the run of median throughput, and all of them.

    This machine's speed changes from one minute to the next: one run is one draw of it.
    """
    runs = []
    for index in range(times):
        runs.append(
            backfill(
                f"{name}{index + 1}" if times > 1 else name, box, server, latency_s, concurrency, workdir
            )
        )
        describe(runs[-1])
    return sorted(runs, key=lambda run: run.rate)[(times - 1) // 2], runs


def _bench(
    workdir: Path, sizes: Sizes, concurrency: int, profile: Path | None, *, echo_prompt: bool, repeats: int
) -> int:
    latency_s = 0.1
    print(
        f"python {sys.version.split()[0]} on {os.cpu_count()} cores, load average {_load_average():.2f} "
        f"(other work on the machine lowers every figure); workdir {workdir}",
        flush=True,
    )
    started = time.perf_counter()
    box = write_mbox(workdir / "throughput.mbox", sizes.messages, corpus=realistic_messages)
    big = write_mbox(workdir / "memory.mbox", sizes.memory_messages, corpus=realistic_messages)
    new_people = write_mbox(
        workdir / "distinct.mbox", sizes.memory_messages, distinct=True, corpus=realistic_messages
    )
    print(f"mailboxes written in {time.perf_counter() - started:.1f} s:", flush=True)
    for mbox in (box, big):
        print(f"  {mbox.describe()}", flush=True)
    baseline = import_baseline(workdir)  # also warms the bytecode caches for the runs below
    baseline = import_baseline(workdir)
    print(
        f"baseline: `import triage.cli` peaks at {baseline.max_rss_mb:.1f} MB RSS in {baseline.wall_s:.2f} s",
        flush=True,
    )

    results: dict[str, Backfill] = {}
    spread: dict[str, list[Backfill]] = {}
    with run_server_process(0.0, echo_prompt=echo_prompt) as server:
        answered, capacity_s = measure_stub_capacity(server, sizes.capacity_requests)
        capacity = answered / capacity_s
        print(
            f"stub capacity: {answered} runs in {capacity_s:.2f} s = {capacity:.0f} req/s "
            "(lower bound: the load client shares the machine)",
            flush=True,
        )
        scenarios = (
            ("b", concurrency, box),
            ("c", 1, box),
            ("d", concurrency, big),
            ("e", concurrency, new_people),
        )
        for name, conc, mbox in scenarios:
            runs = repeats if name == "b" else 1
            results[name], spread[name] = _median_of(runs, name, mbox, server, 0.0, conc, workdir)
        if profile is not None:
            profiled = backfill("b-profiled", box, server, 0.0, concurrency, workdir, profile=profile)
            describe(profiled)
            spread["b-profiled"] = [profiled]
    with run_server_process(latency_s, echo_prompt=echo_prompt) as server:
        ceilings = {
            "a0 raw-socket client alone": measure_stub_capacity(server, sizes.ceiling_runs, concurrency),
            "a1 triage's run client alone": measure_run_client(server, sizes.ceiling_runs, concurrency),
        }
        for label, (answered_here, seconds) in ceilings.items():
            print(f"  {label}: {answered_here} runs in {seconds:.2f} s", flush=True)
        results["a"], spread["a"] = _median_of(repeats, "a", box, server, latency_s, concurrency, workdir)

    a, b, c, d, e = (results[k] for k in ("a", "b", "c", "d", "e"))
    # Messages that are not mail need no run, so the ideal rate counts them as free.
    ideal = concurrency / latency_s * box.messages / box.mail
    capacity_row = Row(
        "stub server capacity",
        str(answered),
        f"{capacity_s:.2f}",
        "-",
        f"{capacity:.0f} req/s",
        "-",
        "-",
        f"b: {b.rate:.0f} msg/s",
        f"{capacity / max(b.rate, 1e-9):.1f}x",
        ">= 2000 req/s",
        _yes(capacity >= 2000),
    )
    rows = [
        capacity_row,
        _row(
            f"a  latency 100 ms, c={concurrency}",
            a,
            f"ideal {ideal:.1f} msg/s",
            f"{a.rate / ideal:.3f}",
            ">= 0.90",
            _yes(a.rate / ideal >= 0.90),
        ),
        *(
            Row(
                f"{label}, c={concurrency}",
                str(answered_here),
                f"{seconds:.2f}",
                "-",
                f"{answered_here / seconds:.1f} runs/s",
                "-",
                "-",
                f"ideal {concurrency / latency_s:.0f} runs/s",
                f"{answered_here / seconds / (concurrency / latency_s):.3f}",
                "-",
                "-",
            )
            for label, (answered_here, seconds) in ceilings.items()
        ),
        _row(
            f"b  latency 0, c={concurrency}",
            b,
            f"c: {c.rate:.1f} msg/s",
            f"{b.rate / max(c.rate, 1e-9):.2f}x c",
            ">= 500 msg/s",
            _yes(b.rate >= 500),
        ),
        _row("c  latency 0, c=1 (one run at a time)", c, "-", "1.00x c"),
        _row(
            f"d  memory, latency 0, c={concurrency}",
            d,
            f"import {baseline.max_rss_mb:.1f} MB",
            f"{d.run.max_rss_mb / baseline.max_rss_mb:.2f}x",
            "< 150 MB",
            _yes(d.run.max_rss_mb < 150),
        ),
        _row(
            f"e  as d, new sender and subject each, c={concurrency}",
            e,
            f"d: {d.rate:.1f} msg/s",
            f"{e.rate / max(d.rate, 1e-9):.2f}x d",
        ),
    ]
    print()
    print_table(rows)
    print(
        "\nmsg/s and run s are triage's own (the backfill loop); wall s and whole msg/s are the whole "
        "process: start-up, migrations, the run worker's spawn and shutdown included."
    )
    print(
        f"ideal = {concurrency} in flight / {latency_s * 1000:.0f} ms "
        f"= {concurrency / latency_s:.0f} runs/s; "
        f"{box.unparseable} of {box.messages} messages are not mail and need no run."
    )
    for name in ("a", "b"):
        if len(spread[name]) > 1:
            rates = _rates([run.rate for run in spread[name]])
            print(f"{name}: {len(spread[name])} runs, {rates} msg/s; the table shows the median run.")
    failed = [r for runs in spread.values() for r in runs if r.problems]
    print(
        "correctness: "
        + (
            "every run recorded exactly one decision per message, ok for mail, "
            "unparseable for non-mail, one stub run per ok message"
            if not failed
            else "FAILED in " + ", ".join(r.name for r in failed)
        )
    )
    print(f"load average at the end: {_load_average():.2f}")
    if profile is not None:
        print_profile(profile)
    return 1 if failed else 0


def _load_average() -> float:
    """The one-minute load average, to tell a busy machine from a slow program."""
    return os.getloadavg()[0]


if __name__ == "__main__":
    sys.exit(main())
