"""A second (IR) camera paired with the colour camera by capture time, on real OpenCV captures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from facegate.drivers.camera import CameraState, OpenCVCamera
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.events import ComponentStateChanged, FrameCaptured

from .conftest import capture_threads, ir_section, next_matching, opencv_section, write_video


@pytest.fixture(scope="module")
def ir_video(tmp_path_factory: pytest.TempPathFactory, faces: list[npt.NDArray[np.uint8]]) -> Path:
    """An 'IR' clip: the same faces as near-infrared-like grey frames."""
    grey = [cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) for f in faces]
    return write_video(tmp_path_factory.mktemp("ir") / "ir.avi", [g for g in grey for _ in range(10)])


@pytest.mark.asyncio
async def test_colour_frames_carry_the_nearest_ir_frame(face_video: Path, ir_video: Path) -> None:
    section = opencv_section(str(face_video), fps=50.0,
                             ir=ir_section(str(ir_video), fps=50.0, pair_tolerance_s=0.1))
    bus = EventBus()
    cam = OpenCVCamera(section, bus, SystemClock())
    async with (
        bus.subscribe(FrameCaptured, name="t.frames") as frames,
        bus.subscribe(ComponentStateChanged, name="t.states") as states,
        cam,
    ):
        await next_matching(states, lambda e: e.component == "camera.ir" and e.state == "streaming")
        paired = 0
        for _ in range(30):
            ev = await next_matching(frames)
            if ev.ir is not None:
                paired += 1
                assert ev.ir.shape == (240, 320, 3) and ev.ir.dtype == np.uint8
                b, g, _r = cv2.split(ev.ir)  # grey replicated to BGR, like the recogniser expects
                assert np.array_equal(b, g) or np.abs(b.astype(int) - g.astype(int)).max() < 8
        assert paired >= 20
        stats = cam.stats()
        assert stats.ir_state == "streaming" and stats.ir_paired >= 20
    assert cam.ir_state is CameraState.STOPPED
    assert capture_threads() == []


@pytest.mark.asyncio
async def test_missing_ir_camera_leaves_colour_streaming(face_video: Path, tmp_path: Path) -> None:
    section = opencv_section(str(face_video), fps=50.0, ir=ir_section(str(tmp_path / "none.avi")))
    bus = EventBus()
    cam = OpenCVCamera(section, bus, SystemClock())
    async with (
        bus.subscribe(FrameCaptured, name="t.frames") as frames,
        bus.subscribe(ComponentStateChanged, name="t.states") as states,
        cam,
    ):
        await next_matching(states, lambda e: e.component == "camera.ir" and e.state == "reconnecting")
        for _ in range(10):
            ev = await next_matching(frames)
            assert ev.ir is None  # unpaired frames still flow: liveness decides what that means
        await asyncio.sleep(0)
        assert cam.state is CameraState.STREAMING
        assert cam.stats().ir_unpaired >= 10
