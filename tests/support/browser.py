"""Debian's Chromium, headless, driven by Selenium through Debian's chromedriver; `triage web` as a
subprocess for it to read; and a beacon that notices any request a page should never have made.

Nothing is downloaded: the browser and its driver are the Debian packages (`scripts/test` installs
them), Selenium Manager is never asked. The browser starts with a fresh profile, resolves no host
name but localhost (so nothing it does leaves this machine), and logs its pages' network requests
(`page_requests`), which is how a test sees what a page asked for, whether it was answered or not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 15.0
SERVER_START_S = 30.0
SCREENSHOTS = Path(tempfile.gettempdir()) / "triage-web-screenshots"
_LISTENING = re.compile(r"at (http://\S+/)")
T = TypeVar("T")


def available() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


@contextmanager
def chromium(profile: Path) -> Iterator[object]:
    """A headless Chromium (a selenium WebDriver), quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(condition: Callable[[], T | None], what: str, timeout_s: float = WAIT_S) -> T:
    """The condition's first truthy value, polled until the deadline; else an AssertionError saying what."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def page_requests(driver: object) -> list[str]:
    """The URLs the pages asked for since the last call (answered or not), from DevTools' log.

    Only pages' requests are there: the browser's own (updates, sign-in) are not a page's."""
    urls = []
    for entry in driver.get_log("performance"):  # type: ignore[attr-defined]
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def screenshot(driver: object, name: str) -> Path:
    """The page as a PNG in SCREENSHOTS, named for the test."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    return path


class WebServer:
    """`triage web` serving a store on a free loopback port, as a user starts it."""

    def __init__(self, db: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.db, self.args, self.extra_env = db, args, env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_path = db.parent / f"triage-web-{id(self)}.err"
        self.url = ""

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def __enter__(self) -> WebServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
        env.update({"TRIAGE_STORE__URL": f"sqlite:///{self.db}", **self.extra_env})
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "triage", "web", "--port", "0", *self.args],
                cwd=self.db.parent,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        process = self.process

        def listening() -> str | None:
            found = _LISTENING.search(self.stderr)
            if found is None and process.poll() is not None:
                raise AssertionError(f"triage web ended with status {process.returncode}: {self.stderr}")
            return found.group(1).rstrip("/") if found else None

        try:
            self.url = wait_until(listening, "triage web to say where it listens", SERVER_START_S)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Beacon:
    """A loopback HTTP listener that answers 204 to anything and remembers what was asked: hostile
    mail points here, so a page that loaded, ran or followed any of it leaves a trace."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.url = ""
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Beacon:
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                seen.append(f"{self.command} {self.path}")
                self.send_response(204)
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_OPTIONS = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="beacon", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def fresh_profile() -> Path:
    return Path(tempfile.mkdtemp(prefix="triage-chromium-"))


def remove_profile(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
