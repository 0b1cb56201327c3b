"""How many runs may be in flight: a limit that finds the rate the server and its model accept.

TCP's congestion control (RFC 5681), applied to runs: below a threshold the limit grows by one per
run that succeeds (slow start: it doubles each round of runs), above it by one per round (additive
increase). A run rejected for a rate limit cuts the limit to 0.7 of itself (CUBIC's factor,
RFC 8312: gentler than halving, so the limit stays near what is allowed) and sets the threshold
there, at most once per round: the runs that were already out when the first rejection came say
nothing new about the rate. A Retry-After holds back every run until it has passed.

The limit starts at INITIAL (RFC 6928's initial window of ten), so a first burst against a
rate-limited model is small, and a fast server is at the ceiling within a few rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator

INITIAL = 10
CUT = 0.7


class AdaptiveLimit:
    def __init__(self, floor: int, ceiling: int) -> None:
        self.floor = max(1, min(floor, ceiling))
        self.ceiling = max(ceiling, self.floor)
        self._limit = float(min(self.ceiling, max(self.floor, INITIAL)))
        self._threshold = float(self.ceiling)
        self._in_flight = 0
        self._waiting: deque[asyncio.Future[None]] = deque()  # first come, first served
        self._last_cut = float("-inf")  # monotonic time of the last cut
        self._hold_until = 0.0  # monotonic time before which no run starts (Retry-After)
        self.throttled = 0  # runs rejected for a rate limit, in all

    @property
    def limit(self) -> int:
        return int(self._limit)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold one of the limit's places for a run; yields when the run started (monotonic)."""
        await self._take()
        try:
            while (hold := self._hold_until - time.monotonic()) > 0:
                await asyncio.sleep(hold)
            yield time.monotonic()
        finally:
            self._in_flight -= 1
            self._hand_over()

    async def _take(self) -> None:
        if self._in_flight < self.limit and not self._waiting:
            self._in_flight += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed a place just as it was cancelled
                self._in_flight -= 1
                self._hand_over()
            raise

    def _hand_over(self) -> None:
        """Give free places to the runs waiting longest (a place is counted as it is handed)."""
        while self._waiting and self._in_flight < self.limit:
            turn = self._waiting.popleft()
            if not turn.done():
                self._in_flight += 1
                turn.set_result(None)

    def succeeded(self) -> None:
        grown = self._limit + (1.0 if self._limit < self._threshold else 1.0 / self._limit)
        self._limit = min(float(self.ceiling), grown)
        self._hand_over()

    def rejected(self, started_at: float, retry_after_s: float | None) -> None:
        """A run that started at `started_at` (monotonic) was turned away for a rate limit."""
        self.throttled += 1
        now = time.monotonic()
        if retry_after_s is not None:
            self._hold_until = max(self._hold_until, now + retry_after_s)
        if started_at < self._last_cut:
            return  # out before the last cut: already accounted for
        self._last_cut = now
        self._limit = max(float(self.floor), self._limit * CUT)
        self._threshold = self._limit
