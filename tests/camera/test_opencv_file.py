"""The real OpenCV capture path on a video file written with cv2.VideoWriter.

Capture threads run in real time, so these tests use the SystemClock, short
clips, fast reconnects and generous timeouts; nothing asserts on speed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from facegate.drivers.camera import CameraSourceError, CameraState, OpenCVCamera
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.events import ComponentStateChanged, FrameCaptured

from .conftest import capture_threads, eventually, next_matching, opencv_section, write_video


@pytest.mark.asyncio
async def test_video_file_frames_loop_and_shutdown_is_clean(face_video: Path) -> None:
    bus = EventBus()
    cam = OpenCVCamera(opencv_section(str(face_video), fps=100.0), bus, SystemClock())
    async with (
        bus.subscribe(FrameCaptured, name="t.frames") as frames,
        bus.subscribe(ComponentStateChanged, name="t.states") as states,
    ):
        async with cam:
            seqs = []
            for _ in range(50):  # more than the 40 frames of the file: it must loop
                ev = await next_matching(frames)
                seqs.append(ev.seq)
                assert ev.image.shape == (240, 320, 3) and ev.image.dtype == np.uint8
                assert not ev.image.flags.writeable
                assert ev.source == "camera" and ev.ir is None
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            assert cam.state is CameraState.STREAMING
            stats = cam.stats()
            assert stats.captured >= 50 and stats.published >= 50
            assert (stats.width, stats.height) == (320, 240)
            assert stats.reconnects == 0
        seen = []
        while (ev2 := states.get_nowait()) is not None:
            seen.append(ev2.state)
    assert seen == ["connecting", "streaming", "stopped"]
    assert cam.state is CameraState.STOPPED
    assert capture_threads() == []  # the capture thread was joined, the capture released


@pytest.mark.asyncio
async def test_non_looping_file_ends_without_reconnecting(face_video: Path) -> None:
    bus = EventBus()
    cam = OpenCVCamera(opencv_section(str(face_video), fps=100.0, loop=False), bus, SystemClock())
    async with (
        bus.subscribe(FrameCaptured, name="t.frames", maxsize=100) as frames,
        bus.subscribe(ComponentStateChanged, name="t.states") as states,
        cam,
    ):
        await next_matching(states, lambda e: e.state == "ended")
        await asyncio.sleep(0.2)  # nothing more arrives, no reconnect happens
        assert cam.state is CameraState.ENDED
        assert cam.stats().captured == 40
        assert cam.stats().reconnects == 0
        got = []
        while (ev := frames.get_nowait()) is not None:
            got.append(ev.seq)
        assert got[-1] == 40


@pytest.mark.asyncio
async def test_busy_loop_gets_the_newest_frame_and_drops_are_counted(face_video: Path) -> None:
    bus = EventBus()
    cam = OpenCVCamera(opencv_section(str(face_video), fps=100.0), bus, SystemClock())
    async with bus.subscribe(FrameCaptured, name="t.frames") as frames, cam:
        first = await next_matching(frames)
        time.sleep(0.4)  # noqa: ASYNC251  # deliberately block the loop, as a slow handler would
        # The thread kept capturing; only the newest frame was handed over, no backlog.
        nxt = await next_matching(frames)
        assert nxt.seq - first.seq > 5
        assert cam.stats().dropped > 0


@pytest.mark.asyncio
async def test_slow_subscriber_sees_newest_frame(face_video: Path) -> None:
    bus = EventBus()
    cam = OpenCVCamera(opencv_section(str(face_video), fps=100.0), bus, SystemClock())
    async with bus.subscribe(FrameCaptured, name="t.slow", maxsize=1) as slow, cam:
        await next_matching(slow)
        await asyncio.sleep(0.3)  # a slow consumer (e.g. recognition busy on one frame)
        assert slow.depth == 1 and slow.stats.dropped > 0
        latest = slow.get_nowait()
        assert latest is not None and latest.seq >= cam.stats().published - 1


@pytest.mark.asyncio
async def test_missing_file_retries_quietly_then_streams_when_it_appears(
    tmp_path: Path, faces: list[npt.NDArray[np.uint8]]
) -> None:
    path = tmp_path / "later.avi"
    bus = EventBus()
    cam = OpenCVCamera(opencv_section(str(path), fps=50.0), bus, SystemClock())
    async with (
        bus.subscribe(FrameCaptured, name="t.frames") as frames,
        bus.subscribe(ComponentStateChanged, name="t.states") as states,
        cam,
    ):
        await next_matching(states, lambda e: e.state == "reconnecting")
        await eventually(lambda: cam.stats().reconnects >= 3)  # several failed attempts...
        write_video(path, faces)
        await next_matching(frames)
        assert cam.state is CameraState.STREAMING
    published = []
    while (ev := states.get_nowait()) is not None:
        published.append(ev.state)
    # ...but the state change was published once, not per retry.
    assert published == ["streaming", "stopped"]


@pytest.mark.asyncio
async def test_absent_device_never_crashes() -> None:
    bus = EventBus()
    cam = OpenCVCamera(opencv_section("/dev/video57"), bus, SystemClock())
    async with bus.subscribe(ComponentStateChanged, name="t.states") as states, cam:
        first = await next_matching(states)
        second = await next_matching(states)
        assert (first.state, second.state) == ("connecting", "reconnecting")
        assert first.detail == "/dev/video57"
        await eventually(lambda: cam.stats().reconnects >= 2)
        assert states.get_nowait() is None
    assert capture_threads() == []


def test_a_source_that_can_never_work_is_refused_at_construction() -> None:
    section = opencv_section("/dev/sda")
    with pytest.raises(CameraSourceError):
        OpenCVCamera(section, EventBus(), SystemClock())


@pytest.mark.asyncio
async def test_frames_larger_than_configured_are_downscaled_in_the_thread(face_video: Path) -> None:
    bus = EventBus()
    section = opencv_section(str(face_video), fps=100.0, width=160, height=160)
    cam = OpenCVCamera(section, bus, SystemClock())
    async with bus.subscribe(FrameCaptured, name="t.frames") as frames, cam:
        ev = await next_matching(frames)
    assert ev.image.shape == (120, 160, 3)  # 320x240 fitted into 160x160, aspect kept
    assert cam.stats().width == 160
