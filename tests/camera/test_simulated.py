"""SimulatedCamera: files, video, show() with and without jitter, push(); paced by a ManualClock."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
import structlog
from facegate.drivers.camera import (
    CameraNotRunningError,
    CameraSourceError,
    CameraState,
    FrameFormatError,
    SimulatedCamera,
    create_camera,
)
from facegate.runtime.bus import EventBus, Subscription
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.hardware import CameraSection
from facegate.runtime.events import ComponentStateChanged, FrameCaptured

from .conftest import FACES, eventually, next_matching

PERIOD = 0.1  # fps = 10


def _section(**kw: object) -> CameraSection:
    section = dataclasses.replace(CameraSection(), fps=10.0, reconnect_base_s=1.0, reconnect_cap_s=2.0, **kw)
    section.check()
    return section


async def _tick(clock: ManualClock, frames: Subscription[FrameCaptured]) -> FrameCaptured:
    """Advance one frame period and return the frame it produced."""
    await clock.advance(PERIOD)
    return await next_matching(frames, within=5)


@pytest.mark.asyncio
async def test_image_files_play_in_a_loop_at_fps() -> None:
    paths = tuple(FACES / n for n in ["Family1-Dad1.jpg", "Family1-Mom1.jpg", "obama.jpg"])
    clock = ManualClock()
    bus = EventBus()
    cam = create_camera(_section(images=paths, image_hold_s=0.2, jitter=False), bus, clock)
    assert isinstance(cam, SimulatedCamera)
    async with bus.subscribe(FrameCaptured, name="t.frames") as frames, cam:
        got = [await next_matching(frames, within=10)]  # first frame right away
        for _ in range(6):
            got.append(await _tick(clock, frames))
        assert frames.get_nowait() is None  # exactly one frame per period, clock-driven
    assert [e.seq for e in got] == list(range(1, 8))
    assert all(e.image.shape == (480, 640, 3) for e in got)  # letterboxed into width x height
    assert got[1].monotonic - got[0].monotonic == pytest.approx(PERIOD)
    # held 2 frames each, static (no jitter): the very same array; then the next file; then loop.
    assert got[0].image is got[1].image
    assert not np.array_equal(got[1].image, got[2].image)
    assert got[6].image is got[0].image


@pytest.mark.asyncio
async def test_show_with_jitter_moves_slightly_and_without_is_perfectly_still() -> None:
    clock = ManualClock()
    bus = EventBus()
    cam = SimulatedCamera(_section(), bus, clock, rng=random.Random(7))
    face = FACES / "Family1-Mom1.jpg"
    async with bus.subscribe(FrameCaptured, name="t.frames") as frames, cam:
        live = asyncio.create_task(cam.show(face, frames=5, jitter=True))
        shots = [await next_matching(frames, within=10)]
        for _ in range(4):
            shots.append(await _tick(clock, frames))
        await live
        still = asyncio.create_task(cam.show(face, frames=5, jitter=False))
        await clock.advance(PERIOD)
        statics = [await next_matching(frames, within=10)]
        for _ in range(4):
            statics.append(await _tick(clock, frames))
        await still
        await clock.advance(PERIOD)
        await asyncio.sleep(0.05)
        assert frames.get_nowait() is None  # nothing more to play: the camera idles
    for a, b in itertools.pairwise(shots):
        assert not np.array_equal(a.image, b.image)  # it moves...
        diff = np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)).mean()
        assert diff < 20  # ...but only a little: the same person, not a new picture
    assert all(np.array_equal(s.image, statics[0].image) for s in statics)


@pytest.mark.asyncio
async def test_jitter_is_reproducible_with_a_seed() -> None:
    async def run_once() -> list[npt.NDArray[np.uint8]]:
        clock = ManualClock()
        bus = EventBus()
        cam = SimulatedCamera(_section(), bus, clock, rng=random.Random(42))
        async with bus.subscribe(FrameCaptured, name="t.frames") as frames, cam:
            show = asyncio.create_task(cam.show(FACES / "obama.jpg", frames=3))
            out = [(await next_matching(frames, within=10)).image]
            for _ in range(2):
                out.append((await _tick(clock, frames)).image)
            await show
        return out

    a, b = await run_once(), await run_once()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.asyncio
async def test_show_pairs_an_ir_image_with_the_same_motion() -> None:
    clock = ManualClock()
    bus = EventBus()
    cam = SimulatedCamera(_section(), bus, clock, rng=random.Random(1))
    face = cv2.imread(str(FACES / "Family2-Man1.jpg"))
    grey = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    async with bus.subscribe(FrameCaptured, name="t.frames") as frames, cam:
        show = asyncio.create_task(cam.show(face, frames=2, ir=grey))
        ev = await next_matching(frames, within=10)
        assert ev.ir is not None and ev.ir.shape == ev.image.shape
        # same warp on both: the IR frame is the grey of the colour frame (up to rounding)
        expected = cv2.cvtColor(cv2.cvtColor(ev.image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        assert np.abs(expected.astype(int) - ev.ir.astype(int)).mean() < 3
        await _tick(clock, frames)
        await show


@pytest.mark.asyncio
async def test_video_file_plays_frame_by_frame_and_stops_at_the_end(face_video: Path) -> None:
    clock = ManualClock()
    bus = EventBus()
    cam = SimulatedCamera(_section(video=face_video, loop=False), bus, clock)
    async with bus.subscribe(FrameCaptured, name="t.frames", maxsize=64) as frames, cam:
        got = [await next_matching(frames, within=10)]
        for _ in range(39):
            got.append(await _tick(clock, frames))
        await clock.advance(PERIOD)
        await asyncio.sleep(0.1)
        assert frames.get_nowait() is None  # 40 frames in the file, no loop
        assert cam.state is CameraState.STREAMING  # still up: show() and push() keep working
    assert got[0].image.shape == (480, 640, 3)
    assert not np.array_equal(got[0].image, got[10].image)  # the clip changes face every 10 frames


@pytest.mark.asyncio
async def test_show_a_video_clip(face_video: Path) -> None:
    clock = ManualClock()
    bus = EventBus()
    cam = SimulatedCamera(_section(), bus, clock)
    async with bus.subscribe(FrameCaptured, name="t.frames", maxsize=64) as frames, cam:
        show = asyncio.create_task(cam.show(face_video, frames=12, jitter=False))
        got = [await next_matching(frames, within=10)]
        for _ in range(11):
            got.append(await _tick(clock, frames))
        await show
    assert not np.array_equal(got[0].image, got[11].image)


@pytest.mark.asyncio
async def test_push_publishes_a_normalised_copy_at_once() -> None:
    clock = ManualClock()
    bus = EventBus()
    cam = SimulatedCamera(_section(), bus, clock)
    async with bus.subscribe(FrameCaptured, name="t.frames") as frames:
        grey16 = np.full((120, 160), 40000, np.uint16)
        ev = cam.push(grey16)  # works without run(): a unit test may just push frames
        assert ev.image.shape == (120, 160, 3) and ev.image.dtype == np.uint8
        assert not ev.image.flags.writeable
        assert (await next_matching(frames, within=1)) is ev
        src = np.zeros((120, 160, 3), np.uint8)
        ev2 = cam.push(src, ir=src[:, :, 0])
        src[:] = 9
        assert int(ev2.image.max()) == 0 and ev2.ir is not None and ev2.seq == ev.seq + 1
        for bad in [np.zeros((120, 160, 3), np.float64), np.zeros((3, 3, 3), np.uint8)]:
            with pytest.raises(FrameFormatError):
                cam.push(bad)
    assert cam.stats().published == 2


@pytest.mark.asyncio
async def test_bad_show_input_is_a_typed_error_and_the_camera_keeps_running(tmp_path: Path) -> None:
    clock = ManualClock()
    bus = EventBus()
    cam = SimulatedCamera(_section(), bus, clock)
    with pytest.raises(CameraNotRunningError):
        await cam.show(FACES / "obama.jpg")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes((FACES / "obama.jpg").read_bytes()[:200])
    async with cam:
        for bad in [tmp_path / "absent.jpg", truncated]:
            with pytest.raises(CameraSourceError):
                await cam.show(bad)
        with pytest.raises(FrameFormatError):
            await cam.show(np.zeros((10, 10, 2), np.uint8))
        assert cam.state is CameraState.STREAMING


@pytest.mark.asyncio
async def test_stopping_fails_pending_shows() -> None:
    clock = ManualClock()
    bus = EventBus()
    cam = SimulatedCamera(_section(), bus, clock)
    async with cam:
        pending = asyncio.create_task(cam.show(FACES / "obama.jpg", frames=100))
        await eventually(lambda: cam.pending_frames > 0)
    with pytest.raises(CameraNotRunningError):
        await pending


@pytest.mark.asyncio
async def test_broken_config_image_retries_then_plays(tmp_path: Path) -> None:
    image = tmp_path / "door.jpg"
    image.write_bytes(b"\xff\xd8 not really a jpeg")
    clock = ManualClock()
    bus = EventBus()
    cam = SimulatedCamera(_section(images=(image,)), bus, clock)
    async with (
        bus.subscribe(ComponentStateChanged, name="t.states") as states,
        bus.subscribe(FrameCaptured, name="t.frames") as frames,
        cam,
    ):
        bad = await next_matching(states, lambda e: e.state == "reconnecting", within=10)
        assert bad.detail.startswith("images[0]:") and "door" not in bad.detail
        shutil.copy(FACES / "obama.jpg", image)
        while cam.state is not CameraState.STREAMING:
            await clock.advance(1.0)
            await asyncio.sleep(0.01)
        ev = await next_matching(frames, within=10)
        assert ev.image.shape == (480, 640, 3)


@pytest.mark.asyncio
async def test_no_pixels_or_file_names_in_logs_or_state(tmp_path: Path) -> None:
    named = tmp_path / "jane_doe.jpg"
    named.write_bytes(b"garbage")
    clock = ManualClock()
    bus = EventBus()
    cam = SimulatedCamera(_section(images=(named,)), bus, clock)
    with structlog.testing.capture_logs() as logs:
        async with bus.subscribe(ComponentStateChanged, name="t.states") as states, cam:
            await next_matching(states, lambda e: e.state == "reconnecting", within=10)
            shutil.copy(FACES / "Family1-Dad1.jpg", named)
            while cam.state is not CameraState.STREAMING:
                await clock.advance(1.0)
                await asyncio.sleep(0.01)
            with pytest.raises(CameraSourceError) as info:
                await cam.show(tmp_path / "john_smith.jpg")
            assert info.value.path == tmp_path / "john_smith.jpg"
            cam.push(np.zeros((64, 64, 3), np.uint8))
    text = repr(logs) + repr([e.detail for e in _drain(states)])
    assert "jane" not in text and "john" not in text
    assert any(entry["event"] == "camera.state" for entry in logs)
    for entry in logs:
        assert not any(isinstance(v, np.ndarray | bytes) for v in entry.values())


def _drain(sub: Subscription[ComponentStateChanged]) -> list[ComponentStateChanged]:
    out = []
    while (ev := sub.get_nowait()) is not None:
        out.append(ev)
    return out
