"""``RecognitionService``: camera frames in, AccessDecision events out.

Subscribes to :class:`FrameCaptured` with a one-slot latest-wins queue, so a
slow CPU always works on the newest frame and never on a backlog. Each frame
is analysed in a worker thread (ONNX never blocks the loop); the
:class:`DecisionEngine` turns analyses into decisions. A second named task
ticks the deadlines with the injected clock, so ``undecided`` arrives on time
even when the camera stops sending frames.
"""

from __future__ import annotations

import asyncio
import collections

import structlog

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.events import AccessDecision, FrameCaptured
from .decision import DecisionEngine
from .engine import RecognitionEngine
from .pipeline import FrameAnalysis

_log = structlog.get_logger("facegate.recognition")


class RecognitionService:
    """A supervised :class:`~facegate.runtime.service.Service` (name ``recognition``)."""

    def __init__(
        self,
        engine: RecognitionEngine,
        bus: EventBus,
        clock: Clock,
        *,
        name: str = "recognition",
        tick_s: float = 0.1,
    ) -> None:
        self._engine = engine
        self._bus = bus
        self._clock = clock
        self._name = name
        self._tick_s = tick_s
        self.decider = DecisionEngine(
            engine.cfg.decision, engine.thresholds, engine.stillness, model_id=engine.model_id
        )
        self.frames_analysed = 0
        self.reasons: collections.Counter[str] = collections.Counter()
        self._ready = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    async def wait_ready(self) -> None:
        """Return once the frame subscription exists (frames published before are not seen)."""
        await self._ready.wait()

    def _publish(self, decisions: list[AccessDecision]) -> None:
        for d in decisions:
            # Ids, codes and numbers only: never an image, embedding or name.
            _log.info(
                "recognition.decision", decision=str(d.decision), reason=d.reason,
                subject_id=d.subject_id, score=d.score, threshold=d.threshold,
                track_id=d.track_id, frame_count=d.frames, gallery_size=d.gallery_size,
            )
            self._bus.publish(d)

    async def _frames(self) -> None:
        async with self._bus.subscribe(
            FrameCaptured, name=f"{self._name}.frames", maxsize=1
        ) as sub:
            self._ready.set()
            async for ev in sub:
                analysis: FrameAnalysis = await asyncio.to_thread(
                    self._engine.pipeline.analyse, ev.image, ev.ir
                )
                self.frames_analysed += 1
                self.reasons[str(analysis.reason)] += 1
                self._publish(self.decider.observe(analysis, ev.monotonic, self._clock.wall()))

    async def _deadlines(self) -> None:
        while True:
            await self._clock.sleep(self._tick_s)
            self._publish(self.decider.tick(self._clock.monotonic(), self._clock.wall()))

    async def run(self) -> None:
        """Run until cancelled; a crash propagates to the supervisor."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._frames(), name=f"{self._name}.frames")
                tg.create_task(self._deadlines(), name=f"{self._name}.deadlines")
        finally:
            self._ready.clear()
