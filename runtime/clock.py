"""Injected clocks.

Components never call ``time.monotonic()``, ``time.time()`` or
``asyncio.sleep()`` directly: they take a :class:`Clock`. Production uses
:class:`SystemClock`; tests use :class:`ManualClock` and move time forward
explicitly instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock, a wall clock and a sleep that follows the monotonic one."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...

    def wall(self) -> float:
        """POSIX seconds (may jump: NTP, RTC battery loss)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend until ``monotonic()`` has advanced by ``seconds``."""
        ...


def utc_iso(wall: float) -> str:
    """Render POSIX seconds as an RFC 3339 UTC timestamp with milliseconds."""
    return datetime.fromtimestamp(wall, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


class SystemClock:
    """The real clocks of the machine."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that only moves when a test calls :meth:`advance`.

    Sleepers wake in deadline order when time passes their deadline. ``sleep(0)``
    yields to the loop once without waiting for ``advance``.
    """

    def __init__(self, *, start_monotonic: float = 1000.0, start_wall: float = 1_767_225_600.0):
        self._mono = start_monotonic
        self._wall_offset = start_wall - start_monotonic
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (synchronously) each time :meth:`advance` moves time.

        Lets components that keep time outside the loop (the GPIO driver's pulse
        thread) react to manual time deterministically.
        """
        self._listeners.append(listener)

    def _moved(self) -> None:
        for listener in self._listeners:
            listener()

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._mono + self._wall_offset

    def set_wall(self, wall: float) -> None:
        """Jump the wall clock (to simulate an RTC reset or rollback)."""
        self._wall_offset = wall - self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper whose deadline passed, in order.

        Between wake-ups the loop runs so that woken tasks can schedule new
        sleeps that also fall inside the advanced interval.
        """
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._mono = max(self._mono, deadline)
            self._moved()
            if not fut.done():
                fut.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
        self._mono = target
        self._moved()
        for _ in range(5):
            await asyncio.sleep(0)
