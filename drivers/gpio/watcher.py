"""The GPIO input watcher: a supervised Service turning line edges into bus events."""

from __future__ import annotations

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from .base import GpioDriver, GpioInputChanged


class GpioInputWatcher:
    """Publishes a :class:`GpioInputChanged` for every input edge of ``driver``.

    The driver itself is opened by the device before any service starts and
    closed after the safe state is entered; only the reading loop is supervised,
    so a crash here never releases the relay line.
    """

    def __init__(self, driver: GpioDriver, bus: EventBus, clock: Clock, *, name: str = "gpio") -> None:
        self._driver = driver
        self._bus = bus
        self._clock = clock
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def run(self) -> None:
        async for edge in self._driver.edges():
            self._bus.publish(
                GpioInputChanged(
                    at=self._clock.wall(), line=edge.line, high=edge.high, monotonic=edge.monotonic
                )
            )
