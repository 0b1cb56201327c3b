"""triage's command line called in this process (`triage.cli.main`), and the mail files it reads.

The fast tier's way to run a command: no interpreter to start, output captured by pytest's capsys.
A backfill still starts its run worker (triage's own child process), as it always does.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

# Runs that fail fast: two attempts, no backoff to speak of.
FAST_RUNS: dict[str, object] = {"timeout_s": 5, "max_attempts": 2, "backoff_cap_s": 0.01}


@dataclass(frozen=True, slots=True)
class Ran:
    """What one call of `triage.cli.main` returned and printed."""

    status: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()

    @property
    def out_lines(self) -> list[str]:
        return self.out.strip().splitlines()


def triage(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Ran:
    """`triage ARGS...` in this process: its exit status, stdout and stderr."""
    from triage.cli import main

    capsys.readouterr()  # what was printed before is not this command's
    status = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return Ran(status, out, err)


def write_mbox(path: Path, messages: Iterable[bytes]) -> Path:
    """An mbox file holding the messages in order (UIDs 1, 2, ... for a file source)."""
    box = mailbox.mbox(path)
    try:
        for raw in messages:
            box.add(raw)
        box.flush()
    finally:
        box.close()
    return path.resolve()  # as triage names the mailbox of a file source


def write_eml_folder(path: Path, messages: Iterable[bytes]) -> Path:
    """A folder of .eml files, named so that their order is the messages' order."""
    path.mkdir(parents=True, exist_ok=True)
    for n, raw in enumerate(messages, 1):
        (path / f"{n:04d}.eml").write_bytes(raw)
    return path.resolve()
