"""The GPIO input watcher: a supervised Service turning line edges into bus events.

Inputs are debounced with a minimum pulse: a new level is published only once
it has held for ``min_pulse_s``; a line that flips back sooner produces no
event at all. ``min_pulse_s`` is at most 0.4 s in config, so inputs of 400 ms
or more are always processed (IEC 60839-11-1). The published event keeps the
time of the original edge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from .base import GpioDriver, GpioInputChanged, LineEdge


class GpioInputWatcher:
    """Publishes a :class:`GpioInputChanged` for every input edge of ``driver`` that lasts.

    The driver itself is opened by the device before any service starts and
    closed after the safe state is entered; only the reading loop is supervised,
    so a crash here never releases the relay line.
    """

    def __init__(
        self,
        driver: GpioDriver,
        bus: EventBus,
        clock: Clock,
        *,
        name: str = "gpio",
        min_pulse_s: float = 0.0,
        immediate: Collection[int] = (),
    ) -> None:
        self._driver = driver
        self._bus = bus
        self._clock = clock
        self._name = name
        self._min_pulse_s = min_pulse_s
        # Lines an interlock acts on inside the driver (fire): the driver latches on any
        # active level at once, so the events must not hide a short pulse from the controller.
        self._immediate = frozenset(immediate)
        self._pending: dict[int, asyncio.Task[None]] = {}
        self.ignored = 0
        """Input pulses shorter than the minimum, dropped."""

    @property
    def name(self) -> str:
        return self._name

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                async for edge in self._driver.edges():
                    self._edge(tg, edge)
        finally:
            self._pending.clear()

    def _edge(self, tg: asyncio.TaskGroup, edge: LineEdge) -> None:
        if self._min_pulse_s <= 0 or edge.line in self._immediate:
            self._publish(edge)
            return
        pending = self._pending.pop(edge.line, None)
        if pending is not None and not pending.done():
            # The line flipped back before its new level lasted: both edges are noise.
            pending.cancel()
            self.ignored += 1
            return
        self._pending[edge.line] = tg.create_task(
            self._confirm(edge), name=f"{self._name}.debounce.{edge.line}"
        )

    async def _confirm(self, edge: LineEdge) -> None:
        await self._clock.sleep(self._min_pulse_s)
        self._pending.pop(edge.line, None)
        self._publish(edge)

    def _publish(self, edge: LineEdge) -> None:
        self._bus.publish(
            GpioInputChanged(
                at=self._clock.wall(), line=edge.line, high=edge.high, monotonic=edge.monotonic
            )
        )
