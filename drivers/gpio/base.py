"""The GPIO seam: numbered lines on one chip, physical levels, edge events.

A :class:`GpioDriver` is the lowest hardware seam of the device. Everything
above it (door control, exit button, tamper inputs) speaks only this
interface, so tests swap in :class:`~facegate.drivers.gpio.SimulatedGpio`
and production uses :class:`~facegate.drivers.gpio.GpiodGpio` unchanged.

Contract:
- the set of output and input lines is fixed at construction; ``open()``
  claims them all at once (outputs start at their given initial level);
- levels are physical (``True`` = electrically high); polarity belongs to
  the caller's config, not the driver;
- ``set_output`` and ``read_input`` are synchronous and fast (a single
  ioctl), so a safe state can be entered from any shutdown path;
- ``edges()`` yields every input change once, in order, to one consumer;
- ``pulse(line, level, seconds)`` drives a line and guarantees its end from
  the driver's own timer thread (see :mod:`.pulse`), whatever the event loop
  does; ``hold``/``unhold`` pin a line (fire release);
- an :class:`Interlock` ties an input to an output inside the driver: while
  the input is active the output is held, without the event loop.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self

from ...runtime.clock import SystemClock
from ...runtime.events import Event, Overflow
from .errors import (
    GpioClosedError,
    GpioError,
    GpioLineError,
    GpioUnavailableError,
    LineHeldError,
)
from .pulse import LineOwner

PULSE_SPIN_S = 0.03
"""The pulse thread spins the last 30 ms before a pulse ends (see LineOwner._spin)."""

__all__ = [
    "GpioClosedError",
    "GpioDriver",
    "GpioError",
    "GpioInputChanged",
    "GpioLineError",
    "GpioUnavailableError",
    "Interlock",
    "LineEdge",
    "LineHeldError",
]


@dataclass(frozen=True, slots=True)
class LineEdge:
    """One input change: ``line`` went to level ``high`` at ``monotonic`` seconds."""

    line: int
    high: bool
    monotonic: float


@dataclass(frozen=True, kw_only=True, slots=True)
class GpioInputChanged(Event):
    """Bus form of :class:`LineEdge`, published by the GPIO input watcher.

    Never dropped: a missed door-contact edge would hide a forced door.
    """

    overflow: ClassVar[Overflow] = Overflow.NEVER_DROP
    line: int
    high: bool
    monotonic: float


@dataclass(frozen=True, slots=True)
class Interlock:
    """While ``input_line`` reads ``active_high`` the driver holds ``output_line`` at
    ``output_level`` (latched: it stays held after the input clears until
    :meth:`GpioDriver.unhold`). Fire release lives here so it needs no event loop."""

    input_line: int
    active_high: bool
    output_line: int
    output_level: bool


class GpioDriver(abc.ABC):
    """Abstract GPIO chip with fixed output and input lines. Use as an async context manager."""

    def __init__(
        self,
        *,
        outputs: Mapping[int, bool],
        inputs: Sequence[int],
        interlocks: Sequence[Interlock] = (),
    ) -> None:
        overlap = set(outputs) & set(inputs)
        if overlap:
            raise GpioLineError(f"lines {sorted(overlap)} cannot be both input and output")
        self.outputs: dict[int, bool] = dict(outputs)
        self.inputs: tuple[int, ...] = tuple(inputs)
        for lock in interlocks:
            if lock.input_line not in self.inputs or lock.output_line not in self.outputs:
                raise GpioLineError(f"interlock {lock} needs a claimed input and output")
        self.interlocks: tuple[Interlock, ...] = tuple(interlocks)
        self._lines = LineOwner(
            self._write_line, self._line_clock, name=type(self).__name__, spin_s=self._spin_s()
        )

    def _spin_s(self) -> float:
        """How long before a pulse's end the pulse thread stops sleeping and spins.

        Non-zero only for real time (:class:`SystemClock`): with a manual test
        clock, time does not pass while spinning.
        """
        return PULSE_SPIN_S if isinstance(getattr(self, "_clock", None), SystemClock) else 0.0

    @abc.abstractmethod
    def _write_line(self, line: int, high: bool) -> None:
        """Drive the hardware line (called under the line owner's lock, any thread)."""

    @abc.abstractmethod
    def _line_clock(self) -> float:
        """The driver's monotonic clock, used for pulse deadlines."""

    def pulse(self, line: int, high: bool, seconds: float) -> None:
        """Drive ``line`` to ``high`` now; the driver's thread drives it back after ``seconds``.

        Raises LineHeldError while the line is held, GpioClosedError when closed.
        """
        self._check_output(line)
        self._check_open()
        self._lines.pulse(line, high, seconds)

    def hold(self, line: int, high: bool) -> None:
        """Pin output ``line`` at ``high`` until :meth:`unhold`."""
        self._check_output(line)
        self._check_open()
        self._lines.hold(line, high)

    def unhold(self, line: int, high: bool) -> None:
        """End a hold and drive ``line`` to ``high``."""
        self._check_output(line)
        self._check_open()
        self._lines.unhold(line, high)

    def held(self, line: int) -> bool:
        """True while output ``line`` is held (by :meth:`hold` or an interlock)."""
        return self._lines.held(line)

    def _apply_interlocks(self, line: int, high: bool) -> None:
        """Latch every interlock whose input is ``line`` and just became active."""
        for lock in self.interlocks:
            if lock.input_line == line and high == lock.active_high:
                self._lines.hold(lock.output_line, lock.output_level)

    @abc.abstractmethod
    def _check_open(self) -> None:
        """Raise GpioClosedError unless open."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Claim every line; outputs are driven to their initial level."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the lines. Idempotent."""

    @abc.abstractmethod
    def set_output(self, line: int, high: bool) -> None:
        """Drive output ``line`` to ``high``. Raises GpioLineError or GpioClosedError."""

    @abc.abstractmethod
    def read_input(self, line: int) -> bool:
        """Current level of input ``line``."""

    @abc.abstractmethod
    def edges(self) -> AsyncIterator[LineEdge]:
        """Input changes, in order, until cancelled or closed."""

    def _check_output(self, line: int) -> None:
        if line not in self.outputs:
            raise GpioLineError(f"line {line} is not claimed as an output")

    def _check_input(self, line: int) -> None:
        if line not in self.inputs:
            raise GpioLineError(f"line {line} is not claimed as an input")

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
