"""How many runs may be in flight: a limit that finds the rate the server and its model accept.

TCP's congestion control, applied to runs, as CUBIC does it (RFC 8312):

- Until the first rejection, the limit grows by one per run that succeeds (slow start: it doubles
  each round of runs), from INITIAL (RFC 6928's initial window of ten): a first burst against a
  rate-limited model is small, and a fast server has runs at the ceiling within a few rounds.
- A run rejected for a rate limit cuts the limit to 0.7 of itself, at most once per round: the
  runs already out when the first rejection came say nothing new about the rate.
- After a cut the limit grows back along a cubic of the time since: quickly at first, slowly near
  the limit where the last rejection came (so it stays near what is allowed, and probes past it
  rarely), then faster again once past it (the allowed rate has grown). Time, not rounds, drives
  it: a probe costs a rejection, and with runs of 100 ms, growing per round probed ten times a
  second. The limit never exceeds the ceiling or falls below the floor.
- A rejection holds back every run until its Retry-After has passed (or, without one, the
  rejected run's own backoff): the runs already waiting would meet the same limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator

INITIAL = 10
CUT = 0.7  # CUBIC's beta: gentler than halving
# CUBIC's C: how fast the limit grows back, in runs per second cubed. RFC 8312's 0.4 is for
# windows of tens to hundreds of packets; run limits are a few to a few tens, and at 0.4 a limit of
# 4 probed past a rate limit every 3 s (10 % of calls rejected at 20 runs/s against 7.7 % at 0.1,
# the same throughput: bench/run_limits.py, three runs each).
CUBIC_C = 0.1


class AdaptiveLimit:
    def __init__(self, floor: int, ceiling: int) -> None:
        self.floor = max(1, min(floor, ceiling))
        self.ceiling = max(ceiling, self.floor)
        self._limit = float(min(self.ceiling, max(self.floor, INITIAL)))
        self._in_flight = 0
        self._waiting: deque[asyncio.Future[None]] = deque()  # first come, first served
        self._last_cut: float | None = None  # monotonic time of the last cut; None: slow start
        self._limit_at_cut = 0.0  # the limit when the last rejection came (CUBIC's W_max)
        self._hold_until = 0.0  # monotonic time before which no run starts (Retry-After)

    @property
    def in_flight(self) -> int:
        """Runs holding a place now."""
        return self._in_flight

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
        if self._last_cut is None:
            grown = self._limit + 1.0
        else:
            since = time.monotonic() - self._last_cut
            back_at = (self._limit_at_cut * (1 - CUT) / CUBIC_C) ** (1 / 3)  # CUBIC's K
            grown = max(self._limit, CUBIC_C * (since - back_at) ** 3 + self._limit_at_cut)
        self._limit = min(float(self.ceiling), grown)
        self._hand_over()

    def rejected(self, started_at: float, hold_s: float) -> None:
        """A run that started at `started_at` (monotonic) was turned away for a rate limit; no run
        starts for `hold_s`."""
        now = time.monotonic()
        self._hold_until = max(self._hold_until, now + hold_s)
        if self._last_cut is not None and started_at < self._last_cut:
            return  # out before the last cut: already accounted for
        self._last_cut = now
        self._limit_at_cut = self._limit
        self._limit = max(float(self.floor), self._limit * CUT)
