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
- ``edges()`` yields every input change once, in order, to one consumer.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Self

from ...runtime.errors import FacegateError
from ...runtime.events import Event, Overflow


class GpioError(FacegateError):
    """Base of GPIO driver errors."""


class GpioUnavailableError(GpioError):
    """The driver cannot be used here (library missing, chip absent, line busy)."""


class GpioLineError(GpioError):
    """A line was used in a way it was not claimed for (unknown, input vs output)."""


class GpioClosedError(GpioError):
    """The driver is not open."""


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


class GpioDriver(abc.ABC):
    """Abstract GPIO chip with fixed output and input lines. Use as an async context manager."""

    def __init__(self, *, outputs: Mapping[int, bool], inputs: Sequence[int]) -> None:
        overlap = set(outputs) & set(inputs)
        if overlap:
            raise GpioLineError(f"lines {sorted(overlap)} cannot be both input and output")
        self.outputs: dict[int, bool] = dict(outputs)
        self.inputs: tuple[int, ...] = tuple(inputs)

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
