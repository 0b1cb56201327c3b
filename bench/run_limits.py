"""Run-limit benchmark: `triage backfill` against a rate-limited stub and against slow, uneven runs.

    python bench/run_limits.py                 # every scenario (about two minutes on two cores)
    python bench/run_limits.py --quick         # smoke run with small mailboxes
    python bench/run_limits.py --only latency  # one scenario (repeatable)

It measures the adaptive concurrency limit of the run client (triage/adaptive_limit.py): the
`--concurrency` given is a ceiling; the limit starts at 10, grows while runs succeed, is cut to 0.7x
of itself on a 429/503 or on a graph error naming a rate limit, and every run waits as long as a
rejected one does (its Retry-After, or its backoff).

1. rate limit, HTTP 429: the stub admits 20 runs/s (a token bucket, bursts of 20) and answers 429
   with a Retry-After past that; each run takes 0.2 s; 400 messages, `--concurrency 64`.
2. rate limit as graph errors: the same, but a refused run is a 200 whose state is a
   `RateLimitError` `__error__` (how a model provider's 429 surfaces through LangGraph).
   For 1 and 2, the targets (from the issue): throughput >= 0.85 of the allowed rate, <= 10 % of
   the calls rejected, 0 decisions in `error`. Throughput is runs executed / the backfill's own
   elapsed time / the allowed rate; beside it, the ceiling of that share in this run: the bucket
   starts full, so `runs` runs need at least (runs - burst) / rate + one run's latency.
3. realistic latency: each run takes a seeded lognormal draw (median 2 s, sigma 0.8, capped at
   30 s: a heavy tail), no rate limit, 600 messages, `--concurrency 64`. Throughput against the
   ideal concurrency / mean latency, the mean of the draws the stub actually made (replayed here
   from the same seed); beside it the ideal makespan of those very draws on `concurrency` fixed
   slots, and on a limit that slow-starts from 10 as triage's does. No target from the issue.

Every ideal is measured or computed in the same run, so the machine's speed cancels out as far
as it can. The helpers (mailbox, subprocess measurement, store query) are bench/backfill.py's; the
stub is the tests' own (`tests/support/run_server.py`), in a process of its own. Each scenario runs
`python -m triage backfill --source X.mbox --quiet --concurrency C` as a subprocess with a fresh
SQLite store in a temporary directory, configured only through TRIAGE_* environment variables
(timeout 60 s). While it runs, the stub's counters (runs in flight, runs executed, rejected) are
sampled every 0.2 s; the backfill's stderr progress line (every 10 s when stderr is not a
terminal) names the limit then.

Correctness: one decision per message, `ok` for each message that is mail and `unparseable` for the
corpus's `garbage_bytes` kind (not mail, so no run), none in `error`, and exactly one executed run
per `ok` decision.

Exit status: 0 when every scenario completed and passed its correctness checks (targets missed or
not), 1 otherwise. Nothing is written outside a temporary directory, which is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import math
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.backfill import SUMMARY_LINE, Mailbox, Run, clean_env, db_statuses, run_measured, write_mbox
from tests.support.run_server import RateLimitMode, RunServerProcess, run_server_process
from tests.support.run_store import parse_latency
from triage.adaptive_limit import INITIAL

PROGRESS_LINE = re.compile(r"backfill: (\d+)/(\d+) messages, [\d.]+ msg/s.*?, concurrency (\d+)")
SAMPLE_S = 0.2
CHECKOUT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60
SHARE_TARGET = 0.85
REJECTED_TARGET = 0.10
SCENARIOS = ("429", "graph-error", "latency")


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    label: str
    box: Mailbox
    concurrency: int
    latency: str  # the stub's --latency: seconds, or lognormal:median=S,sigma=X,max=S
    seed: int = 0
    rate_limit: tuple[float, int] | None = None
    mode: RateLimitMode = "http"


@dataclass(frozen=True, slots=True)
class Sample:
    """The stub's counters at `t` seconds after the backfill process was started."""

    t: float
    in_flight: int
    runs: int
    rejected: int


@dataclass(slots=True)
class Result:
    """One backfill, what its store holds and what the stub counted."""

    scenario: Scenario
    run: Run | None = None
    processed: int = 0
    loop_s: float = 0.0  # the backfill's own elapsed time (its summary line)
    statuses: dict[str, int] = field(default_factory=dict)
    attempts: list[int] = field(default_factory=list)  # per ok decision
    latencies_ms: list[int] = field(default_factory=list)  # per ok decision, as recorded
    stats: dict[str, int] = field(default_factory=dict)  # the stub's counters afterwards
    samples: list[Sample] = field(default_factory=list)  # the stub's counters, every SAMPLE_S
    limits: list[tuple[int, int]] = field(default_factory=list)  # (messages done, limit) from stderr
    load: tuple[float, float] = (0.0, 0.0)  # one-minute load average before and after
    problems: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return self.stats.get("runs", 0)

    @property
    def rejected(self) -> int:
        return self.stats.get("rejected", 0)

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.loop_s if self.loop_s > 0 else 0.0

    @property
    def rejected_share(self) -> float:
        calls = self.runs + self.rejected
        return self.rejected / calls if calls else 0.0


# --------------------------------------------------------------------------- running a scenario


class StubSampler:
    """The stub's counters every SAMPLE_S seconds, on a thread, while a backfill runs."""

    def __init__(self, server: RunServerProcess) -> None:
        self.server = server
        self.samples: list[Sample] = []
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="in-flight-sampler", daemon=True)

    def __enter__(self) -> StubSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            with contextlib.suppress(OSError, ValueError, KeyError):
                stats = self.server.stats()
                t = time.monotonic() - self._started
                self.samples.append(Sample(t, stats["in_flight"], stats["runs"], stats["rejected"]))


def run_scenario(scenario: Scenario, workdir: Path, timeout_s: float) -> Result:
    """Start the stub, backfill the scenario's mailbox into a fresh store, and read what happened."""
    result = Result(scenario)
    db = workdir / f"{scenario.key}.db"
    argv = [sys.executable, "-m", "triage", "backfill", "--source", str(scenario.box.path), "--quiet"]
    argv += ["--concurrency", str(scenario.concurrency)]
    load_before = os.getloadavg()[0]
    with run_server_process(
        latency=scenario.latency,
        seed=scenario.seed,
        rate_limit=scenario.rate_limit,
        rate_limit_mode=scenario.mode,
    ) as server:
        env = clean_env(
            TRIAGE_LANGGRAPH__URL=server.url,
            TRIAGE_STORE__URL=f"sqlite:///{db}",
            TRIAGE_LANGGRAPH__TIMEOUT_S=str(TIMEOUT_S),
            TRIAGE_LANGGRAPH__MAX_CONCURRENCY=str(scenario.concurrency),
            PYTHONPATH=str(CHECKOUT),  # this checkout's triage, whatever is installed
        )
        with StubSampler(server) as sampler:
            try:
                result.run = run_measured(argv, env=env, cwd=workdir, timeout_s=timeout_s)
            except TimeoutError as exc:
                result.problems.append(str(exc))
        result.samples = sampler.samples
        result.stats = server.stats()
    result.load = (load_before, os.getloadavg()[0])
    if result.run is not None:
        _read_output(result, result.run)
    if db.exists():
        _read_store(result, db)
    _check(result)
    return result


def _read_output(result: Result, run: Run) -> None:
    match = SUMMARY_LINE.search(run.stdout)
    if run.returncode != 0 or match is None:
        result.problems.append(f"exit {run.returncode}: {(run.stdout + run.stderr).strip()[-400:]}")
    if match is not None:
        result.processed, result.loop_s = int(match.group(1)), float(match.group(3))
    result.limits = [(int(m.group(1)), int(m.group(3))) for m in PROGRESS_LINE.finditer(run.stderr)]


def _read_store(result: Result, db: Path) -> None:
    result.statuses = db_statuses(db)
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        rows = connection.execute(
            "SELECT attempts, latency_ms FROM decisions WHERE status = 'ok' AND latency_ms IS NOT NULL"
        ).fetchall()
    result.attempts = [int(attempts) for attempts, _ in rows]
    result.latencies_ms = [int(latency) for _, latency in rows]


def _check(result: Result) -> None:
    box = result.scenario.box
    expected = {"ok": box.mail, "unparseable": box.unparseable}
    statuses = {k: v for k, v in result.statuses.items() if v}
    if sum(statuses.values()) != box.messages:
        result.problems.append(f"{sum(statuses.values())} decisions for {box.messages} messages")
    if statuses != {k: v for k, v in expected.items() if v}:
        result.problems.append(f"statuses {statuses}, expected {expected}")
    if result.runs != statuses.get("ok", 0):
        result.problems.append(f"stub executed {result.runs} runs for {statuses.get('ok', 0)} ok decisions")


# --------------------------------------------------------------------------- ideals


def rate_limit_ceiling(runs: int, rate: float, burst: int, latency_s: float) -> float:
    """The largest share of the allowed rate `runs` runs can reach: the bucket starts full, so they
    need at least (runs - burst) / rate seconds to be admitted, and the last one takes latency_s."""
    fastest_s = max(0, runs - burst) / rate + latency_s
    return runs / fastest_s / rate if fastest_s > 0 else math.inf


def drawn_latencies(spec: str, seed: int, count: int) -> list[float]:
    """The first `count` latencies the stub drew (one per `ok` run, in the order runs arrived)."""
    draw = parse_latency(spec, seed)
    return [draw() for _ in range(count)]


def makespan(latencies: list[float], ceiling: int, initial: int | None = None) -> float:
    """Seconds to run these, in order, never more than the limit at once. The limit is `ceiling`;
    or, given `initial`, it starts there and grows by one per completed run up to `ceiling` (the
    adaptive limit's slow start when nothing is rate-limited)."""
    limit = ceiling if initial is None else min(initial, ceiling)
    running: list[float] = []  # finish times
    now, started = 0.0, 0
    while started < len(latencies) or running:
        while len(running) < limit and started < len(latencies):
            heapq.heappush(running, now + latencies[started])
            started += 1
        now = heapq.heappop(running)
        limit = min(ceiling, limit + 1)
    return now


# --------------------------------------------------------------------------- report


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def _limits(result: Result) -> str:
    seen = [limit for _, limit in result.limits]
    return "/".join(str(limit) for limit in seen) if seen else "-"


def busy(result: Result) -> list[Sample]:
    """The samples taken while runs were left to start: from the first run to the start of the last."""
    return [sample for sample in result.samples if 0 < sample.runs < result.runs]


def _in_flight(result: Result) -> str:
    samples = busy(result)
    mean = statistics.fmean(sample.in_flight for sample in samples) if samples else 0.0
    return f"{mean:.1f} / {result.stats.get('max_in_flight', 0)}"


def timeline(samples: list[Sample], window_s: float) -> str:
    """Runs started and rejected in each `window_s` since the backfill process started."""
    parts: list[str] = []
    previous = Sample(0.0, 0, 0, 0)
    for sample in samples:
        if sample.t >= previous.t + window_s or sample is samples[-1]:
            runs, rejected = sample.runs - previous.runs, sample.rejected - previous.rejected
            if runs or rejected or parts:
                parts.append(f"{previous.t:.0f}-{sample.t:.0f} s {runs}/{rejected}")
            previous = sample
    return ", ".join(parts) or "no samples"


def _decisions(result: Result) -> str:
    s = result.statuses
    return f"{s.get('ok', 0)} ok, {s.get('error', 0)} err, {s.get('unparseable', 0)} unp"


def _wall(result: Result) -> str:
    return f"{result.run.wall_s:.1f}" if result.run is not None else "-"


def _measured(result: Result) -> list[str]:
    """The first cells of every scenario's row: what it was, what it recorded, how long, how fast."""
    return [
        result.scenario.label,
        _decisions(result),
        _wall(result),
        f"{result.loop_s:.1f}",
        f"{result.runs_per_s:.2f}",
    ]


def rate_limit_row(result: Result, rate: float, burst: int, latency_s: float) -> list[str]:
    share = result.runs_per_s / rate
    ceiling = rate_limit_ceiling(result.runs, rate, burst, latency_s)
    errors = result.statuses.get("error", 0)
    met = share >= SHARE_TARGET and result.rejected_share <= REJECTED_TARGET and errors == 0
    return [
        *_measured(result),
        f"{rate:g} allowed (ceiling {ceiling:.2f})",
        f"{share:.3f}",
        f"{100 * result.rejected_share:.1f}% ({result.rejected})",
        _in_flight(result),
        _limits(result),
        f">= {SHARE_TARGET}, <= {100 * REJECTED_TARGET:.0f}% rej, 0 err",
        _yes(met and not result.problems),
    ]


def latency_row(result: Result, mean_s: float) -> list[str]:
    ideal = result.scenario.concurrency / mean_s if mean_s > 0 else math.inf
    return [
        *_measured(result),
        f"{ideal:.2f} = {result.scenario.concurrency} / {mean_s:.2f} s",
        f"{result.runs_per_s / ideal:.3f}",
        f"{100 * result.rejected_share:.1f}% ({result.rejected})",
        _in_flight(result),
        _limits(result),
        "- (none in the issue)",
        "-" if not result.problems else "NO",
    ]


def makespan_row(result: Result, ideal_s: float) -> list[str]:
    ideal = result.runs / ideal_s if ideal_s > 0 else math.inf
    return [
        "3' the same run, against its draws",
        "",
        "",
        "",
        f"{result.runs_per_s:.2f}",
        f"{ideal:.2f} = {result.runs} / {ideal_s:.1f} s",
        f"{result.runs_per_s / ideal:.3f}",
        "",
        "",
        "",
        "-",
        "-",
    ]


HEADER = [
    "scenario",
    "decisions",
    "wall s",
    "loop s",
    "runs/s",
    "ideal runs/s",
    "share",
    "rejected",
    "in flight mean/peak",
    "limit seen",
    "target",
    "met?",
]


def print_table(rows: list[list[str]]) -> None:
    table = [HEADER, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    for index, row in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def describe(result: Result) -> None:
    run = result.run
    cpu = f"CPU {run.cpu_s:.1f} s, peak RSS {run.max_rss_mb:.0f} MB" if run is not None else "no run"
    latencies = sorted(result.latencies_ms)
    recorded = (
        f"recorded latency_ms mean {statistics.fmean(latencies):.0f}, "
        f"p50 {latencies[len(latencies) // 2]}, p95 {latencies[int(0.95 * (len(latencies) - 1))]}, "
        f"max {latencies[-1]}"
        if latencies
        else "no latency recorded"
    )
    retried = sum(1 for attempts in result.attempts if attempts > 1)
    attempts = (
        f"attempts: {retried} of {len(result.attempts)} ok runs needed more than one "
        f"(most {max(result.attempts)}, {sum(result.attempts)} in all)"
        if result.attempts
        else "no attempts recorded"
    )
    progress = ", ".join(f"{limit} at {done}" for done, limit in result.limits) or "no progress line"
    stats = ", ".join(f"{name} {value}" for name, value in result.stats.items())
    window_s = max(1.0, math.ceil((result.run.wall_s if result.run else 10.0) / 12))
    series = timeline(result.samples, window_s)
    checks = "ok" if not result.problems else "FAILED: " + "; ".join(result.problems)
    print(
        f"  {result.scenario.label}: {result.processed} triaged in {result.loop_s:.1f} s "
        f"(wall {_wall(result)} s, {cpu}); {recorded}; {attempts}; "
        f"limit per progress line (limit at messages done): {progress}; stub: {stats}; "
        f"runs/rejected at the stub per {window_s:g} s since the process started: {series}; "
        f"load average {result.load[0]:.2f} -> {result.load[1]:.2f}; correctness {checks}",
        flush=True,
    )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small mailboxes: a smoke run")
    parser.add_argument("--messages", type=int, help="messages of the rate-limit scenarios (default 400)")
    parser.add_argument(
        "--latency-messages", type=int, help="messages of the realistic-latency scenario (default 600)"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="the ceiling, --concurrency (default 64)")
    parser.add_argument("--rate", type=float, default=20.0, help="runs/s the stub admits (default 20)")
    parser.add_argument("--burst", type=int, help="the stub's bucket size (default: one second's worth)")
    parser.add_argument(
        "--run-latency", type=float, default=0.2, help="seconds per run under the rate limit (default 0.2)"
    )
    parser.add_argument(
        "--latency",
        default="lognormal:median=2,sigma=0.8,max=30",
        help="run latency of scenario 3 (default lognormal:median=2,sigma=0.8,max=30)",
    )
    parser.add_argument("--seed", type=int, default=0, help="of the stub's latency draws (default 0)")
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)"
    )
    args = parser.parse_args(argv)
    messages = args.messages or (100 if args.quick else 400)
    latency_messages = args.latency_messages or (150 if args.quick else 600)
    burst = args.burst or max(1, math.ceil(args.rate))
    chosen = args.only or list(SCENARIOS)
    parse_latency(args.latency)  # a bad spec fails here, not in the stub
    with tempfile.TemporaryDirectory(prefix="triage-bench-limits-") as tmp:
        return _bench(Path(tmp), args, messages, latency_messages, burst, chosen)


def revision() -> str:
    """The checkout measured: its commit, and whether triage/ differs from it."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "triage")
    return f"{commit}{' with uncommitted changes in triage/' if dirty else ''}"


def _bench(
    workdir: Path,
    args: argparse.Namespace,
    messages: int,
    latency_messages: int,
    burst: int,
    chosen: list[str],
) -> int:
    print(
        f"python {sys.version.split()[0]} on {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f} (other work on the machine lowers every figure); triage at "
        f"{revision()}; workdir {workdir}",
        flush=True,
    )
    limited_box = write_mbox(workdir / "limited.mbox", messages)
    slow_box = write_mbox(workdir / "slow.mbox", latency_messages)
    print(
        f"mailboxes: {limited_box.messages} and {slow_box.messages} varied corpus messages "
        f"({limited_box.unparseable} and {slow_box.unparseable} of them not mail: no run)",
        flush=True,
    )
    limit = (args.rate, burst)
    c = args.concurrency
    scenarios = {
        "429": Scenario("429", f"1 rate limit, HTTP 429, c={c}", limited_box, c, repr(args.run_latency),
                        rate_limit=limit, mode="http"),
        "graph-error": Scenario("graph-error", f"2 rate limit as graph errors, c={c}", limited_box, c,
                                repr(args.run_latency), rate_limit=limit, mode="graph-error"),
        "latency": Scenario("latency", f"3 lognormal latency, c={c}", slow_box, c, args.latency,
                            seed=args.seed),
    }  # fmt: skip
    results: list[Result] = []
    rows: list[list[str]] = []
    notes: list[str] = []
    for key in chosen:
        scenario = scenarios[key]
        if scenario.rate_limit is not None:
            ideal_s = scenario.box.mail / args.rate + args.run_latency
        else:
            ideal_s = 10 * scenario.box.mail / scenario.concurrency  # ten seconds a run at worst
        result = run_scenario(scenario, workdir, timeout_s=120 + 4 * ideal_s)
        results.append(result)
        describe(result)
        if scenario.rate_limit is not None:
            rows.append(rate_limit_row(result, args.rate, burst, args.run_latency))
            continue
        draws = drawn_latencies(scenario.latency, scenario.seed, result.runs)
        mean_s = statistics.fmean(draws) if draws else 0.0
        rows.append(latency_row(result, mean_s))
        if draws:
            fixed = makespan(draws, scenario.concurrency)
            slow_start = makespan(draws, scenario.concurrency, initial=INITIAL)
            rows.append(makespan_row(result, fixed))
            notes.append(
                f"{scenario.label}: the stub drew {len(draws)} latencies, mean {mean_s:.2f} s, median "
                f"{statistics.median(draws):.2f} s, max {max(draws):.1f} s "
                f"({sum(d >= 10 for d in draws)} of 10 s or more); sum / concurrency "
                f"{sum(draws) / scenario.concurrency:.1f} s; ideal makespan of these draws in this order "
                f"on {scenario.concurrency} fixed slots {fixed:.1f} s, on a limit slow-starting from "
                f"{INITIAL} (+1 a completed run) {slow_start:.1f} s; the backfill's loop took "
                f"{result.loop_s:.1f} s ({slow_start / result.loop_s if result.loop_s else 0:.3f} of the "
                "slow-start ideal)"
            )
    print()
    print_table(rows)
    print(
        "\nruns/s: runs the stub executed / the backfill's own elapsed time (loop s, from its summary "
        "line; wall s is the whole process, start-up and migrations included). share: runs/s / the "
        "allowed rate (1, 2) or / the ideal (3). rejected: the stub's rejected / (runs + rejected). "
        f"in flight: the stub's in_flight sampled every {SAMPLE_S} s, mean over the samples while runs "
        "were left to start (first run to the start of the last), and its max_in_flight. limit seen: "
        "the concurrency on each progress line (one every 10 s). 3': the ideal is the makespan of the "
        "very latencies the stub drew, in their order, on `concurrency` fixed slots (a finite run "
        "ends with its slowest stragglers, which concurrency / mean latency leaves out)."
    )
    for note in notes:
        print(note)
    failed = [result for result in results if result.problems]
    print(
        "correctness: "
        + (
            "every scenario completed, one decision per message, ok for mail, unparseable for "
            "non-mail, none in error, one executed run per ok decision"
            if not failed
            else "FAILED in " + ", ".join(result.scenario.label for result in failed)
        )
    )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}; triage at {revision()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
