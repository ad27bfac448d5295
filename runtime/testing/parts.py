"""The one place facegate.testing reaches into a device's internals, and typed views of its hardware.

Everything that knows how a :class:`Device` holds its parts (the typed
``device.parts`` of the composition root) is in the functions at the top of this
module; the rest of the plugin only sees typed objects. The lock relay and the
door contact are :class:`Relay` and :class:`Door`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..drivers.camera import SimulatedCamera
from ..drivers.gpio import SimulatedGpio
from ..policy import Policy
from ..runtime.app.device import Device


def camera(device: Device) -> SimulatedCamera:
    """The device's simulated camera (a device under test must use ``driver = "simulated"``)."""
    cam = device.parts.camera
    if not isinstance(cam, SimulatedCamera):
        raise TypeError("the device's camera is not simulated")
    return cam


def gpio(device: Device) -> SimulatedGpio:
    """The device's simulated GPIO lines."""
    lines = device.parts.gpio
    if not isinstance(lines, SimulatedGpio):
        raise TypeError("the device's GPIO is not simulated")
    return lines


def policy(device: Device) -> Policy:
    """The consent/retention policy over the device's store."""
    found = device.parts.policy
    if found is None:
        raise TypeError("the device has no store, so no privacy policy")
    return found


async def embedder(device: Device) -> Callable[[bytes], Awaitable[Any]]:
    """The recognition engine's image embedder, once the models are loaded."""
    parts = device.parts
    if parts.recognition is None or parts.engine is None:
        raise TypeError("the device has no recognition")
    await parts.recognition.wait_ready()
    embed: Callable[[bytes], Awaitable[Any]] = parts.engine.embed_image
    return embed


async def wait_ready(device: Device) -> None:
    """Until signed commands are subscribed and the recognition models are loaded (when present)."""
    parts = device.parts
    if parts.mqtt is not None and parts.mqtt.commands is not None:
        await parts.mqtt.commands.wait_ready()
        # The command filter is registered; the broker has it once the link is connected
        # (subscriptions are sent before the link reports CONNECTED).
        await parts.mqtt.link.wait_connected()
    if parts.recognition is not None:
        await parts.recognition.wait_ready()


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
