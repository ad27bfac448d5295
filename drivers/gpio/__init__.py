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
    Interlock,
    LineEdge,
    LineHeldError,
)
from .gpiod_driver import GpiodGpio
from .simulated import OutputChange, SimulatedGpio
from .watcher import GpioInputWatcher

SAFE_LEVEL = False
"""The relay's safe state is always de-energised (line low), whatever the lock type."""


def relay_level(section: GpioSection, *, unlocked: bool) -> bool:
    """Physical level of the relay line (high = energised) for a lock state.

    fail_secure (strike): energised = unlocked; fail_safe (maglock): energised = locked.
    """
    return unlocked if section.lock_type == "fail_secure" else not unlocked


def safe_unlocked(section: GpioSection) -> bool:
    """Whether the de-energised safe state leaves the door unlocked (fail_safe)."""
    return section.lock_type == "fail_safe"


def input_lines(section: GpioSection) -> list[int]:
    """Every configured input line, in a fixed order."""
    lines = (
        section.door_sensor_line,
        section.exit_button_line,
        section.fire_line,
        section.fire_reset_line,
        section.tamper_line,  # the enclosure tamper switch (policy.incidents.TamperInput)
    )
    return [x for x in lines if x is not None]


def fire_active(section: GpioSection, high: bool) -> bool:
    """Whether a fire input level means alarm (NO: high in alarm; NC: low in alarm)."""
    return high == (section.fire_contact == "no")


def interlocks(section: GpioSection) -> list[Interlock]:
    """The fire release as a driver interlock: fire input active -> relay held released."""
    if section.fire_line is None or section.relay == "none":
        return []
    return [
        Interlock(
            input_line=section.fire_line,
            active_high=section.fire_contact == "no",
            output_line=section.relay_line,
            output_level=relay_level(section, unlocked=True),
        )
    ]


def build_driver(section: GpioSection, clock: Clock) -> GpioDriver:
    """The configured driver with the relay (if any) starting in its safe state."""
    outputs = {} if section.relay == "none" else {section.relay_line: SAFE_LEVEL}
    inputs = input_lines(section)
    if section.driver == "gpiod":
        return GpiodGpio(
            chip=section.chip,
            outputs=outputs,
            inputs=inputs,
            clock=clock,
            debounce_ms=section.debounce_ms,
            interlocks=interlocks(section),
        )
    return SimulatedGpio(
        outputs=outputs,
        inputs=inputs,
        clock=clock,
        interlocks=interlocks(section),
        chip_file=section.sim_chip,
        release=section.sim_release,
    )


__all__ = [
    "SAFE_LEVEL",
    "GpioClosedError",
    "GpioDriver",
    "GpioError",
    "GpioInputChanged",
    "GpioInputWatcher",
    "GpioLineError",
    "GpioUnavailableError",
    "GpiodGpio",
    "Interlock",
    "LineEdge",
    "LineHeldError",
    "OutputChange",
    "SimulatedGpio",
    "build_driver",
    "fire_active",
    "input_lines",
    "interlocks",
    "relay_level",
    "safe_unlocked",
]
