"""The test proxy is a real one: httpx reaches a loopback run server by a name only the proxy knows.

``runs.invalid`` resolves nowhere (RFC 2606), so an answer from it came through the proxy, and the
same URL without the proxy fails to connect.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from tests.support.dovecot import make_certs
from tests.support.http_proxy import HttpProxy
from tests.support.run_server import DECISION, FakeRunServer

HOSTS = {"runs.invalid": "127.0.0.1", "localhost": "127.0.0.1"}
BODY = {"assistant_id": "triage", "input": {"messages": [{"role": "user", "content": "hello"}]}}
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")
TIMEOUT = httpx.Timeout(10.0)


def runs_url(server_url: str, scheme: str = "http", host: str = "runs.invalid") -> str:
    return f"{scheme}://{host}:{server_url.rsplit(':', 1)[1]}/runs/wait"


def assert_decided(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json()["messages"][-1]["content"] == DECISION


@pytest.fixture
def server() -> Iterator[FakeRunServer]:
    with FakeRunServer() as server:
        yield server


@pytest.fixture
def proxy() -> Iterator[HttpProxy]:
    with HttpProxy(hosts=HOSTS) as proxy:
        yield proxy


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy settings from the environment the tests run in (urllib reads both cases)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_without_the_proxy_the_name_does_not_connect(server: FakeRunServer, no_proxy_env: None) -> None:
    with httpx.Client(timeout=TIMEOUT) as client, pytest.raises(httpx.ConnectError):
        client.post(runs_url(server.url), json=BODY)
    assert server.paths == []


def test_sync_client_keeps_one_connection_through_the_proxy(server: FakeRunServer, proxy: HttpProxy) -> None:
    url = runs_url(server.url)
    with httpx.Client(proxy=proxy.url, timeout=TIMEOUT) as client:
        for _ in range(3):
            assert_decided(client.post(url, json=BODY))
    assert proxy.requests == [("POST", url)] * 3
    assert proxy.connections == 1  # keep-alive: three requests on one client connection
    assert server.runs == 3 and server.requests == [BODY] * 3
    port = url.split(":")[2].split("/")[0]
    assert {h["host"] for h in server.headers} == {f"runs.invalid:{port}"}
    assert {h["connection"] for h in server.headers} == {"close"}  # the proxy's, not the client's


def test_async_client_through_the_proxy(server: FakeRunServer, proxy: HttpProxy) -> None:
    url = runs_url(server.url)

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(proxy=proxy.url, timeout=TIMEOUT) as client:
            return await asyncio.gather(*(client.post(url, json=BODY) for _ in range(4)))

    for answer in asyncio.run(post_all()):
        assert_decided(answer)
    assert proxy.requests == [("POST", url)] * 4
    assert server.runs == 4


def test_http_proxy_from_the_environment(
    server: FakeRunServer, proxy: HttpProxy, no_proxy_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = runs_url(server.url)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with httpx.Client(timeout=TIMEOUT) as client:  # trust_env=True: the default
        assert_decided(client.post(url, json=BODY))
    assert proxy.requests == [("POST", url)]
    # NO_PROXY names it: httpx goes direct, where the name does not resolve.
    monkeypatch.setenv("NO_PROXY", "runs.invalid")
    with httpx.Client(timeout=TIMEOUT) as client, pytest.raises(httpx.ConnectError):
        client.post(url, json=BODY)
    assert proxy.requests == [("POST", url)]
    assert server.runs == 1


def test_a_slow_answer_is_relayed() -> None:
    with FakeRunServer(["delay:0.3", "ok"]) as server, HttpProxy(hosts=HOSTS) as proxy:
        url = runs_url(server.url)
        with httpx.Client(proxy=proxy.url, timeout=TIMEOUT) as client:
            started = time.monotonic()
            assert_decided(client.post(url, json=BODY))
            assert time.monotonic() - started >= 0.3
            assert_decided(client.post(url, json=BODY))  # the same connection, after the slow one
    assert proxy.connections == 1
    assert server.runs == 2


def test_a_drip_trickles_through_as_it_comes() -> None:
    """`drip` never ends: newlines arriving one by one prove the proxy relays before the end."""
    with FakeRunServer(["drip"]) as server, HttpProxy(hosts=HOSTS) as proxy:
        url = runs_url(server.url)
        with (
            httpx.Client(proxy=proxy.url, timeout=TIMEOUT) as client,
            client.stream("POST", url, json=BODY) as answer,
        ):
            assert answer.status_code == 200
            assert answer.headers["transfer-encoding"] == "chunked"
            received = b""
            for data in answer.iter_raw():
                received += data
                if received.count(b"\n") >= 3:
                    break
    assert received == b"\n\n\n"
    assert proxy.requests == [("POST", url)]


class _GatedChunks(http.server.BaseHTTPRequestHandler):
    """As `/runs/wait` does: a chunked newline, then (once the client has it) the JSON state."""

    protocol_version = "HTTP/1.1"
    released: ClassVar[threading.Event] = threading.Event()  # set by the test when the newline has reached it
    held_back: ClassVar[list[bool]] = []  # per request: whether the JSON waited for the release

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"1\r\n\n\r\n")
        self.wfile.flush()
        self.held_back.append(self.released.wait(timeout=5))
        self.released.clear()
        state = json.dumps({"messages": [{"type": "ai", "content": DECISION}]}).encode()
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(state), state))

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_chunked_answer_is_relayed_chunk_by_chunk_and_the_connection_kept(proxy: HttpProxy) -> None:
    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GatedChunks)
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    _GatedChunks.held_back.clear()
    url = f"http://runs.invalid:{origin.server_address[1]}/runs/wait"
    try:
        with httpx.Client(proxy=proxy.url, timeout=TIMEOUT) as client:
            for _ in range(2):
                with client.stream("POST", url, json=BODY) as answer:
                    raw = answer.iter_raw()
                    assert next(raw) == b"\n"  # before the origin has sent the rest
                    _GatedChunks.released.set()
                    rest = b"".join(raw)
                assert json.loads(rest)["messages"][-1]["content"] == DECISION
    finally:
        origin.shutdown()
        origin.server_close()
    assert _GatedChunks.held_back == [True, True]
    assert proxy.requests == [("POST", url)] * 2
    assert proxy.connections == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificates")
def test_https_goes_through_a_connect_tunnel(tmp_path: Path, proxy: HttpProxy) -> None:
    ca = make_certs(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    with FakeRunServer(tls=tls) as server:
        url = runs_url(server.url, "https", "localhost")
        trust = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(proxy=proxy.url, verify=trust, timeout=TIMEOUT) as client:
            for _ in range(2):
                assert_decided(client.post(url, json=BODY))
    assert proxy.requests == [("CONNECT", url.split("/")[2])]  # one tunnel, two requests inside
    assert server.runs == 2 and server.connections == 1


def test_proxy_authentication(server: FakeRunServer, proxy: HttpProxy) -> None:
    proxy.require_auth = ("user", "s3cret")
    url = runs_url(server.url)
    with httpx.Client(proxy=proxy.url, timeout=TIMEOUT) as client:
        refused = client.post(url, json=BODY)
        assert refused.status_code == 407
        assert refused.headers["proxy-authenticate"].startswith("Basic")
        assert refused.headers.get("connection") != "close"
        assert client.post(url, json=BODY).status_code == 407  # the connection still serves
    assert proxy.connections == 1
    wrong = proxy.url.replace("://", "://user:wrong@")
    with httpx.Client(proxy=wrong, timeout=TIMEOUT) as client:
        assert client.post(url, json=BODY).status_code == 407
    with httpx.Client(proxy=proxy.url, timeout=TIMEOUT) as client, pytest.raises(httpx.ProxyError):
        client.post(url.replace("http://", "https://"), json=BODY)  # CONNECT, refused too
    assert (proxy.refused, proxy.requests, server.runs) == (4, [], 0)
    right = proxy.url.replace("://", "://user:s3cret@")
    with httpx.Client(proxy=right, timeout=TIMEOUT) as client:
        assert_decided(client.post(url, json=BODY))
    assert proxy.requests == [("POST", url)]
    assert "proxy-authorization" not in server.headers[-1]  # the credentials stop at the proxy


def test_an_origin_it_cannot_reach_is_a_502(proxy: HttpProxy) -> None:
    url = "http://nowhere.invalid:9/runs/wait"
    with httpx.Client(proxy=proxy.url, timeout=TIMEOUT) as client:
        answer = client.post(url, json=BODY)
    assert answer.status_code == 502
    assert "cannot reach nowhere.invalid:9" in answer.text
    assert proxy.requests == [("POST", url)]
