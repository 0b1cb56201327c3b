"""A network backend for httpcore (httpx's own transport) on plain asyncio streams.

httpcore's default backend goes through anyio, which yields to the event loop on every read and
write even when the data is already there. With 32 runs in flight their answers arrive together, and
those yields interleave all 32 to the end of the burst instead of finishing each in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _raising(httpcore.ReadError, httpcore.ReadTimeout):
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with _raising(httpcore.WriteError, httpcore.WriteTimeout):
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()  # returns at once unless the send buffer is full

    async def aclose(self) -> None:
        self._writer.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> AsyncioStream:
        try:
            with _raising(httpcore.ConnectError, httpcore.ConnectTimeout):
                await self._writer.start_tls(
                    ssl_context, server_hostname=server_hostname, ssl_handshake_timeout=timeout
                )
        except (httpcore.ConnectError, httpcore.ConnectTimeout):
            self._writer.close()
            raise
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Asked of an idle connection before it is reused: anything to read then means the
            # server has closed it (or broken it), even if the event loop has not seen it yet.
            if self._reader.at_eof() or self._reader.exception() is not None:
                return True
            poll = select.poll()
            poll.register(self._writer.get_extra_info("socket").fileno(), select.POLLIN)
            return bool(poll.poll(0))
        extra = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        return self._writer.get_extra_info(extra)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> AsyncioStream:
        local_addr = (local_address, 0) if local_address else None
        with _raising(httpcore.ConnectError, httpcore.ConnectTimeout):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, local_addr=local_addr)
        for option in socket_options or ():
            writer.get_extra_info("socket").setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@contextlib.contextmanager
def _raising(
    failed: type[httpcore.NetworkError], timed_out: type[httpcore.TimeoutException]
) -> Iterator[None]:
    """httpcore's own exceptions, which its connection pool expects of a backend."""
    try:
        yield
    except TimeoutError:
        raise timed_out("timed out") from None
    except OSError as exc:
        raise failed(_reason(exc)) from None


def _reason(exc: OSError) -> str:
    """`Connection refused`, not asyncio's `[Errno 111] Connect call failed ('127.0.0.1', 9)`."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return str(exc)
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__
