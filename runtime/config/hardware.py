"""Config section of the camera drivers (owned by drivers/camera)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._fields import setting


@dataclass(frozen=True)
class CameraSection:
    """The colour camera."""

    driver: Literal["simulated"] = setting(
        "simulated", doc="'simulated' plays image files or frames pushed by a test."
    )
    images: tuple[Path, ...] = setting((), doc="Simulated driver: image files to play in a loop.")
    fps: float = setting(15.0, doc="Frames per second requested from the source.", gt=0, le=120)
    width: int = setting(640, doc="Requested frame width in pixels.", ge=32, le=7680)
    height: int = setting(480, doc="Requested frame height in pixels.", ge=32, le=4320)
