"""A fault-injecting fake LangGraph run server (``POST /runs/wait``) for tests.

Real sockets on 127.0.0.1 with a hand-written HTTP/1.1 handler (stdlib only), so a
request can be answered normally or with raw misbehaviour. Every request except
``GET /ok`` (health check, always ``{"ok": true}``) takes the next behaviour of the script:

``ok``, ``ok-json:<raw>`` (AI content is ``<raw>``), ``500``, ``503-retry-after:<s>``,
``429:<s>``, ``422``, ``hang`` (silent until closed), ``drip`` (200 headers, then a chunked
``b"\\n"`` every 0.5 s until closed), ``close`` (close without a response), ``garbage``
(non-JSON body), ``graph-error`` (200 ``{"__error__": ...}``), ``no-ai`` (state ends with
the human message), ``delay:<s>`` (``ok`` after ``<s>`` seconds), ``huge`` (200 declaring no
length, then junk until closed), ``huge-declared`` (a 1 GB Content-Length, then junk until closed),
``bad-utf8`` (a JSON state with invalid UTF-8 in it), ``deep-json:<n>`` (a state holding ``n``
nested lists), ``redirect:<url>`` (307 to ``<url>``), ``html`` (200 ``text/html`` sign-in page).

    with FakeRunServer(["503-retry-after:0", "ok"]) as srv:
        httpx.post(f"{srv.url}/runs/wait", json=body)
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import ssl
import threading
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, BinaryIO

Body = dict[str, Any]
Script = Iterable[str] | Callable[[int, Body], str]
_Reply = tuple[int, Body | bytes, dict[str, str]]

DECISION = '{"decision": "new-task", "title": "T", "reason": "r", "confidence": 0.9}'
BEHAVIOURS = frozenset({"ok", "ok-json", "500", "503-retry-after", "429", "422", "hang", "delay"})
BEHAVIOURS |= {"drip", "close", "garbage", "graph-error", "no-ai"}
BEHAVIOURS |= {"huge", "huge-declared", "bad-utf8", "deep-json", "redirect", "html"}
JUNK = b"x" * 65536
_Request = tuple[str, str, dict[str, str], bytes]


def _read_request(rfile: BinaryIO) -> _Request | None:
    """Read one request (line, headers, body); ``None`` when the client has gone."""
    line = rfile.readline(65537)
    if not line.strip():
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (raw := rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
        key, _, value = raw.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while size := int(rfile.readline().split(b";")[0], 16):
            body += rfile.read(size)
            rfile.readline()
        while rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
    else:
        body = rfile.read(int(headers.get("content-length", "0")))
    return method.upper(), target.split("?", 1)[0], headers, body


def _user_content(body: Body) -> Any:
    """The content of the last user/human message in a ``/runs/wait`` body."""
    inp = body.get("input")
    messages = inp.get("messages") if isinstance(inp, dict) else None
    for msg in reversed(messages if isinstance(messages, list) else []):
        if isinstance(msg, dict) and msg.get("role", msg.get("type")) in ("user", "human"):
            return msg.get("content", "")
    return ""


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # one thread per connection; never joined on close
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, owner: FakeRunServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        fake, sock = self.server.owner, self.request
        if fake.tls is not None:
            try:
                sock = fake.tls.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):  # the client refused the certificate, or went away
                return
        if not fake._track(sock):
            return
        sock.settimeout(fake.idle_timeout_s)
        rfile = sock.makefile("rb")
        try:  # keep-alive loop: serve requests until a behaviour or the client ends it
            while not fake._stop.is_set() and (req := _read_request(rfile)) is not None:
                if not fake._respond(sock, *req):
                    return
        except TimeoutError:  # idle too long: hang up, as servers do
            with fake._lock:
                fake.idle_closed += 1
        except (OSError, ValueError):
            return
        finally:
            rfile.close()
            with fake._lock:
                fake._conns.discard(sock)


class FakeRunServer:
    """Fake run server; ``behaviours`` is a script (last entry repeats) or ``f(index, body)``."""

    def __init__(
        self,
        behaviours: Script = ("ok",),
        *,
        tls: ssl.SSLContext | None = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        if callable(behaviours):
            self._pick: Callable[[int, Body], str] = behaviours
        else:
            script = list(behaviours)
            if not script:
                raise ValueError("behaviours must not be empty")
            if bad := [b for b in script if b.partition(":")[0] not in BEHAVIOURS]:
                raise ValueError(f"unknown behaviours: {bad}")
            self._pick = lambda i, _body: script[min(i, len(script) - 1)]
        self.tls = tls  # a server-side context: serve https
        self.idle_timeout_s = idle_timeout_s  # close a kept-alive connection idle this long
        self.idle_closed = 0  # connections it closed for being idle
        self.connections = 0  # connections accepted
        self.url = ""
        self.requests: list[Body] = []  # parsed JSON bodies (``{}`` if not a JSON object)
        self.paths: list[str] = []  # paths of every request, ``GET /ok`` included
        self.headers: list[dict[str, str]] = []  # request headers (lower-case names), ``/ok`` included
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server: _TCPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeRunServer:
        self._server = _TCPServer(self)
        scheme = "https" if self.tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop quickly: wake hang/drip/delay, cut open connections, stop accepting."""
        with self._lock:
            self._stop.set()
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=1)

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if not self._stop.is_set():
                self._conns.add(sock)
                self.connections += 1
            return not self._stop.is_set()

    def _respond(
        self, sock: socket.socket, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> bool:
        """Answer one request; ``True`` to keep the connection for the next one."""
        keep = headers.get("connection", "").lower() != "close"
        with self._lock:
            self.paths.append(path)
            self.headers.append(headers)
        if method == "GET" and path == "/ok":
            _send(sock, 200, {"ok": True}, {})
            return keep
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        with self._lock:
            index = len(self.requests)
            self.requests.append(body)
        kind, _, arg = self._pick(index, body).partition(":")
        if kind == "delay" and self._stop.wait(float(arg)):
            return False
        if (reply := _canned(kind, arg, body)) is not None:
            _send(sock, *reply)
            return keep
        if kind == "hang":
            self._stop.wait()
        elif kind == "drip":
            sock.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            while True:
                sock.sendall(b"1\r\n\n\r\n")
                if self._stop.wait(0.5):
                    break
        elif kind in ("huge", "huge-declared"):
            length = "content-length: 1073741824" if kind == "huge-declared" else "connection: close"
            sock.sendall(f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{length}\r\n\r\n".encode())
            while not self._stop.is_set():
                sock.sendall(JUNK)  # until the client hangs up (OSError ends the handler)
        elif kind != "close":
            _send(sock, 500, {"detail": f"fake server: unknown behaviour {kind!r}"}, {})
        return False  # hang/drip/close/unknown: drop the connection


def _canned(kind: str, arg: str, body: Body) -> _Reply | None:
    """Status, body and extra headers of a complete response, or ``None`` for raw behaviours."""
    human = {"type": "human", "content": _user_content(body), "id": "h1"}
    content = arg if kind == "ok-json" else DECISION
    ai = {"type": "ai", "content": content, "id": "a1", "tool_calls": []}
    loc = {"content-location": f"/threads/{uuid.uuid4()}/runs/{uuid.uuid4()}"}
    state = (200, {"messages": [human, ai]}, loc)
    if kind == "deep-json":
        return 200, _deep_state([human, ai], int(arg or 1)), {}
    replies: dict[str, _Reply] = {
        "ok": state,
        "ok-json": state,
        "delay": state,
        "no-ai": (200, {"messages": [human]}, {}),
        "graph-error": (200, {"__error__": {"error": "ValueError", "message": "boom"}}, {}),
        "garbage": (200, b"\x00\xffnot json<html>", {}),
        "bad-utf8": (200, b'{"messages": [{"type": "ai", "content": "caf\xe9 \xff"}]}', {}),
        "redirect": (307, b"", {"location": arg}),
        "html": (200, _SIGN_IN, {"content-type": "text/html; charset=utf-8"}),
        "422": (422, {"detail": "Invalid assistant"}, {}),
        "500": (500, {"detail": "fake internal error"}, {}),
        "503-retry-after": (503, {"detail": "Service Unavailable"}, {"retry-after": arg}),
        "429": (429, {"detail": "Too Many Requests"}, {"retry-after": arg}),
    }
    return replies.get(kind)


_SIGN_IN = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>...</form></body></html>"


def _deep_state(messages: list[Body], depth: int) -> bytes:
    """A valid final state carrying `depth` nested lists (written out: json.dumps would recurse)."""
    return b'{"messages": %s, "extra": %s%s}' % (json.dumps(messages).encode(), b"[" * depth, b"]" * depth)


def _send(sock: socket.socket, status: int, body: Body | bytes, extra: dict[str, str]) -> None:
    """Write a complete response with Content-Length (``extra`` may replace the content-type)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"content-length: {len(data)}"]
    head += [f"{k}: {v}" for k, v in {"content-type": "application/json", **extra}.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
