"""HTTP/2 to an https run server, as httpx offers it: a real HTTP/2 server (hypercorn) over TLS
with a private CA. With `langgraph.http2` on, runs go over HTTP/2, many on one connection; off,
the same server is spoken to in HTTP/1.1."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from tests.support.dovecot import make_certs
from tests.support.run_server import DECISION
from triage.run_settings import RunsSettings
from triage.runs import RunsClient

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test CA")


class RunApp:
    """An ASGI app answering `/runs/wait` as LangGraph does, noting each request's HTTP version."""

    def __init__(self) -> None:
        self.versions: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.versions.append(scope["http_version"])
        while (await receive()).get("more_body"):
            pass
        state = {"messages": [{"type": "human", "content": "x"}, {"type": "ai", "content": DECISION}]}
        headers = [(b"content-type", b"application/json"), (b"content-location", b"/threads/t/runs/r")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(state).encode()})


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path, RunApp]]:
    """hypercorn on a socket of ours (so its port is known before it starts), on a thread."""
    ca = make_certs(tmp_path)
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{listening.detach()}"]  # hypercorn's to close
    config.certfile, config.keyfile = str(tmp_path / "server.pem"), str(tmp_path / "server.key")
    config.alpn_protocols = ["h2", "http/1.1"]
    app, loop = RunApp(), asyncio.new_event_loop()
    stop = asyncio.Event()
    shutdown = stop.wait
    thread = threading.Thread(
        target=loop.run_until_complete,
        args=(serve(app, config, shutdown_trigger=shutdown),),
        daemon=True,  # type: ignore[arg-type]
    )
    thread.start()
    try:
        yield f"https://127.0.0.1:{port}", ca, app
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)


@pytest.mark.parametrize("http2", [True, False], ids=["http2", "http1.1"])
def test_runs_go_over_http2_when_asked(https_server: tuple[str, Path, RunApp], http2: bool) -> None:
    url, ca, app = https_server
    settings = RunsSettings(url, None, 10.0, 8, 1, 0.01, ca_file=str(ca), http2=http2)
    body = {"assistant_id": "agent", "input": {"messages": []}, "metadata": {}}

    async def runs() -> list[int]:
        async with RunsClient(settings) as client:
            done = await asyncio.gather(*(client.run(body) for _ in range(8)))
        return [result.attempts for result in done]

    assert asyncio.run(runs()) == [1] * 8
    assert app.versions == ["2" if http2 else "1.1"] * 8
