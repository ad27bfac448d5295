"""Errors of the GPIO drivers."""

from __future__ import annotations

from ...runtime.errors import FacegateError


class GpioError(FacegateError):
    """Base of GPIO driver errors."""


class GpioUnavailableError(GpioError):
    """The driver cannot be used here (library missing, chip absent, line busy)."""


class GpioLineError(GpioError):
    """A line was used in a way it was not claimed for (unknown, input vs output)."""


class GpioClosedError(GpioError):
    """The driver is not open."""


class LineHeldError(GpioError):
    """The line is held at a fixed level (fire release) and cannot be driven now."""
