"""`triage web` run as a user runs it: where it agrees to listen, the token from the configuration,
read-only over a real socket, stopping on SIGTERM, and a command line that stays light."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.browser import WebServer
from tests.support.web_log import fill_review_log
from triage.store.decisions import Store

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_triage_env")]

TIMEOUT_S = 30


@pytest.fixture
def logged(store: Store, db: Path) -> Path:
    fill_review_log(store)
    return db


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    return {**env, "TRIAGE_STORE__URL": f"sqlite:///{db}", **extra}


def test_listening_on_every_address_without_a_token_exits_2_with_one_line(logged: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "triage", "web", "--host", "0.0.0.0", "--port", "0"],
        env=_env(logged),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,  # it ends on its own: it never listened
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "web.token" in done.stderr and "0.0.0.0" in done.stderr


def test_it_serves_until_sigterm_and_says_where(logged: Path) -> None:
    with WebServer(logged) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "/healthz", timeout=TIMEOUT_S).text == "ok"
        assert "Export fails" in httpx.get(server.url + "/", timeout=TIMEOUT_S).text
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)  # uvicorn shuts down, then ends by the signal
        assert server.process.wait(timeout=TIMEOUT_S) in (0, -signal.SIGTERM)
    assert server.stderr.count("\n") == 1  # quiet while it serves


def test_read_only_refuses_posts_over_the_wire(logged: Path) -> None:
    with WebServer(logged, "--read-only") as server:
        assert "(read-only)" in server.stderr
        response = httpx.post(server.url + "/decisions/3/corrections", data={"decision": "ignore"})
        assert response.status_code == 405
        assert 'method="post"' not in httpx.get(server.url + "/decisions/3").text


def test_with_web_token_set_it_listens_anywhere_and_asks_every_request_for_it(logged: Path) -> None:
    config = logged.parent / "triage.toml"
    config.write_text('[web]\nhost = "0.0.0.0"\ntoken = "configured-token-123"\n')
    with WebServer(logged, "--port", "0", env={"TRIAGE_CONFIG": str(config)}) as server:
        local = server.url.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(local + "/").status_code == 303
        bearer = {"authorization": "Bearer configured-token-123"}
        assert httpx.get(local + "/", headers=bearer).status_code == 200


def test_the_command_line_loads_no_web_library_until_triage_web_runs() -> None:
    probe = (
        "import sys; from triage.cli import build_parser; build_parser();"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn', 'jinja2', 'selenium'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
