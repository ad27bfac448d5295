"""The OpenCV capture machinery: a reader thread per session, a latest-wins hand-off, reconnects.

A *session* is one open -> read ... -> close cycle of a source, run in its own
daemon thread because ``cv2.VideoCapture`` blocks. Frames go into a
:class:`LatestSlot`: the thread overwrites the slot (counting the overwritten
frame as dropped) and wakes the loop with ``call_soon_threadsafe`` at most once
per pending frame, so the event loop never holds a backlog of stale frames.

:class:`CaptureLoop` runs on the event loop: it starts sessions, tracks the
:class:`~facegate.drivers.camera.state.CameraState`, waits a capped, jittered
backoff (injected clock) between failed sessions, and runs a watchdog on the
time since the last frame so a stalled stream is cut even when the backend has
no read timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import structlog

from ...runtime.backoff import Backoff
from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.config.hardware import CaptureSettings
from .errors import FrameFormatError
from .frames import CapturedFrame, Image, fit_within, freeze, to_bgr8
from .source import Capture, CaptureOpener, CaptureTarget, SourceKind
from .state import CameraState, camera_states

_log = structlog.get_logger("facegate.camera")

END_OF_FILE = "end of file"
_JOIN_CAP_S = 3.0


class LatestSlot:
    """A one-frame mailbox from a capture thread to the event loop (latest wins)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[CapturedFrame], None]):
        self._loop = loop
        self._sink = sink
        self._lock = threading.Lock()
        self._frame: CapturedFrame | None = None
        self._scheduled = False
        self.captured = 0
        self.dropped = 0
        self.delivered = 0

    def put(self, image: Image, monotonic: float, wall: float) -> bool:
        """Offer a frame (capture thread). Returns False once the loop is closed."""
        with self._lock:
            self.captured += 1
            if self._frame is not None:
                self.dropped += 1
            self._frame = CapturedFrame(image=image, seq=self.captured, monotonic=monotonic, wall=wall)
            if self._scheduled:
                return True
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # loop closed under a thread that outlived shutdown
            return False
        return True

    def _drain(self) -> None:
        with self._lock:
            frame, self._frame, self._scheduled = self._frame, None, False
        if frame is not None:
            self.delivered += 1
            self._sink(frame)


class _Session:
    """One open/read/close cycle in a daemon thread; results come back as loop futures."""

    def __init__(
        self,
        *,
        name: str,
        target: CaptureTarget,
        settings: CaptureSettings,
        opener: CaptureOpener,
        clock: Clock,
        slot: LatestSlot,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._target = target
        self._settings = settings
        self._opener = opener
        self._clock = clock
        self._slot = slot
        self._loop = loop
        self.stop = threading.Event()
        self.opened: asyncio.Future[tuple[int, int] | None] = loop.create_future()
        self.ended: asyncio.Future[str] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.frames = 0
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def _post(self, fut: asyncio.Future[Any], value: object) -> None:
        def _set() -> None:
            if not fut.done():
                fut.set_result(value)

        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody is waiting
            self._loop.call_soon_threadsafe(_set)

    def abort(self, reason: str) -> None:
        """Ask the thread to stop (loop side); ``ended`` resolves at once with ``reason``."""
        self.stop.set()
        if not self.ended.done():
            self.ended.set_result(reason)

    def _main(self) -> None:
        cap = None
        try:
            cap = self._opener(self._target, self._settings)
            if cap is None:
                self._post(self.opened, None)
                self._post(self.ended, "cannot open")
                return
            size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            self._post(self.opened, size)
            self._post(self.ended, self._read_loop(cap))
        except Exception as exc:  # noqa: BLE001  # a cv2.error must end the session, not the thread silently
            self._post(self.opened, None)
            self._post(self.ended, f"capture error: {type(exc).__name__}")
        finally:
            if cap is not None:
                with contextlib.suppress(Exception):  # releasing a broken capture may raise cv2.error
                    cap.release()
            self._post(self.done, None)

    def _read_loop(self, cap: Capture) -> str:
        settings, target = self._settings, self._target
        # Pacing is real time on purpose: this thread runs at the source's speed.
        period = 1.0 / settings.fps if target.paced else 0.0
        due = time.monotonic()
        pass_frames = 0
        while not self.stop.is_set():
            ok, raw = cap.read()
            if self.stop.is_set():
                return "stopped"
            if not ok or raw is None:
                if target.kind is SourceKind.FILE:
                    if settings.loop and pass_frames > 0 and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                        pass_frames = 0
                        continue
                    return END_OF_FILE
                return "read failed"
            try:
                image = self._normalise(raw)
            except FrameFormatError:
                return "unusable frame"
            pass_frames += 1
            self.frames += 1
            if not self._slot.put(image, self._clock.monotonic(), self._clock.wall()):
                return "event loop closed"
            if period:
                due += period
                now = time.monotonic()
                if due < now - period:  # fell behind (slow decode): do not burst to catch up
                    due = now
                self.stop.wait(max(0.0, due - now))
        return "stopped"

    def _normalise(self, raw: npt.NDArray[Any]) -> Image:
        if raw.dtype == np.uint8 and raw.ndim == 3 and raw.shape[2] == 3 and raw.flags.c_contiguous:
            image: Image = freeze(raw)  # the common case: a fresh array from cv2, no copy
        else:
            image = to_bgr8(raw)
        return fit_within(image, self._settings.width, self._settings.height)


class CaptureLoop:
    """Runs sessions of one source until cancelled: state, backoff, watchdog, stats."""

    def __init__(
        self,
        *,
        component: str,
        target: CaptureTarget,
        settings: CaptureSettings,
        backoff: Backoff,
        bus: EventBus,
        clock: Clock,
        sink: Callable[[CapturedFrame], None],
        opener: CaptureOpener,
    ) -> None:
        self.component = component
        self.target = target
        self.settings = settings
        self.states = camera_states(component, bus, clock)
        self._backoff = backoff
        self._clock = clock
        self._sink = sink
        self._opener = opener
        self._slot: LatestSlot | None = None
        self._session: _Session | None = None
        self._stragglers: list[_Session] = []
        self._last_frame = 0.0
        self.size: tuple[int, int] | None = None
        self.reconnects = 0
        self.stalls = 0
        self.abandoned_threads = 0

    @property
    def slot(self) -> LatestSlot | None:
        """The frame hand-off (its counters feed ``stats()``); None before the first run."""
        return self._slot

    @property
    def last_frame_monotonic(self) -> float:
        """Injected-clock time the newest frame reached the loop (0.0 before any)."""
        return self._last_frame

    def _on_frame(self, frame: CapturedFrame) -> None:
        self._last_frame = self._clock.monotonic()
        self._sink(frame)

    async def run(self) -> None:
        """Capture until cancelled; never raises for source failures."""
        loop = asyncio.get_running_loop()
        if self._slot is None:
            self._slot = LatestSlot(loop, self._on_frame)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._sessions(loop), name=f"{self.component}.capture")
                tg.create_task(self._watchdog(), name=f"{self.component}.watchdog")
        finally:
            await self._retire_all()
            self.states.set(CameraState.STOPPED)

    async def _sessions(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._slot is not None
        first = True
        while True:
            self.states.set(
                CameraState.CONNECTING if first else CameraState.RECONNECTING, self.target.label
            )
            session = _Session(
                name=f"facegate-{self.component}",
                target=self.target,
                settings=self.settings,
                opener=self._opener,
                clock=self._clock,
                slot=self._slot,
                loop=loop,
            )
            self._session = session
            session.thread.start()
            # Real-time bound: a backend without an open timeout (or a hung driver) must not
            # leave the camera in 'connecting' forever.
            await asyncio.wait({session.opened}, timeout=self.settings.open_timeout_s + 1.0)
            size = session.opened.result() if session.opened.done() else None
            if not session.opened.done():
                session.abort("open timed out")
            if size is not None:
                self.size = size
                self._last_frame = self._clock.monotonic()
                self.states.set(CameraState.STREAMING, f"{size[0]}x{size[1]}")
            reason = await session.ended
            if reason == END_OF_FILE:
                await self._retire(session)
                self.states.set(CameraState.ENDED, END_OF_FILE)
                await asyncio.Event().wait()  # idle until cancelled: a finished file is not a fault
            # Report the failure before waiting for the old thread: a stalled read may hold it.
            self.states.set(CameraState.RECONNECTING, reason)
            await self._retire(session)
            if session.frames:
                self._backoff.reset()
            first = False
            self.reconnects += 1
            delay = self._backoff.next_delay()
            # Retries are logged at debug level only: the state change was logged once.
            _log.debug("camera.retry", component=self.component, reason=reason, delay_s=round(delay, 3))
            await self._clock.sleep(delay)

    async def _watchdog(self) -> None:
        period = max(0.05, self.settings.stall_timeout_s / 4)
        while True:
            await self._clock.sleep(period)
            session = self._session
            if (
                session is not None
                and self.states.state is CameraState.STREAMING
                and self._clock.monotonic() - self._last_frame > self.settings.stall_timeout_s
            ):
                self.stalls += 1
                session.abort("stalled")

    async def _retire(self, session: _Session) -> None:
        """Stop a session's thread and wait for it, bounded; a blocked thread is abandoned."""
        session.stop.set()
        bound = min(_JOIN_CAP_S, max(self.settings.open_timeout_s, self.settings.read_timeout_s) + 0.5)
        # Real-time bound on purpose: the thread runs in real time whatever the injected clock says.
        await asyncio.wait({session.done}, timeout=bound)
        if session.done.done():
            session.thread.join(timeout=0.5)  # it has posted its last message: exits at once
        if session.thread.is_alive():
            # A read blocked on a backend without a read timeout. The daemon thread
            # releases its capture when the read returns; a new session may start now.
            self.abandoned_threads += 1
            self._stragglers.append(session)
            _log.warning("camera.thread_abandoned", component=self.component, bound_s=bound)
        if self._session is session:
            self._session = None

    async def _retire_all(self) -> None:
        if self._session is not None:
            await self._retire(self._session)
        for straggler in list(self._stragglers):
            if straggler.thread.is_alive():
                await asyncio.to_thread(straggler.thread.join, 0.5)
            if not straggler.thread.is_alive():
                self._stragglers.remove(straggler)
