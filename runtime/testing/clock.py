"""An injected clock for simulated devices: real time plus an offset a test can advance.

The device's camera, door timers and telemetry sleep on this clock. Time runs
on its own (so frames keep flowing), and :meth:`SimClock.advance` jumps it
forward: every sleeper whose deadline the jump passes wakes at once, in
deadline order. A door that stays unlocked ``unlock_s`` relocks the moment a
test advances past it, without the test waiting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time


class SimClock:
    """``monotonic()``/``wall()`` = the system clocks + an offset; ``sleep`` wakes early on ``advance``."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    def wall(self) -> float:
        return time.time() + self._offset

    @property
    def offset(self) -> float:
        """How far :meth:`advance` moved this clock ahead of the system clock, in seconds."""
        return self._offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self.monotonic() + seconds, next(self._seq), fut))
        timer = loop.call_later(seconds, _wake, fut)
        try:
            await fut
        finally:
            timer.cancel()

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake, in order, every sleeper it passes."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._offset += seconds
        now = self.monotonic()
        while self._sleepers and (self._sleepers[0][0] <= now or self._sleepers[0][2].done()):
            _, _, fut = heapq.heappop(self._sleepers)
            _wake(fut)
            for _ in range(5):
                await asyncio.sleep(0)  # let the woken task run (and maybe sleep again)
        for _ in range(5):
            await asyncio.sleep(0)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
