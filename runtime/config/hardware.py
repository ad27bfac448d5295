"""Config section of the camera drivers (owned by drivers/camera).

``[camera]`` is the colour camera; the optional ``[camera.ir]`` table adds an
infrared camera whose frames are paired with the colour frames by timestamp.
Both share the capture settings of :class:`CaptureSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._fields import FieldError, setting


@dataclass(frozen=True)
class CaptureSettings:
    """Capture settings shared by the colour and the IR camera."""

    source: int | str | None = setting(
        None,
        doc="OpenCV driver: a V4L2 device index (0) or path ('/dev/video0'), a video file path, "
        "or an rtsp:// / http(s):// (MJPEG) URL. Relative file paths are relative to the "
        "working directory.",
    )
    loop: bool = setting(True, doc="Video files: start again from the first frame at the end.")
    fps: float = setting(15.0, doc="Frames per second requested from the source.", gt=0, le=120)
    width: int = setting(640, doc="Requested frame width in pixels.", ge=32, le=7680)
    height: int = setting(480, doc="Requested frame height in pixels.", ge=32, le=4320)
    open_timeout_s: float = setting(
        5.0, doc="Give up opening a stream after this long (FFmpeg sources).", gt=0, le=120
    )
    read_timeout_s: float = setting(
        2.0, doc="A frame read blocking longer than this ends the session (FFmpeg sources).",
        gt=0, le=120,
    )
    stall_timeout_s: float = setting(
        5.0, doc="Watchdog: no frame for this long means the source stalled; reconnect.",
        gt=0, le=600,
    )

    def check(self) -> None:
        if isinstance(self.source, int) and self.source < 0:
            raise FieldError("source", "a device index must be >= 0")
        if isinstance(self.source, str) and not self.source.strip():
            raise FieldError("source", "must not be empty")
        if self.stall_timeout_s < self.read_timeout_s:
            raise FieldError(
                "stall_timeout_s", "must be >= read_timeout_s (the watchdog would cut live reads)"
            )


@dataclass(frozen=True)
class IrCameraSection(CaptureSettings):
    """The optional infrared camera, paired with the colour camera for liveness."""

    pair_tolerance_s: float = setting(
        0.05,
        doc="An IR frame is attached to a colour frame only if their capture times differ "
        "by at most this much.",
        gt=0,
        le=2,
    )


@dataclass(frozen=True)
class _DriverChoice:
    """Holds ``driver`` so that it comes first in CameraSection (dataclass fields follow reverse MRO)."""

    driver: Literal["simulated", "opencv"] = setting(
        "simulated",
        doc="'opencv' captures from 'source' through cv2.VideoCapture; 'simulated' plays "
        "'images' or 'video' and frames shown or pushed by a test.",
    )


@dataclass(frozen=True)
class CameraSection(CaptureSettings, _DriverChoice):
    """The colour camera."""

    images: tuple[Path, ...] = setting((), doc="Simulated driver: image files to play in a loop.")
    video: Path | None = setting(None, doc="Simulated driver: a video file to play at 'fps'.")
    image_hold_s: float = setting(
        2.0, doc="Simulated driver: how long each image is shown before the next one.",
        gt=0, le=3600,
    )
    jitter: bool = setting(
        True,
        doc="Simulated driver: move played images by a tiny random shift per frame, like a "
        "live person; false replays them perfectly still.",
    )
    reconnect_base_s: float = setting(
        0.5, doc="First reconnect delay after the source fails (jittered).", gt=0, le=60
    )
    reconnect_cap_s: float = setting(
        30.0, doc="Longest reconnect delay (exponential, capped, jittered).", gt=0, le=3600
    )
    ir: IrCameraSection | None = setting(
        None, doc="Optional IR camera paired with the colour camera."
    )

    def check(self) -> None:
        CaptureSettings.check(self)
        if self.reconnect_cap_s < self.reconnect_base_s:
            raise FieldError("reconnect_cap_s", "must be >= reconnect_base_s")
        if self.driver == "opencv":
            if self.source is None:
                raise FieldError("source", "the 'opencv' driver needs a source")
            if self.images or self.video is not None:
                raise FieldError(
                    "images" if self.images else "video",
                    "only the 'simulated' driver plays images or video; use 'source' for opencv",
                )
            if self.ir is not None and self.ir.source is None:
                raise FieldError("ir.source", "the 'opencv' driver needs a source for the IR camera")
        else:
            if self.source is not None:
                raise FieldError(
                    "source", "only the 'opencv' driver uses 'source'; simulated plays images/video"
                )
            if self.images and self.video is not None:
                raise FieldError("video", "set either 'images' or 'video', not both")
            if self.ir is not None and self.ir.source is not None:
                raise FieldError(
                    "ir.source", "the simulated IR camera takes frames from show()/push(), not a source"
                )
