"""Start-up benchmark: what a command costs before it does anything, beside the interpreter's own.

    python bench/startup.py              # 21 runs of each command
    python bench/startup.py --repeat 51

Each command runs as a subprocess, as a user runs it, in turns (so a slow minute of the machine
falls on every command alike); the median wall time of each is printed, and its ratio to the
median of `python -c pass` measured in the same run. Targets: `triage --help` at most 150 ms and
`triage log --limit 1` at most 400 ms (on a log of 10,000 decisions made here). The imports of
SQLAlchemy and pydantic-settings alone are timed too: the floor under any command that reads the
log through the store and its configuration.

Exit status: 0 when every command succeeded (targets met or not), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from triage.message import Email, parse_email
from triage.sources import RawMessage
from triage.store.decisions import Claim, Outcome, Store

TARGETS_MS = {"triage --help": 150.0, "triage log --limit 1": 400.0}


def _fill(path: Path, count: int) -> None:
    """A log of `count` decided messages, written through the store as triage writes them."""
    store = Store.open(f"sqlite:///{path}")
    with store.batched():
        for uid in range(1, count + 1):
            mail = f"From: a{uid % 97}@example.com\r\nSubject: Request {uid}\r\n\r\nBody {uid}\r\n"
            raw = RawMessage("acct", "INBOX", 1, uid, mail.encode())
            email = parse_email(raw.raw, 4000)
            assert isinstance(email, Email)
            claimed = store.claim(raw, email, Claim("prompt", "hash", "agent", {}))
            assert claimed is not None
            store.record(claimed, Outcome("ok", "ignore", reason="bench"))
    store.close()


def _time(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed * 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=21, help="runs of each command (default 21)")
    parser.add_argument("--decisions", type=int, default=10_000, help="decisions in the log (default 10,000)")
    args = parser.parse_args()
    # The script installed beside this interpreter, as a virtualenv's PATH finds it; not a version
    # manager's shim that PATH may find first (pyenv's costs a shell and a second process).
    script = Path(sys.executable).with_name("triage")
    prefix = [str(script)] if script.exists() else [sys.executable, "-m", "triage"]
    with tempfile.TemporaryDirectory(prefix="triage-startup-") as folder:
        workdir = Path(folder)
        db = workdir / "triage.db"
        _fill(db, args.decisions)
        # Bytecode cached, as a user has it: the first (warm-up) run of each command writes it.
        dropped = ("TRIAGE_", "PYTHONDONTWRITEBYTECODE")
        env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
        env["TRIAGE_STORE__URL"] = f"sqlite:///{db}"
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import sqlalchemy": [sys.executable, "-c", "import sqlalchemy"],
            "import pydantic_settings": [sys.executable, "-c", "import pydantic_settings"],
            "triage --help": [*prefix, "--help"],
            "triage log --limit 1": [*prefix, "log", "--limit", "1"],
        }
        for command in commands.values():  # warm the file cache and the bytecode
            _time(command, env, workdir)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, command in commands.items():
                times[name].append(_time(command, env, workdir))
    baseline = statistics.median(times["python -c pass"])
    print(f"start-up, median of {args.repeat} runs each, in turns ({args.decisions:,} decisions in the log)")
    print(f"{'command':<24} {'median ms':>10} {'x python -c pass':>17} {'target ms':>10}")
    for name, measured in times.items():
        median = statistics.median(measured)
        target = TARGETS_MS.get(name)
        verdict = "" if target is None else f"{target:>10.0f} {'met' if median <= target else 'MISSED'}"
        print(f"{name:<24} {median:>10.1f} {median / baseline:>17.2f} {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
