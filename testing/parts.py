"""Typed views of a simulated device's hardware: the lock relay and the door contact."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..drivers.gpio import SimulatedGpio


@dataclass(frozen=True)
class Pulse:
    """One release of the lock: the relay left its idle level at ``start`` and came back at ``end``."""

    start: float
    end: float | None  # None while still released

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else self.end - self.start


class Relay:
    """The lock relay line, read from the simulated GPIO's recorded output changes."""

    def __init__(self, gpio: SimulatedGpio, line: int, idle_high: bool) -> None:
        self._gpio, self.line, self._idle = gpio, line, idle_high

    @property
    def released(self) -> bool:
        """True while the relay is away from its idle (locked) level."""
        return self._gpio.level(self.line) is not self._idle

    @property
    def pulses(self) -> list[Pulse]:
        """Every release since the device started, in order."""
        out: list[Pulse] = []
        start: float | None = None
        for change in self._gpio.output_changes:
            if change.line != self.line:
                continue
            if change.high is not self._idle and start is None:
                start = change.monotonic
            elif change.high is self._idle and start is not None:
                out.append(Pulse(start, change.monotonic))
                start = None
        if start is not None:
            out.append(Pulse(start, None))
        return out


class Door:
    """The door contact input: ``await door.open()`` / ``await door.close()`` as the world would."""

    def __init__(self, gpio: SimulatedGpio, line: int | None, open_high: bool) -> None:
        self._gpio, self.line, self._open_high = gpio, line, open_high

    def _drive(self, is_open: bool) -> None:
        if self.line is None:
            raise RuntimeError("this device has no door sensor (gpio.door_sensor_line)")
        self._gpio.drive_input(self.line, self._open_high if is_open else not self._open_high)

    @property
    def is_open(self) -> bool:
        assert self.line is not None
        return self._gpio.level(self.line) is self._open_high

    async def open(self) -> None:
        self._drive(True)
        await asyncio.sleep(0)

    async def close(self) -> None:
        self._drive(False)
        await asyncio.sleep(0)
