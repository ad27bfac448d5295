"""``SimulatedCamera``: the developer's way to show a face to a simulated device.

It publishes the same :class:`~facegate.runtime.events.FrameCaptured` events
as the OpenCV camera, paced by the injected clock at ``fps``:

* ``images`` from config play in a loop, each held for ``image_hold_s``;
* a ``video`` from config plays frame by frame (looping if ``loop``);
* ``await cam.show(path_or_array, frames=N, jitter=True)`` shows one image
  (or a short video clip) for N frames ahead of the idle playlist. With
  ``jitter`` each frame is moved by a tiny smooth random affine, like a live
  person; without it the very same array is replayed, perfectly still;
* ``cam.push(array)`` publishes one frame at once (tests).

Shown and played images are letterboxed into ``width x height`` as a camera of
that resolution would see them; pushed arrays are published as given. All
decoding and warping runs off the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import structlog

from ...runtime.backoff import Backoff
from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.config.hardware import CameraSection
from ...runtime.events import FrameCaptured
from .base import CameraService, CameraStats
from .errors import CameraNotRunningError, CameraSourceError, FrameFormatError
from .frames import Image, decode_image_file, letterbox, to_bgr8
from .jitter import Jitter, Pose, apply_pose
from .state import CameraState, camera_states

_log = structlog.get_logger("facegate.camera")

VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mjpg", ".mjpeg"})
MAX_CLIP_FRAMES = 600
"""A video given to :meth:`SimulatedCamera.show` is decoded up front, at most this many frames."""

ImageInput = str | Path | npt.NDArray[Any]


@dataclass
class _Scene:
    """Frames queued by :meth:`SimulatedCamera.show`."""

    images: list[Image]
    irs: list[Image] | None
    frames: int
    jitter: Jitter | None
    done: asyncio.Future[None]
    shown: int = 0


@dataclass
class _Playlist:
    """The idle content from config: still images or an open video."""

    images: list[Image] = field(default_factory=list)
    hold: int = 1
    jitter: Jitter | None = None
    video: Any = None  # cv2.VideoCapture, read only from worker threads
    index: int = 0
    held: int = 0
    finished: bool = False


def _read_video(path: Path, width: int, height: int, limit: int) -> list[Image]:
    """Decode up to ``limit`` frames of a video file (blocking)."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        frames: list[Image] = []
        while cap.isOpened() and len(frames) < limit:
            ok, raw = cap.read()
            if not ok or raw is None:
                break
            frames.append(letterbox(to_bgr8(raw, what="video frame"), width, height))
    finally:
        cap.release()
    if not frames:
        raise CameraSourceError("no decodable video frames", path=path)
    return frames


class SimulatedCamera(CameraService):
    """A camera fed from files, a video or a test; paced by the injected clock.

    ``rng`` seeds jitter and backoff so a test can replay the exact same motion.
    """

    def __init__(
        self,
        section: CameraSection,
        bus: EventBus,
        clock: Clock,
        *,
        name: str = "camera",
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(name)
        if section.driver != "simulated":
            raise CameraSourceError(f"SimulatedCamera needs driver 'simulated', got {section.driver!r}")
        self._section = section
        self._bus = bus
        self._clock = clock
        self._rng = rng or random.Random()
        self._states = camera_states(name, bus, clock)
        self._period = 1.0 / section.fps
        self._scenes: collections.deque[_Scene] = collections.deque()
        self._wake = asyncio.Event()
        self._running = False
        self._seq = 0
        self._published = 0
        self._size = (0, 0)
        self._last_frame: float | None = None
        self._lost: str | None = None

    @property
    def state(self) -> CameraState:
        return self._states.state

    @property
    def pending_frames(self) -> int:
        """Frames still queued by :meth:`show` calls."""
        return sum(s.frames - s.shown for s in self._scenes)

    def stats(self) -> CameraStats:
        last = self._last_frame
        return CameraStats(
            state=self.state.value,
            captured=self._published,
            published=self._published,
            dropped=0,
            width=self._size[0],
            height=self._size[1],
            last_frame_age_s=None if last is None else self._clock.monotonic() - last,
        )

    # ---- faults from a test -------------------------------------------------------------

    @property
    def lost(self) -> bool:
        """True between :meth:`lose` and :meth:`restore`: the source gives no frames."""
        return self._lost is not None

    async def lose(self, detail: str = "source lost") -> None:
        """The camera source fails (cable pulled): no frames, state ``reconnecting`` until restored.

        Scenes queued by :meth:`show` wait for :meth:`restore`. ``detail`` is
        published with the state change, so it must be safe to publish.
        """
        self._lost = detail
        self._states.set(CameraState.RECONNECTING, detail)

    async def restore(self) -> None:
        """The source is back: state ``streaming`` (if running) and frames flow again."""
        if self._lost is None:
            return
        self._lost = None
        if self._running:
            self._states.set(CameraState.STREAMING, f"{self._section.width}x{self._section.height}")
        self._wake.set()

    # ---- frames from a test -------------------------------------------------------------

    def push(self, image: npt.NDArray[Any], *, ir: npt.NDArray[Any] | None = None) -> FrameCaptured:
        """Publish one frame now (any time, running or not) and return the event.

        The array is copied and normalised to BGR uint8 (grey, BGRA and 16-bit
        are converted); an unusable array raises :class:`FrameFormatError`.
        """
        frame = to_bgr8(image, what="pushed frame")
        ir_frame = to_bgr8(ir, what="pushed IR frame") if ir is not None else None
        return self._publish(frame, ir_frame)

    async def show(
        self,
        what: ImageInput,
        *,
        frames: int | None = None,
        jitter: bool = True,
        ir: ImageInput | None = None,
    ) -> None:
        """Show an image file, array or video clip for ``frames`` frames; return when all are out.

        ``frames`` defaults to ``image_hold_s`` worth (a clip defaults to its
        length). ``ir`` is shown to the IR camera with the same motion. Raises
        :class:`CameraSourceError` / :class:`FrameFormatError` for bad input and
        :class:`CameraNotRunningError` if the camera is not running or stops first.
        """
        if frames is not None and frames < 1:
            raise ValueError("frames must be >= 1")
        if not self._running:
            raise CameraNotRunningError(f"{self.name} is not running")
        images = await asyncio.to_thread(self._load, what)
        irs = await asyncio.to_thread(self._load, ir) if ir is not None else None
        if frames is None:
            frames = len(images) if len(images) > 1 else self._hold_frames()
        scene = _Scene(
            images=images,
            irs=irs,
            frames=frames,
            jitter=Jitter(random.Random(self._rng.random())) if jitter else None,
            done=asyncio.get_running_loop().create_future(),
        )
        if not self._running:
            raise CameraNotRunningError(f"{self.name} stopped")
        self._scenes.append(scene)
        self._wake.set()
        await scene.done

    def _load(self, what: ImageInput) -> list[Image]:
        w, h = self._section.width, self._section.height
        if isinstance(what, np.ndarray):
            return [letterbox(to_bgr8(what, what="shown image"), w, h)]
        if not isinstance(what, str | Path):
            raise FrameFormatError(f"cannot show a {type(what).__name__}")
        path = Path(what)
        if not path.is_file():
            raise CameraSourceError("no such file", path=path)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return _read_video(path, w, h, MAX_CLIP_FRAMES)
        return [letterbox(decode_image_file(path), w, h)]

    def _hold_frames(self) -> int:
        return max(1, round(self._section.image_hold_s * self._section.fps))

    # ---- the player -----------------------------------------------------------------------

    async def run(self) -> None:
        """Play frames until cancelled; a bad config file is retried, never raised."""
        self._running = True
        playlist = _Playlist()
        try:
            self._states.set(CameraState.CONNECTING, "simulated")
            playlist = await self._open_playlist()
            self._states.set(CameraState.STREAMING, f"{self._section.width}x{self._section.height}")
            while True:
                produced = await self._next_frame(playlist)
                if produced is None:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                image, ir, finished = produced
                self._publish(image, ir)
                if finished is not None and not finished.done():
                    finished.set_result(None)
                await self._clock.sleep(self._period)
        finally:
            self._running = False
            while self._scenes:
                scene = self._scenes.popleft()
                if not scene.done.done():
                    scene.done.set_exception(CameraNotRunningError(f"{self.name} stopped"))
            if playlist.video is not None:
                playlist.video.release()
            self._states.set(CameraState.STOPPED)

    async def _open_playlist(self) -> _Playlist:
        """Decode config images (or open the video) off the loop, retrying with backoff."""
        section = self._section
        backoff = Backoff(section.reconnect_base_s, section.reconnect_cap_s, self._rng)
        while True:
            try:
                return await asyncio.to_thread(self._build_playlist)
            except (CameraSourceError, FrameFormatError) as exc:
                # The message names the config entry, never the file or its content.
                self._states.set(CameraState.RECONNECTING, str(exc))
                await self._clock.sleep(backoff.next_delay())

    def _build_playlist(self) -> _Playlist:
        section = self._section
        playlist = _Playlist(hold=self._hold_frames())
        if section.images:
            for i, path in enumerate(section.images):
                try:
                    image = decode_image_file(path)
                except (CameraSourceError, FrameFormatError) as exc:
                    # Name the config entry, not the file: file names can be people's names.
                    raise CameraSourceError(f"images[{i}]: {exc}", path=path) from None
                playlist.images.append(letterbox(image, section.width, section.height))
            playlist.jitter = Jitter(random.Random(self._rng.random())) if section.jitter else None
        elif section.video is not None:
            if not section.video.is_file():
                raise CameraSourceError("video: no such file", path=section.video)
            cap = cv2.VideoCapture(str(section.video), cv2.CAP_FFMPEG)
            if not cap.isOpened():
                cap.release()
                raise CameraSourceError("video: not a playable file", path=section.video)
            playlist.video = cap
        else:
            playlist.finished = True  # nothing to play until show() or push()
        return playlist

    async def _next_frame(
        self, playlist: _Playlist
    ) -> tuple[Image, Image | None, asyncio.Future[None] | None] | None:
        if self._lost is not None:
            return None
        if self._scenes:
            scene = self._scenes[0]
            i = scene.shown % len(scene.images)
            image = scene.images[i]
            ir = scene.irs[min(i, len(scene.irs) - 1)] if scene.irs else None
            scene.shown += 1
            finished = None
            if scene.shown >= scene.frames:
                self._scenes.popleft()
                finished = scene.done
            if scene.jitter is not None:
                image, ir = await self._warp(image, ir, scene.jitter.next_pose())
            return image, ir, finished
        if playlist.finished:
            return None
        if playlist.video is not None:
            raw = await asyncio.to_thread(self._read_playlist_video, playlist)
            return None if raw is None else (raw, None, None)
        image = playlist.images[playlist.index]
        playlist.held += 1
        if playlist.held >= playlist.hold:
            playlist.held = 0
            playlist.index = (playlist.index + 1) % len(playlist.images)
        if playlist.jitter is not None:
            image, _ = await self._warp(image, None, playlist.jitter.next_pose())
        return image, None, None

    def _read_playlist_video(self, playlist: _Playlist) -> Image | None:
        s = self._section
        for _ in range(2):  # at most one rewind per frame: an empty file must not spin
            ok, raw = playlist.video.read()
            if ok and raw is not None:
                return letterbox(to_bgr8(raw, what="video frame"), s.width, s.height)
            if not s.loop or not playlist.video.set(cv2.CAP_PROP_POS_FRAMES, 0):
                break
        playlist.finished = True
        _log.info("camera.video_finished", component=self.name)
        return None

    @staticmethod
    async def _warp(image: Image, ir: Image | None, pose: Pose) -> tuple[Image, Image | None]:
        def work() -> tuple[Image, Image | None]:
            return apply_pose(image, pose), (apply_pose(ir, pose) if ir is not None else None)

        return await asyncio.to_thread(work)

    def _publish(self, image: Image, ir: Image | None) -> FrameCaptured:
        self._seq += 1
        self._published += 1
        now = self._clock.monotonic()
        self._last_frame = now
        self._size = (image.shape[1], image.shape[0])
        event = FrameCaptured(
            at=self._clock.wall(), image=image, seq=self._seq, source=self.name, monotonic=now, ir=ir
        )
        self._bus.publish(event)
        return event

