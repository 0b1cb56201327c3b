"""Several backfills on one store: the throughput of N `triage backfill` processes over one IMAP
mailbox, against one process measured in the same run.

    python bench/shared_backfill.py                    # 1,000 messages; 1, 2 and 4 processes
    python bench/shared_backfill.py --messages 200 --workers 1 2

This is how several machines share a backfill: the same config, one PostgreSQL store, each
process started on its own. They divide the mailbox through the claims in the store (a message
another live process holds is left to it), so N processes should take about 1/N of the time when
the run server has room for all of them. Here it has: the stub run server (its own process)
answers every run after `--latency` seconds (0.5 s, a fast model) and serves thousands a second.
Each process runs `--concurrency` runs at once (8), so one process manages at most
concurrency / latency messages a second, and N processes N times that.

Each scenario has a fresh, empty database of a private PostgreSQL cluster (tests/support/postgres.py)
and the same mailbox of a private Dovecot (needs root, as the tests' does); the wall time runs from
the first process's start to the last one's exit, start-up and migrations included. Printed per
scenario: wall time, messages a second, the ratio to one process, the ideal ratio N, and the CPU
time of all the backfills and their run workers together.

Correctness, checked for every scenario: each process exits 0, the store holds exactly one decision
per message, every one `ok` at its first attempt, and the stub executed exactly one run per message.
Exit status: 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.backfill import clean_env
from tests.support.configs import write_config
from tests.support.dovecot import DovecotServer
from tests.support.postgres import PostgresCluster, committed_rows
from tests.support.run_server import RunServerProcess, run_server_process

MAILBOX = "Shared"


@dataclass(frozen=True, slots=True)
class Scenario:
    workers: int
    wall_s: float
    cpu_s: float  # the backfills' and their run workers' CPU, all together
    problems: list[str]


def _message(n: int) -> bytes:
    return (
        f"From: customer{n % 97}@example.com\r\nTo: support@example.com\r\n"
        f"Subject: Request {n}: the export stops at row {n * 7}\r\n"
        f"Message-ID: <shared-{n}@example.test>\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\n\r\n"
        f"Hello, the export of project {n} stops halfway. Could you have a look?\r\n"
    ).encode()


def run_scenario(
    folder: Path,
    dovecot: DovecotServer,
    stub: RunServerProcess,
    url: str,
    workers: int,
    args: argparse.Namespace,
) -> Scenario:
    """`workers` backfills started together on an empty database; what went wrong, if anything."""
    write_config(
        folder,
        dovecot,
        stub.url,
        langgraph={"max_concurrency": args.concurrency},
        store={"url": url},
        mailboxes=[MAILBOX],
    )
    runs_before = stub.stats()["runs"]
    command = [sys.executable, "-m", "triage", "backfill", "--quiet", "--concurrency", str(args.concurrency)]
    started, cpu_before = time.monotonic(), _children_cpu_s()
    processes = [
        subprocess.Popen(command, cwd=folder, env=clean_env(), stderr=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    errors = [process.communicate(timeout=args.messages * args.latency + 600)[1] for process in processes]
    wall_s, cpu_s = time.monotonic() - started, _children_cpu_s() - cpu_before
    problems = [
        f"process {n} exited {process.returncode}: {error.strip()[-500:]}"
        for n, (process, error) in enumerate(zip(processes, errors, strict=True))
        if process.returncode != 0
    ]
    decided = committed_rows(
        url, "SELECT count(*), count(DISTINCT message_pk) FROM decisions WHERE status = 'ok' AND attempts = 1"
    )
    every = committed_rows(url, "SELECT count(*) FROM decisions")
    if decided != [(args.messages, args.messages)] or every != [(args.messages,)]:
        problems.append(f"decisions (ok at the first attempt, distinct): {decided}, in all: {every}")
    if (runs := stub.stats()["runs"] - runs_before) != args.messages:
        problems.append(f"the stub executed {runs} runs for {args.messages} messages")
    return Scenario(workers, wall_s, cpu_s, problems)


def _children_cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def print_table(scenarios: list[Scenario], messages: int) -> None:
    alone = scenarios[0]
    against = f"against {alone.workers} (same run)"
    print(f"\n| processes | messages | wall s | msg/s | {against} | ideal | CPU s | checks |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for scenario in scenarios:
        speedup = alone.wall_s / scenario.wall_s
        ideal = scenario.workers / alone.workers
        checks = "ok" if not scenario.problems else "; ".join(scenario.problems)
        print(
            f"| {scenario.workers} | {messages:,} | {scenario.wall_s:.1f} | {messages / scenario.wall_s:.1f} "
            f"| {speedup:.2f} x | {ideal:.0f} x | {scenario.cpu_s:.1f} | {checks} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the stub takes per run")
    parser.add_argument("--concurrency", type=int, default=8, help="runs in flight per process")
    args = parser.parse_args(argv)
    scenarios = []
    with (
        run_server_process(args.latency) as stub,
        DovecotServer.start() as dovecot,
        PostgresCluster() as cluster,
        tempfile.TemporaryDirectory() as tmp,
    ):
        dovecot.create_mailbox(MAILBOX)
        for start in range(0, args.messages, 500):
            dovecot.append([_message(n) for n in range(start, min(start + 500, args.messages))], MAILBOX)
        for workers in args.workers:
            scenario = run_scenario(Path(tmp), dovecot, stub, cluster.new_database(), workers, args)
            print(f"{workers} process(es): {scenario.wall_s:.1f} s", file=sys.stderr)
            scenarios.append(scenario)
    print_table(scenarios, args.messages)
    return 1 if any(scenario.problems for scenario in scenarios) else 0


if __name__ == "__main__":
    sys.exit(main())
