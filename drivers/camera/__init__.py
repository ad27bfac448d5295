"""Camera drivers: OpenCV ``VideoCapture`` sources and the ``SimulatedCamera``.

Both publish :class:`~facegate.runtime.events.FrameCaptured` (latest wins) and
:class:`~facegate.runtime.events.ComponentStateChanged` (once per change) on
the bus. Build one from config with :func:`create_camera`.
"""

from __future__ import annotations

import random

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.config.hardware import CameraSection
from .base import CameraService, CameraStats
from .errors import CameraError, CameraNotRunningError, CameraSourceError, FrameFormatError
from .frames import IrPairer, decode_image_file, to_bgr8
from .jitter import Jitter
from .opencv import OpenCVCamera
from .simulated import SimulatedCamera
from .source import Capture, CaptureTarget, SourceKind, open_capture, parse_source, redact_url
from .state import CameraState

__all__ = [
    "CameraError",
    "CameraNotRunningError",
    "CameraService",
    "CameraSourceError",
    "CameraState",
    "CameraStats",
    "Capture",
    "CaptureTarget",
    "FrameFormatError",
    "IrPairer",
    "Jitter",
    "OpenCVCamera",
    "SimulatedCamera",
    "SourceKind",
    "create_camera",
    "decode_image_file",
    "open_capture",
    "parse_source",
    "redact_url",
    "to_bgr8",
]


def create_camera(
    section: CameraSection,
    bus: EventBus,
    clock: Clock,
    *,
    name: str = "camera",
    rng: random.Random | None = None,
) -> OpenCVCamera | SimulatedCamera:
    """The camera service ``section.driver`` asks for (raises CameraSourceError for a bad source)."""
    if section.driver == "opencv":
        return OpenCVCamera(section, bus, clock, name=name, rng=rng)
    return SimulatedCamera(section, bus, clock, name=name, rng=rng)
