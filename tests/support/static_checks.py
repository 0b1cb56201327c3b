"""The code's own checks (ruff's lint and format, mypy over the package), as subprocesses that may
start early.

mypy checks incrementally, from a cache kept between runs in .mypy_cache (ignored by git): about
2 s when little changed, against 20 s of one core from nothing. The cache is shared with a plain
`mypy triage`, whose options it matches. conftest starts the checks a session will run as soon as
collection ends, so they run on the second core while the other tests run on the first; the test
then only collects the result. A check nobody started is started when its result is asked for.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
CHECKS: dict[str, list[str]] = {
    "ruff-lint": ["ruff", "check", "--no-cache", "."],
    "ruff-format": ["ruff", "format", "--check", "--no-cache", "."],
    "mypy": ["mypy", "--cache-dir", ".mypy_cache", "triage"],
}
TIMEOUT_S = 600


@dataclass(slots=True)
class _Running:
    process: subprocess.Popen[bytes]
    output: IO[bytes]


_running: dict[str, _Running] = {}


def start(name: str) -> None:
    """Start a check in the background, once."""
    if name in _running:
        return
    output = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop_all(), at the end of the session
    process = subprocess.Popen(
        [sys.executable, "-m", *CHECKS[name]], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
    )
    _running[name] = _Running(process, output)


def result(name: str) -> tuple[int, str]:
    """A check's exit status and output, once it has finished."""
    start(name)
    running = _running[name]
    status = running.process.wait(timeout=TIMEOUT_S)
    running.output.seek(0)
    return status, running.output.read().decode(errors="replace")


def stop_all() -> None:
    """Kill checks still running (the session ended without asking for them) and forget them all."""
    for running in _running.values():
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
        with contextlib.suppress(OSError):
            running.output.close()
    _running.clear()
