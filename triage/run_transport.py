"""The transport under the run client's httpx AsyncClient: connections lent one request at a time.

httpx's own transport keeps every connection in one httpcore pool, which scans all of them, and
asks each idle one whether its socket is readable, for every request it places: with 32 runs in
flight that scan was most of the client's CPU, and a run client that made 320 runs/s against a
100 ms stub made 144 (bench/backfill.py's "run client alone"). Here each connection is a
transport of its own (a pool of one), lent to one request and taken back when its response is
closed; at most `size` at once. TLS, HTTP/2 and everything else are httpx's own transport's, as
are proxies (httpx mounts its own transports for them, from the environment).

Over HTTP/2 one connection carries many runs, so there httpx's transport is used as it is.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable

import httpx


def run_transport(
    size: int, verify: ssl.SSLContext | bool, http2: bool, keepalive_s: float
) -> httpx.AsyncBaseTransport:
    """The transport for `size` requests at once to the run server."""
    if http2:
        limits = httpx.Limits(
            max_connections=size, max_keepalive_connections=size, keepalive_expiry=keepalive_s
        )
        return httpx.AsyncHTTPTransport(verify=verify, http2=True, limits=limits)
    return ConnectionPerRequest(size, verify=verify, keepalive_s=keepalive_s)


def connection_limits(connections: int, keepalive_s: float) -> httpx.Limits:
    return httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=keepalive_s
    )


class ConnectionPerRequest(httpx.AsyncBaseTransport):
    def __init__(self, size: int, *, verify: ssl.SSLContext | bool, keepalive_s: float) -> None:
        # One SSL context for every connection: loading a CA bundle takes tens of milliseconds.
        self._verify = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        self._keepalive_s = keepalive_s
        self._free = asyncio.Semaphore(size)
        self._idle: list[httpx.AsyncHTTPTransport] = []
        self._opened: list[httpx.AsyncHTTPTransport] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._free.acquire()
        connection = self._idle.pop() if self._idle else self._open()
        try:
            response = await connection.handle_async_request(request)
        except BaseException:
            self._give_back(connection)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)  # an async transport's always is
        response.stream = _ReturnedOnClose(response.stream, lambda: self._give_back(connection))
        return response

    def _open(self) -> httpx.AsyncHTTPTransport:
        limits = httpx.Limits(
            max_connections=1, max_keepalive_connections=1, keepalive_expiry=self._keepalive_s
        )
        connection = httpx.AsyncHTTPTransport(verify=self._verify, limits=limits)
        self._opened.append(connection)
        return connection

    def _give_back(self, connection: httpx.AsyncHTTPTransport) -> None:
        self._idle.append(connection)
        self._free.release()

    async def aclose(self) -> None:
        for connection in self._opened:
            await connection.aclose()


class _ReturnedOnClose(httpx.AsyncByteStream):
    """A response body that gives its connection back when it is closed (read to its end or not)."""

    def __init__(self, stream: httpx.AsyncByteStream, give_back: Callable[[], None]) -> None:
        self._stream = stream
        self._give_back = give_back
        self._returned = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if not self._returned:
                self._returned = True
                self._give_back()
