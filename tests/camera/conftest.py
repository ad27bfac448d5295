"""Fixtures for the camera driver tests: real face images, a real video file, a real MJPEG server."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from facegate.runtime.bus import Subscription
from facegate.runtime.config.hardware import CameraSection, IrCameraSection
from facegate.runtime.events import ComponentStateChanged, Event

from .mjpeg_server import MjpegServer

FACES = Path(__file__).resolve().parents[1] / "data" / "faces"
FACE_FILES = ["Family1-Dad1.jpg", "Family1-Mom1.jpg", "Family2-Lady1.jpg", "obama.jpg"]
SIZE = (320, 240)
E = TypeVar("E", bound=Event)


def load_faces(size: tuple[int, int] = SIZE) -> list[npt.NDArray[np.uint8]]:
    """The sample faces, resized to ``size`` (w, h), as BGR uint8."""
    out = []
    for name in FACE_FILES:
        img = cv2.imread(str(FACES / name))
        assert img is not None, name
        out.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
    return out


def write_video(path: Path, frames: list[npt.NDArray[np.uint8]], *, fps: float = 20.0) -> Path:
    """Write ``frames`` with cv2.VideoWriter as Motion-JPEG in AVI (available in headless builds)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), "this OpenCV build cannot write MJPG/AVI"
    for f in frames:
        writer.write(f)
    writer.release()
    return path


@pytest.fixture(scope="session")
def faces() -> list[npt.NDArray[np.uint8]]:
    return load_faces()


@pytest.fixture(scope="session")
def face_video(tmp_path_factory: pytest.TempPathFactory, faces: list[npt.NDArray[np.uint8]]) -> Path:
    """A 40-frame MJPG .avi of the sample faces (10 frames each)."""
    frames = [f for f in faces for _ in range(10)]
    return write_video(tmp_path_factory.mktemp("video") / "faces.avi", frames)


@pytest.fixture
def mjpeg_server(faces: list[npt.NDArray[np.uint8]]) -> Iterator[MjpegServer]:
    server = MjpegServer(faces, fps=25.0)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def opencv_section(source: int | str, **overrides: Any) -> CameraSection:
    """An 'opencv' camera section with fast reconnects for tests."""
    base = CameraSection(
        driver="opencv",
        source=source,
        fps=25.0,
        width=320,
        height=240,
        open_timeout_s=2.0,
        read_timeout_s=0.5,
        stall_timeout_s=1.0,
        reconnect_base_s=0.05,
        reconnect_cap_s=0.2,
    )
    section = dataclasses.replace(base, **overrides)
    section.check()
    return section


def ir_section(source: int | str, **overrides: Any) -> IrCameraSection:
    base = IrCameraSection(source=source, fps=25.0, width=320, height=240, read_timeout_s=0.5,
                           stall_timeout_s=1.0)
    return dataclasses.replace(base, **overrides)


async def next_matching(
    sub: Subscription[E], pred: Callable[[E], bool] = lambda _e: True, *, within: float = 10.0
) -> E:
    """The next event on ``sub`` that satisfies ``pred`` (real-time bound: capture threads are real)."""
    async with asyncio.timeout(within):
        while True:
            ev = await sub.get()
            if pred(ev):
                return ev


async def eventually(pred: Callable[[], bool], *, within: float = 10.0) -> None:
    """Poll ``pred`` until true (real time: it watches counters that capture threads move)."""
    for _ in range(int(within / 0.02)):
        if pred():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def states_of(events: list[ComponentStateChanged], component: str) -> list[str]:
    return [e.state for e in events if e.component == component]


def capture_threads() -> list[threading.Thread]:
    """Live capture threads of the drivers (named ``facegate-<component>``)."""
    return [t for t in threading.enumerate() if t.name.startswith("facegate-camera")]
