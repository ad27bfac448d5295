"""GPIO drivers: the lock relay output and door inputs.

Public surface: :class:`GpioDriver` (the seam), :class:`SimulatedGpio`,
:class:`GpiodGpio`, :func:`build_driver` (from the ``[gpio]`` config section),
:class:`GpioInputWatcher` (the Service publishing :class:`GpioInputChanged`),
and the :class:`GpioError` tree.
"""

from __future__ import annotations

from ...runtime.clock import Clock
from ...runtime.config.gpio import GpioSection
from .base import (
    GpioClosedError,
    GpioDriver,
    GpioError,
    GpioInputChanged,
    GpioLineError,
    GpioUnavailableError,
    LineEdge,
)
from .gpiod_driver import GpiodGpio
from .simulated import OutputChange, SimulatedGpio
from .watcher import GpioInputWatcher


def relay_level(section: GpioSection, *, unlocked: bool) -> bool:
    """Physical level of the relay line for a lock state (energised = unlocked)."""
    return unlocked == section.relay_active_high


def build_driver(section: GpioSection, clock: Clock) -> GpioDriver:
    """The configured driver with the relay starting in its safe state."""
    outputs = {section.relay_line: relay_level(section, unlocked=section.safe_state == "unlocked")}
    inputs = [x for x in (section.door_sensor_line, section.exit_button_line) if x is not None]
    inputs += [] if section.tamper_line is None else [section.tamper_line]  # enclosure switch (policy)
    if section.driver == "gpiod":
        return GpiodGpio(
            chip=section.chip,
            outputs=outputs,
            inputs=inputs,
            clock=clock,
            debounce_ms=section.debounce_ms,
        )
    return SimulatedGpio(outputs=outputs, inputs=inputs, clock=clock)


__all__ = [
    "GpioClosedError",
    "GpioDriver",
    "GpioError",
    "GpioInputChanged",
    "GpioInputWatcher",
    "GpioLineError",
    "GpioUnavailableError",
    "GpiodGpio",
    "LineEdge",
    "OutputChange",
    "SimulatedGpio",
    "build_driver",
    "relay_level",
]
