"""The OpenCV ``VideoCapture`` camera: V4L2 device, video file or RTSP/HTTP/MJPEG URL.

Publishes :class:`~facegate.runtime.events.FrameCaptured` on the bus for every
frame the event loop takes from the capture thread (latest wins), and
:class:`~facegate.runtime.events.ComponentStateChanged` once per state change.
With an ``[camera.ir]`` section a second capture runs for the IR camera; its
frames are attached as ``ir`` to the colour frame nearest in capture time.
A source that fails is retried with capped, jittered backoff forever: the
camera never crashes the device.
"""

from __future__ import annotations

import asyncio
import random

from ...runtime.backoff import Backoff
from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.config.hardware import CameraSection
from ...runtime.events import FrameCaptured
from .base import CameraService, CameraStats
from .capture import CaptureLoop
from .errors import CameraSourceError
from .frames import CapturedFrame, IrPairer
from .source import CaptureOpener, open_capture, parse_source
from .state import CameraState


class OpenCVCamera(CameraService):
    """A :class:`~facegate.runtime.service.Service` capturing from ``section.source``.

    ``opener`` is the lowest seam (default :func:`open_capture`, the real
    ``cv2.VideoCapture``); ``rng`` seeds the reconnect jitter. Raises
    :class:`CameraSourceError` at construction for a source that can never
    work (e.g. ``/dev/sda``); a source that is merely absent right now is retried.
    """

    def __init__(
        self,
        section: CameraSection,
        bus: EventBus,
        clock: Clock,
        *,
        name: str = "camera",
        opener: CaptureOpener = open_capture,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(name)
        if section.driver != "opencv":
            raise CameraSourceError(f"OpenCVCamera needs driver 'opencv', got {section.driver!r}")
        self._section = section
        self._bus = bus
        self._clock = clock
        rng = rng or random.Random()
        self._published = 0
        self._size = (0, 0)
        self._pairer: IrPairer | None = None
        self._ir: CaptureLoop | None = None
        self._colour = CaptureLoop(
            component=name,
            target=parse_source(section.source),
            settings=section,
            backoff=Backoff(section.reconnect_base_s, section.reconnect_cap_s, rng),
            bus=bus,
            clock=clock,
            sink=self._on_colour,
            opener=opener,
        )
        if section.ir is not None:
            self._pairer = IrPairer(section.ir.pair_tolerance_s)
            self._ir = CaptureLoop(
                component=f"{name}.ir",
                target=parse_source(section.ir.source),
                settings=section.ir,
                backoff=Backoff(section.reconnect_base_s, section.reconnect_cap_s, rng),
                bus=bus,
                clock=clock,
                sink=self._pairer.add,
                opener=opener,
            )

    @property
    def state(self) -> CameraState:
        return self._colour.states.state

    @property
    def ir_state(self) -> CameraState | None:
        """State of the IR camera, None without one."""
        return self._ir.states.state if self._ir is not None else None

    @property
    def source_label(self) -> str:
        """The source as it may be logged (URL credentials masked)."""
        return self._colour.target.label

    def _on_colour(self, frame: CapturedFrame) -> None:
        ir = self._pairer.match(frame.monotonic) if self._pairer is not None else None
        self._size = (frame.image.shape[1], frame.image.shape[0])
        self._published += 1
        self._bus.publish(
            FrameCaptured(
                at=frame.wall,
                image=frame.image,
                seq=frame.seq,
                source=self.name,
                monotonic=frame.monotonic,
                ir=ir,
            )
        )

    def stats(self) -> CameraStats:
        slot = self._colour.slot
        last = self._colour.last_frame_monotonic
        return CameraStats(
            state=self.state.value,
            captured=slot.captured if slot else 0,
            published=self._published,
            dropped=slot.dropped if slot else 0,
            reconnects=self._colour.reconnects,
            stalls=self._colour.stalls,
            width=self._size[0],
            height=self._size[1],
            last_frame_age_s=(self._clock.monotonic() - last) if self._published else None,
            ir_state=self.ir_state.value if self.ir_state is not None else None,
            ir_paired=self._pairer.paired if self._pairer else 0,
            ir_unpaired=self._pairer.unpaired if self._pairer else 0,
        )

    async def run(self) -> None:
        """Capture (and pair IR) until cancelled; source failures never escape."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._colour.run(), name=f"{self.name}.colour")
            if self._ir is not None:
                tg.create_task(self._ir.run(), name=f"{self.name}.ir")
