"""Progress of long work on stderr: a bar on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm


class Progress:
    def __init__(self, label: str, *, stream: TextIO | None = None, interval_s: float = 10.0) -> None:
        stream = stream or sys.stderr  # the one in place now (a test may have replaced it)
        self.label = label
        self.stream = stream
        self.interval_s = interval_s
        self.total = 0
        self.done = 0
        self.concurrency: int | None = None  # runs allowed in flight now, where that adapts
        self._started = time.monotonic()
        self._last_line = self._started
        self._bar: tqdm | None = (  # type: ignore[type-arg]
            tqdm(desc=label, unit="msg", file=stream, dynamic_ncols=True) if stream.isatty() else None
        )

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def advance(self, concurrency: int | None = None) -> None:
        self.done += 1
        if self._bar is not None:
            if concurrency != self.concurrency:
                self._bar.set_postfix_str(f"concurrency {concurrency}", refresh=False)
            self.concurrency = concurrency
            self._bar.update(1)
            return
        self.concurrency = concurrency
        now = time.monotonic()
        if now - self._last_line >= self.interval_s:
            self._last_line = now
            print(self._line(now), file=self.stream, flush=True)

    def print(self, line: str) -> None:
        """A result line on stdout that does not break the bar."""
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _line(self, now: float) -> str:
        rate = self.done / max(now - self._started, 1e-9)
        eta = f", ETA {(self.total - self.done) / rate:.0f} s" if rate > 0 and self.total else ""
        now_running = f", concurrency {self.concurrency}" if self.concurrency is not None else ""
        return f"{self.label}: {self.done}/{self.total} messages, {rate:.1f} msg/s{eta}{now_running}"
