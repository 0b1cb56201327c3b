"""Start and stop a local `langgraph dev` serving the reference assistant.

Each server gets a free port and a fresh working directory: `langgraph dev` silently moves off a
busy port and reloads the threads it persisted in its working directory, and neither is wanted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from triage.errors import TriageError

_COLOURS = re.compile(r"\x1b\[[0-9;]*m")
_THREAD_ID = re.compile(r"\bthread_id=([0-9a-f-]{36})")
_CONFIG = Path(__file__).resolve().parent / "assistant" / "langgraph.json"
_QUIET_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "PYTHONUNBUFFERED": "1",  # its log is read while it runs (runs_started)
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevServer:
    """A running `langgraph dev`; use as a context manager."""

    def __init__(self, *, jobs: int = 16, startup_timeout_s: float = 60.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.jobs = jobs
        self.startup_timeout_s = startup_timeout_s
        self.workdir = Path(tempfile.mkdtemp(prefix="triage-langgraph-"))
        self.log_path = self.workdir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DevServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        executable = shutil.which("langgraph")
        if executable is None:
            raise TriageError("`langgraph` not found: install the server extra, pip install 'triage[server]'")
        shutil.copy(_CONFIG, self.workdir / "langgraph.json")
        command = [
            executable,
            "dev",
            "--no-browser",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n-jobs-per-worker",
            str(self.jobs),
            "--config",
            "langgraph.json",
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **_QUIET_ENV},
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise TriageError(f"langgraph dev exited at start: {self.log_tail()}")
            if "already in use" in self.log_path.read_text(errors="replace"):
                raise TriageError(f"port {self.port} was taken before langgraph dev could bind it")
            try:
                if httpx.get(f"{self.url}/ok", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.close()
        raise TriageError(f"langgraph dev did not answer within {self.startup_timeout_s:g} s")

    def restart(self) -> None:
        """Start again on the same port (for tests of a run server that comes back)."""
        self.stop()
        self.start()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server's whole process group (it spawns workers) and wait for it."""
        if self._process is None or self._process.poll() is not None:
            return
        try:
            os.killpg(self._process.pid, sig)
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        except ProcessLookupError:
            pass

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def runs_started(self, *, stateless: bool) -> int:
        """How many runs the server has started (executed; a join starts none): stateless ones, or
        runs on the threads routing starts. triage names those threads itself (uuid5, see
        triage.threads); a stateless run's thread is one the server made for it. (The log's
        `temporary` does not tell them apart: triage sends its stateless runs as `keep`.)"""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        started = [
            match[1]
            for line in _COLOURS.sub("", text).splitlines()
            if "Starting background run" in line and (match := _THREAD_ID.search(line))
        ]
        return sum(1 for thread_id in started if (uuid.UUID(thread_id).version != 5) == stateless)

    def log_tail(self, lines: int = 5) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])
