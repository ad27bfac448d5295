"""Typed errors of the camera drivers.

A failing *source* never raises out of a running camera service: it moves the
camera to ``reconnecting`` and retries. These errors reach callers only for
bad input they handed over directly (a config, a pushed array, a file given to
``SimulatedCamera.show``).
"""

from __future__ import annotations

from pathlib import Path

from ...runtime.errors import FacegateError


class CameraError(FacegateError):
    """Base of every camera driver error."""


class CameraSourceError(CameraError):
    """A source description or media file cannot be used (bad path, unreadable, undecodable).

    The message never contains a file name (photo files are often named after
    people, and these messages reach logs and published state); the offending
    path is kept in ``path`` for the caller who handed it over.
    """

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class FrameFormatError(CameraError):
    """An image array is not a usable frame (wrong dtype, shape, size or channel count)."""


class CameraNotRunningError(CameraError):
    """The camera service is not running, so it cannot accept frames."""
