"""Run `triage watch` as a real process and wait on conditions with deadlines (never fixed sleeps)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.store_view import NOT_MADE_YET, rows

_counter = itertools.count()


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Poll until `condition()` is truthy; return the seconds it took, or fail naming `what`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def has_open(pid: int, path: Path) -> bool:
    """Whether process `pid` holds `path` open (read from /proc: how a test knows a process got
    as far as its store without a log line saying so)."""
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:  # gone, or an fd closed while listing
        return False
    return str(path) in links


def bytes_written(pid: int) -> int:
    """Bytes process `pid` has written (files and sockets alike), from /proc/PID/io."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, _, value = line.partition(": ")
        if name == "wchar":
            return int(value)
    raise AssertionError(f"no wchar in /proc/{pid}/io")


def watcher_state(db: Path | str, mailbox: str = "INBOX") -> str | None:
    try:
        found = rows(db, "SELECT state FROM watchers WHERE mailbox = ?", mailbox)
    except NOT_MADE_YET:
        return None
    return str(found[0][0]) if found else None


def watchers_in_state(db: Path | str, state: str) -> int:
    try:
        return int(rows(db, "SELECT count(*) FROM watchers WHERE state = ?", state)[0][0])  # type: ignore[call-overload]
    except NOT_MADE_YET:
        return 0


class WatchProcess:
    """`python -m triage watch` in `cwd` (which holds triage.toml), logging to a file."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.log_path = cwd / f"watch-{next(_counter)}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "triage", "watch", *args],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30) -> float:
        return wait_until(
            lambda: text in self.log or (self.process.poll() is not None and text in self.log),
            timeout,
            f"{text!r} in the daemon's log:\n{self.log}",
        )

    def wait_idle(self, db: Path | str, mailbox: str = "INBOX", timeout: float = 30) -> None:
        wait_until(
            lambda: watcher_state(db, mailbox) == "idle", timeout, f"{mailbox} to be idle:\n{self.log}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def __enter__(self) -> WatchProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
