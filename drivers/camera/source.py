"""What an OpenCV camera captures from, and how a capture is opened.

:func:`parse_source` turns the config's ``source`` (device index, ``/dev/videoN``,
file path or URL) into a :class:`CaptureTarget`; :func:`open_capture` opens it
with the right backend and timeouts. Opening is blocking and runs in the
capture thread. :class:`Capture` is the seam tests may replace: the smallest
part of ``cv2.VideoCapture`` the drivers use.
"""

from __future__ import annotations

import enum
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from ...runtime.config.hardware import CaptureSettings
from .errors import CameraSourceError

_DEV_VIDEO = re.compile(r"^/dev/video(\d+)$")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class SourceKind(enum.StrEnum):
    """The three kinds of OpenCV source."""

    DEVICE = "device"
    FILE = "file"
    URL = "url"


@dataclass(frozen=True, slots=True)
class CaptureTarget:
    """A parsed source: what to pass to ``cv2.VideoCapture`` and how to treat it.

    ``label`` is safe to log and publish: URL credentials are masked.
    """

    kind: SourceKind
    location: int | str
    api: int
    label: str

    @property
    def paced(self) -> bool:
        """Files are read as fast as they decode, so the driver paces them at the configured fps."""
        return self.kind is SourceKind.FILE


def redact_url(url: str) -> str:
    """``url`` with any user:password masked and the query string dropped (tokens live there)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_source(source: int | str | None) -> CaptureTarget:
    """Classify ``source``; raises :class:`CameraSourceError` when it is unusable."""
    if source is None:
        raise CameraSourceError("no camera source configured")
    if isinstance(source, bool):
        raise CameraSourceError("a camera source cannot be a boolean")
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        index = int(source)
        if index < 0:
            raise CameraSourceError("a device index must be >= 0")
        return CaptureTarget(SourceKind.DEVICE, index, cv2.CAP_V4L2, f"/dev/video{index}")
    text = source.strip()
    if not text:
        raise CameraSourceError("empty camera source")
    if _URL.match(text):
        return CaptureTarget(SourceKind.URL, text, cv2.CAP_FFMPEG, redact_url(text))
    if text.startswith("/dev/"):
        # udev names such as /dev/v4l/by-id/... are symlinks to /dev/videoN; OpenCV's
        # V4L2 backend opens reliably by index, so resolve to it.
        resolved = os.path.realpath(text)
        m = _DEV_VIDEO.match(resolved)
        if m is None:
            raise CameraSourceError(f"{text} is not a V4L2 video device (/dev/videoN)")
        return CaptureTarget(SourceKind.DEVICE, int(m.group(1)), cv2.CAP_V4L2, text)
    # The label avoids the file name: it is published in state changes.
    label = f"video file ({Path(text).suffix or 'no suffix'})"
    return CaptureTarget(SourceKind.FILE, text, cv2.CAP_FFMPEG, label)


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` the drivers use (tests may provide frames through it)."""

    def read(self) -> tuple[bool, npt.NDArray[np.uint8] | None]: ...

    def set(self, prop: int, value: float) -> bool: ...

    def get(self, prop: int) -> float: ...

    def isOpened(self) -> bool: ...  # OpenCV's own method name

    def release(self) -> None: ...


class CaptureOpener(Protocol):
    """Opens a capture for a target; returns None when the source cannot be opened now."""

    def __call__(self, target: CaptureTarget, settings: CaptureSettings) -> Capture | None: ...


def open_capture(target: CaptureTarget, settings: CaptureSettings) -> Capture | None:
    """Open ``target`` with its backend, timeouts, resolution and fps (blocking).

    FFmpeg takes open/read timeouts as open parameters, so a dead or stalled
    stream cannot block the capture thread for longer than those. V4L2 gets
    resolution and fps requests (a camera may round them: the driver reports
    the actual frame size it receives).
    """
    if target.kind is SourceKind.FILE and not Path(str(target.location)).is_file():
        return None  # FFmpeg would log a confusing backend warning for a missing file
    params: list[int] = []
    if target.api == cv2.CAP_FFMPEG:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, round(settings.open_timeout_s * 1000)),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, round(settings.read_timeout_s * 1000)),
        ]
    cap = cv2.VideoCapture(target.location, target.api, params)
    if not cap.isOpened():
        cap.release()
        return None
    if target.kind is SourceKind.DEVICE:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, settings.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, settings.height)
        cap.set(cv2.CAP_PROP_FPS, settings.fps)
        # Keep the driver queue short so a read returns a fresh frame, not a stale one.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, settings.read_timeout_s * 1000)
    return cap  # type: ignore[return-value]  # cv2 stubs type read() as MatLike; frames are uint8
