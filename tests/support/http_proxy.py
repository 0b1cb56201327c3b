"""A forward HTTP proxy for the tests: real sockets on 127.0.0.1, stdlib asyncio, a thread of its own.

It forwards absolute-form requests (``POST http://host:port/path HTTP/1.1``) to their origin and
relays each answer as it comes (a chunked answer chunk by chunk, so the newlines a slow
``/runs/wait`` trickles out reach the client before its JSON), over keep-alive client connections;
it tunnels ``CONNECT host:port`` (https) by piping bytes both ways. Host names go through ``hosts``
before DNS, so a name no resolver knows (``runs.invalid``) still reaches a loopback server: a client
that got there went through the proxy, since without it the name does not connect at all.

    with FakeRunServer() as server, HttpProxy(hosts={"runs.invalid": "127.0.0.1"}) as proxy:
        url = f"http://runs.invalid:{server.url.rsplit(':', 1)[1]}/runs/wait"
        httpx.post(url, json=body, proxy=proxy.url)
        assert proxy.requests == [("POST", url)]

``proxy.requests`` holds the ``(method, target)`` of each request it accepted, target as the client
sent it (the absolute URL, or ``host:port`` for CONNECT), recorded before the origin is dialled (an
origin that cannot be reached gets the client a 502). With ``require_auth = (user, password)``, a
request without those Basic credentials in ``Proxy-Authorization`` is answered 407 instead, and only
counted (``proxy.refused``). ``proxy.connections`` counts client connections (keep-alive reuses one).

Each request goes to its origin on a connection of its own, with ``Connection: close``: simple, and
the answer keeps its own framing (Content-Length or chunked, relayed as is), so the client's
connection stays open for the next request; only an answer that ends when the origin closes closes
the client's connection too (and says so). Proxy headers (``Proxy-Authorization``...) and the other
hop-by-hop headers are not passed on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

from tests.support.on_a_thread import ServedOnAThread

MAX_HEAD_BYTES = 64 * 1024
READ_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 10.0
# Headers about one connection, not the message (RFC 9110 7.6.1): never passed on. Transfer-Encoding
# is one too, but bodies are relayed as they were framed, so it stays true on the next hop.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te"}
    | {"upgrade"}  # no protocol switch: the origin connection closes after one answer
)
_PHRASES = {status.value: status.phrase for status in HTTPStatus}
# How a body ends: after so many bytes, after the zero-size chunk, or when the sender closes.
Framing = int | str  # a length, "chunked" or "eof"


@dataclass(slots=True)
class _Head:
    """The start line and headers of a request or an answer."""

    start: str
    headers: list[tuple[str, str]]  # as sent, in order

    def get(self, name: str) -> str:
        """The values of header `name` (lower case), joined with commas; '' if absent."""
        return ", ".join(value for key, value in self.headers if key.lower() == name)

    def tokens(self, name: str) -> set[str]:
        return {token.strip().lower() for token in self.get(name).split(",") if token.strip()}

    def passed_on(self, start: str, connection: str | None) -> bytes:
        """This head for the next hop: a new start line, no hop-by-hop headers, our own Connection."""
        dropped = HOP_BY_HOP | self.tokens("connection")  # Connection names more hop-by-hop headers
        kept = [(key, value) for key, value in self.headers if key.lower() not in dropped]
        if connection is not None:
            kept.append(("Connection", connection))
        lines = "".join(f"{key}: {value}\r\n" for key, value in kept)
        return f"{start}\r\n{lines}\r\n".encode("latin-1")


class HttpProxy(ServedOnAThread):
    """A forward proxy on a free port of 127.0.0.1; ``hosts`` maps names to addresses before DNS."""

    thread_name = "http-proxy"
    stop_timeout_s = 10.0

    def __init__(
        self, *, hosts: Mapping[str, str] | None = None, require_auth: tuple[str, str] | None = None
    ) -> None:
        self.hosts = {name.lower(): address for name, address in (hosts or {}).items()}
        self.require_auth = require_auth  # (user, password) of Basic Proxy-Authorization, or None
        self.url = ""
        self.connections = 0  # client connections accepted
        self.refused = 0  # requests answered 407
        self._requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()  # the list grows on the proxy's thread, is read on the test's
        self._clients: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(method, target)`` of each request accepted so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    # ----------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1, in the running loop."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD_BYTES)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        """Stop accepting and cut every client connection (and so its origin connection or tunnel)."""
        if self._server is not None:
            self._server.close()
        clients = list(self._clients)
        for task in clients:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*clients, return_exceptions=True), 5)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    # ----------------------------------------------------------------------- a client connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        self.connections += 1
        try:
            while await self._one_request(reader, writer):
                pass
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError):
            pass  # a side that went away or spoke garbage: its connection is simply dropped
        except asyncio.CancelledError:
            pass  # stop(): end quietly (Python 3.11's stream callback logs a cancelled handler as an error)
        finally:
            self._clients.discard(task)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Proxy the next request of a client; whether its connection can carry another."""
        head = await _read_head(reader)
        if head is None:
            return False
        method, target, version = head.start.split(" ", 2)
        method = method.upper()
        # HTTP/1.1 keeps a connection unless told not to; HTTP/1.0 only when asked to.
        asked = head.tokens("connection") | head.tokens("proxy-connection")
        keep_alive = "close" not in asked if version == "HTTP/1.1" else "keep-alive" in asked
        framing = _request_framing(head)
        if not self._authorised(head):
            self.refused += 1
            await _relay_body(reader, None, framing)  # read it all: unread bytes would reset the 407
            await _answer(writer, 407, keep_alive=keep_alive)
            return keep_alive
        if method == "CONNECT":
            await self._tunnel(target, reader, writer)
            return False
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            await _relay_body(reader, None, framing)
            await _answer(writer, 400, keep_alive=keep_alive, text=f"not an absolute http URL: {target}")
            return keep_alive
        self._record(method, target)
        try:
            origin_reader, origin = await self._dial(url.hostname, url.port or 80)
        except OSError as error:
            await _relay_body(reader, None, framing)
            await _answer(writer, 502, keep_alive=keep_alive, text=f"cannot reach {url.netloc}: {error!r}")
            return keep_alive
        try:
            origin_form = (url.path or "/") + (f"?{url.query}" if url.query else "")
            origin.write(head.passed_on(f"{method} {origin_form} HTTP/1.1", "close"))
            if "100-continue" in head.tokens("expect"):
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the client waits for it to send its body
            await _relay_body(reader, origin, framing)
            await origin.drain()
            return await _relay_answer(method, origin_reader, writer, keep_alive)
        finally:
            origin.close()

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """CONNECT: 200, then bytes both ways until both sides have finished (or one fails)."""
        host, _, port = target.rpartition(":")
        self._record("CONNECT", target)
        try:
            origin_reader, origin = await self._dial(host.strip("[]"), int(port))  # [::1]:443
        except OSError as error:
            await _answer(writer, 502, keep_alive=False, text=f"cannot reach {target}: {error!r}")
            return
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            # A failure on either side ends the tunnel (gather raises it); an end of stream is passed
            # on as one (half-close), and the other direction goes on until it ends too.
            await asyncio.gather(_pipe(reader, origin), _pipe(origin_reader, writer))
        finally:
            origin.close()

    async def _dial(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect to an origin, its name looked up in `hosts` first (a timeout is an OSError too)."""
        connecting = asyncio.open_connection(self.hosts.get(host.lower(), host), port, limit=MAX_HEAD_BYTES)
        return await asyncio.wait_for(connecting, CONNECT_TIMEOUT_S)

    def _authorised(self, head: _Head) -> bool:
        if self.require_auth is None:
            return True
        scheme, _, token = head.get("proxy-authorization").partition(" ")
        try:
            given = base64.b64decode(token.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, password = self.require_auth
        return scheme.lower() == "basic" and given == f"{user}:{password}"

    def _record(self, method: str, target: str) -> None:
        with self._lock:
            self._requests.append((method, target))


# --------------------------------------------------------------------------- HTTP/1.1 framing


async def _relay_answer(
    method: str, origin: asyncio.StreamReader, writer: asyncio.StreamWriter, keep_alive: bool
) -> bool:
    """Relay the origin's answer to `method` as it comes; whether the client can send another request."""
    while True:
        answer = await _read_head(origin)
        if answer is None:
            await _answer(writer, 502, keep_alive=False, text="the origin closed without answering")
            return False
        _version, status_text, *reason = answer.start.split(" ", 2)
        status = int(status_text)
        if not 100 <= status < 200:
            break
        writer.write(answer.passed_on(answer.start, None))  # interim (1xx): the answer follows
    framing = _answer_framing(method, status, answer)
    keep_alive = keep_alive and framing != "eof"  # an answer that ends at close ends the client's too
    start = f"HTTP/1.1 {status} {reason[0] if reason else ''}".rstrip()
    writer.write(answer.passed_on(start, None if keep_alive else "close"))
    await _relay_body(origin, writer, framing)
    await writer.drain()
    return keep_alive


async def _read_head(reader: asyncio.StreamReader) -> _Head | None:
    """The next head on `reader`, or None if the stream ends cleanly before one starts."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if error.partial.strip():
            raise
        return None
    lines = raw.decode("latin-1").lstrip("\r\n").split("\r\n")[:-2]  # a stray CRLF may lead
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"not a header line: {line!r}")
        headers.append((name.strip(), value.strip()))
    return _Head(lines[0], headers)


def _request_framing(head: _Head) -> Framing:
    if "chunked" in head.tokens("transfer-encoding"):
        return "chunked"
    return int(head.get("content-length") or 0)


def _answer_framing(method: str, status: int, answer: _Head) -> Framing:
    if method == "HEAD" or status in (204, 304):
        return 0
    if "chunked" in answer.tokens("transfer-encoding"):
        return "chunked"
    length = answer.get("content-length")
    return int(length) if length else "eof"


async def _relay_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, framing: Framing
) -> None:
    """Copy one body as framed, each piece as soon as it arrives; to nowhere if `writer` is None."""
    if framing == "eof":
        while data := await reader.read(READ_BYTES):
            await _send(writer, data)
    elif framing == "chunked":
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0], 16)
            await _send(writer, line)
            if size == 0:
                break
            await _relay_body(reader, writer, size + 2)  # the data and its CRLF
        while line != b"\r\n":  # trailers, then the empty line
            line = await reader.readuntil(b"\r\n")
            await _send(writer, line)
    else:
        assert isinstance(framing, int)
        left = framing
        while left > 0:
            data = await reader.read(min(READ_BYTES, left))
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(data)
            await _send(writer, data)


async def _send(writer: asyncio.StreamWriter | None, data: bytes) -> None:
    if writer is not None:
        writer.write(data)
        await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(READ_BYTES):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        writer.write_eof()


async def _answer(writer: asyncio.StreamWriter, status: int, *, keep_alive: bool, text: str = "") -> None:
    """The proxy's own answer (an error), with a plain-text body."""
    body = text.encode()
    headers = ["Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}"]
    if status == 407:
        headers.append('Proxy-Authenticate: Basic realm="test proxy"')
    if not keep_alive:
        headers.append("Connection: close")
    lines = "".join(f"{line}\r\n" for line in headers)
    writer.write(f"HTTP/1.1 {status} {_PHRASES[status]}\r\n{lines}\r\n".encode() + body)
    await writer.drain()
