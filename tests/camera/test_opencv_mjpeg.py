"""The real OpenCV/FFmpeg path on a localhost MJPEG-over-HTTP stream: kill, stall, reconnect."""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt
import pytest
import structlog
from facegate.drivers.camera import CameraState, OpenCVCamera
from facegate.drivers.camera.source import CaptureTarget
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.config.hardware import CaptureSettings
from facegate.runtime.events import ComponentStateChanged, FrameCaptured

from .conftest import capture_threads, eventually, next_matching, opencv_section
from .mjpeg_server import MjpegServer


def _drain_states(sub: object) -> list[str]:
    out = []
    while (ev := sub.get_nowait()) is not None:
        out.append(ev.state)
    return out


@pytest.mark.asyncio
async def test_stream_killed_and_restored_reconnects_once(mjpeg_server: MjpegServer) -> None:
    bus = EventBus()
    cam = OpenCVCamera(opencv_section(mjpeg_server.url), bus, SystemClock())
    async with (
        bus.subscribe(FrameCaptured, name="t.frames") as frames,
        bus.subscribe(ComponentStateChanged, name="t.states") as states,
        cam,
    ):
        for _ in range(5):
            ev = await next_matching(frames)
            assert ev.image.shape == (240, 320, 3)
        before = ev.seq

        mjpeg_server.kill()  # the camera loses power / the network is cut
        await next_matching(states, lambda e: e.state == "reconnecting")
        await eventually(lambda: cam.stats().reconnects >= 3)  # down across several retries
        mjpeg_server.start()  # same port

        await next_matching(states, lambda e: e.state == "streaming" and e.detail == "320x240")
        after = await next_matching(frames, lambda e: e.seq > before)
        assert after.image.shape == (240, 320, 3)
        assert mjpeg_server.connections >= 2
    published = ["connecting", "streaming", "reconnecting", "streaming", *_drain_states(states)]
    assert published == ["connecting", "streaming", "reconnecting", "streaming", "stopped"]
    assert capture_threads() == []


@pytest.mark.asyncio
async def test_stalled_stream_is_cut_by_the_read_timeout_and_resumes(mjpeg_server: MjpegServer) -> None:
    bus = EventBus()
    cam = OpenCVCamera(opencv_section(mjpeg_server.url), bus, SystemClock())
    async with (
        bus.subscribe(FrameCaptured, name="t.frames") as frames,
        bus.subscribe(ComponentStateChanged, name="t.states") as states,
        cam,
    ):
        await next_matching(frames)
        mjpeg_server.stall()  # connection open, no data: a hung encoder
        changed = await next_matching(states, lambda e: e.state == "reconnecting")
        assert changed.detail in {"read failed", "stalled"}
        mjpeg_server.stall(False)
        await next_matching(states, lambda e: e.state == "streaming")
        seq = cam.stats().published
        await next_matching(frames, lambda e: e.seq > seq)
        assert cam.state is CameraState.STREAMING


class _BlockingCapture:
    """A capture whose read blocks forever after a few frames (a backend with no read timeout).

    Frames are real image data; only the device behind them is fake.
    """

    def __init__(self, face: npt.NDArray[np.uint8], release_all: threading.Event) -> None:
        self._face = face
        self._reads = 0
        self._release_all = release_all
        self.released = False

    def read(self) -> tuple[bool, npt.NDArray[np.uint8] | None]:
        self._reads += 1
        if self._reads > 3:
            self._release_all.wait(10)
            return False, None
        return True, self._face.copy()

    def set(self, prop: int, value: float) -> bool:
        return False

    def get(self, prop: int) -> float:
        return {3: 320.0, 4: 240.0}.get(prop, 0.0)

    def isOpened(self) -> bool:  # mirrors cv2.VideoCapture
        return True

    def release(self) -> None:
        self.released = True


@pytest.mark.asyncio
async def test_watchdog_cuts_a_read_that_never_returns(faces: list[npt.NDArray[np.uint8]]) -> None:
    unblock = threading.Event()
    opened: list[_BlockingCapture] = []

    def opener(target: CaptureTarget, settings: CaptureSettings) -> _BlockingCapture:
        cap = _BlockingCapture(faces[0], unblock)
        opened.append(cap)
        return cap

    section = opencv_section("rtsp://cam.invalid/live", open_timeout_s=0.1, read_timeout_s=0.2,
                             stall_timeout_s=0.3)
    bus = EventBus()
    cam = OpenCVCamera(section, bus, SystemClock(), opener=opener)
    try:
        async with bus.subscribe(ComponentStateChanged, name="t.states") as states, cam:
            await next_matching(states, lambda e: e.state == "streaming")
            gone = await next_matching(states, lambda e: e.state == "reconnecting")
            assert gone.detail == "stalled"
            await next_matching(states, lambda e: e.state == "streaming")  # a new session
            assert cam.stats().stalls >= 1 and len(opened) >= 2
    finally:
        unblock.set()
    # Abandoned threads exit (and release) once their read returns; a loaded machine is slow.
    await eventually(lambda: not capture_threads(), within=60)
    assert all(c.released for c in opened)


@pytest.mark.asyncio
async def test_url_credentials_never_reach_logs_or_events(mjpeg_server: MjpegServer) -> None:
    url = mjpeg_server.url.replace("http://", "http://operator:Sup3rSecret@") + "?token=T0kenValue"
    bus = EventBus()
    cam = OpenCVCamera(opencv_section(url), bus, SystemClock())
    with structlog.testing.capture_logs() as logs:
        async with (
            bus.subscribe(ComponentStateChanged, name="t.states") as states,
            bus.subscribe(ComponentStateChanged, name="t.record") as record,
            cam,
        ):
            await next_matching(states, lambda e: e.state == "streaming")
            mjpeg_server.kill()
            await next_matching(states, lambda e: e.state == "reconnecting")
            mjpeg_server.start()
            await next_matching(states, lambda e: e.state == "streaming")
        details = [e.detail for e in _collect(record)]
    assert "http://***@127.0.0.1" in details[0]
    text = repr(logs) + repr(details) + cam.source_label + repr(cam.stats())
    assert "Sup3rSecret" not in text and "T0kenValue" not in text
    assert any(entry.get("event") == "camera.state" for entry in logs)
    for entry in logs:  # no frame data in any log line
        assert not any(isinstance(v, np.ndarray | bytes) for v in entry.values())


def _collect(sub: object) -> list[ComponentStateChanged]:
    out = []
    while (ev := sub.get_nowait()) is not None:
        out.append(ev)
    return out


@pytest.mark.asyncio
async def test_an_open_that_hangs_is_bounded(faces: list[npt.NDArray[np.uint8]]) -> None:
    unblock = threading.Event()

    def hanging_opener(target: CaptureTarget, settings: CaptureSettings) -> _BlockingCapture | None:
        unblock.wait(10)  # a driver stuck in open(), with no timeout of its own
        return None

    section = opencv_section("rtsp://cam.invalid/live", open_timeout_s=0.1, read_timeout_s=0.2,
                             stall_timeout_s=0.3)
    bus = EventBus()
    cam = OpenCVCamera(section, bus, SystemClock(), opener=hanging_opener)
    try:
        async with bus.subscribe(ComponentStateChanged, name="t.states") as states, cam:
            gone = await next_matching(states, lambda e: e.state == "reconnecting")
            assert gone.detail == "open timed out"
    finally:
        unblock.set()
    await eventually(lambda: not capture_threads(), within=60)
