"""Test servers that serve from a thread of the test's process, on an event loop of their own."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
from typing import Self

START_TIMEOUT_S = 20.0


class ServedOnAThread(abc.ABC):
    """`with Server(...) as server:` runs the subclass's `start()` on a new loop in a new thread,
    and its `stop()` at the end (within `stop_timeout_s`)."""

    thread_name = "test-server"
    stop_timeout_s = 5.0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin serving, in the running loop."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop serving and close what is open, in the running loop."""

    def __enter__(self) -> Self:
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(START_TIMEOUT_S)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(self.stop_timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()
