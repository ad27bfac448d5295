"""``RecognitionService``: camera frames in, AccessDecision events out.

Subscribes to :class:`FrameCaptured` with a one-slot latest-wins queue, so a
slow CPU always works on the newest frame and never on a backlog. Each frame
is analysed in a worker thread (ONNX never blocks the loop); the
:class:`DecisionEngine` turns analyses into decisions. A second named task
ticks the deadlines with the injected clock, so ``undecided`` arrives on time
even when the camera stops sending frames.

Several faces per frame (issue 16): up to ``decision.max_faces`` faces are
analysed per frame, each on its own track with its own decision. Decisions
about the gate's target (``at_door``) are authorised and published as
before; the others (bystanders) are counted (``bystander_decisions``) and,
with ``decision.bystanders = "report"``, published with ``at_door = False``
(never ``undecided``: a face walking past in profile is not news). A
bystander decision never gets a snapshot.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

import cv2
import numpy as np
import numpy.typing as npt
import structlog

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.errors import FacegateError
from ...runtime.events import AccessDecision, Decision, FrameCaptured
from .decision import DecisionEngine
from .engine import RecognitionEngine
from .framediff import FrameDiff
from .pipeline import FrameFaces, SkipIf

_log = structlog.get_logger("facegate.recognition")

SnapshotSink = Callable[[AccessDecision, bytes], Awaitable[None]]
Authorise = Callable[[AccessDecision], Awaitable[AccessDecision]]
"""Authorisation after identification: returns the decision to publish (see handlers/access)."""
"""Receives the JPEG face crop of the frame that produced a decision. Only the
privacy policy installs one, and only when ``privacy.decision_snapshots`` is on."""


def face_crop_jpeg(image: npt.NDArray[np.uint8], box: tuple[float, float, float, float]) -> bytes:
    """The face box (with a 20% margin) of ``image`` as JPEG bytes. Blocking: run off the loop."""
    x, y, w, h = box
    mx, my = 0.2 * w, 0.2 * h
    height, width = image.shape[:2]
    x0, y0 = max(0, int(x - mx)), max(0, int(y - my))
    x1, y1 = min(width, int(x + w + mx)), min(height, int(y + h + my))
    ok, buf = cv2.imencode(".jpg", image[y0:y1, x0:x1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("JPEG encoding of the face crop failed")
    return bytes(buf)


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
        snapshot_sink: SnapshotSink | None = None,
        authorise: Authorise | None = None,
        gate: Callable[[], bool] | None = None,
        unchanged_threshold: float = 0.15,
    ) -> None:
        self._engine = engine
        self._authorise = authorise
        self._gate = gate
        """When set and False (no usable licence), frames are dropped unanalysed."""
        self._snapshot_sink = snapshot_sink
        self._bus = bus
        self._clock = clock
        self._name = name
        self._tick_s = tick_s
        self.decider = DecisionEngine(
            engine.cfg.decision, engine.thresholds, engine.stillness, model_id=engine.model_id,
            enrolled=engine.matcher.has_subject,
        )
        self.frames_analysed = 0
        self.frames_unchanged = 0
        """Frames equal to the last analysed one (framediff.py): its analysis was reused."""
        self.frames_skipped_decided = 0
        """Frames whose face's track was decided: analysis stopped after selection."""
        self.faces_analysed = 0
        """Faces analysed (gate target and bystanders; skipped and reused ones not counted)."""
        self.bystander_decisions = 0
        """Decisions about faces that were not the gate's target (published only in 'report')."""
        self._diff = FrameDiff(unchanged_threshold)
        self._last: FrameFaces | None = None
        self.frames_gated = 0
        self.reasons: collections.Counter[str] = collections.Counter()
        self._ready = asyncio.Event()

    @property
    def name(self) -> str:
        return self._name

    def health(self) -> dict[str, int | float | str | bool | None]:
        """Counts only: frames analysed and gallery size."""
        return {
            "loaded": True,
            "frames_analysed": self.frames_analysed,
            "gallery_templates": len(self._engine.matcher),
            "gallery_subjects": self._engine.matcher.subject_count,
            "faces_analysed": self.faces_analysed,
            "tracks": self.decider.tracks,
            "bystander_decisions": self.bystander_decisions,
        }

    async def wait_ready(self) -> None:
        """Return once the frame subscription exists (frames published before are not seen)."""
        await self._ready.wait()

    async def _authorised(self, decisions: list[AccessDecision]) -> list[AccessDecision]:
        """Bystanders counted (and dropped unless reported), then authorisation when configured."""
        report = self._engine.cfg.decision.bystanders == "report"
        kept: list[AccessDecision] = []
        for d in decisions:
            if not d.at_door:
                self.bystander_decisions += 1
                if not report or d.decision is Decision.UNDECIDED:
                    continue
            kept.append(d)
        if self._authorise is None or not kept:
            return kept
        return [await self._authorise(d) for d in kept]

    def _publish(self, decisions: list[AccessDecision]) -> None:
        for d in decisions:
            # Ids, codes and numbers only: never an image, embedding or name.
            _log.info(
                "recognition.decision", decision=str(d.decision), reason=d.reason,
                subject_id=d.subject_id, score=d.score, threshold=d.threshold,
                track_id=d.track_id, frame_count=d.frames, gallery_size=d.gallery_size,
                at_door=d.at_door,
            )
            self._bus.publish(d)

    async def _frames(self) -> None:
        async with self._bus.subscribe(
            FrameCaptured, name=f"{self._name}.frames", maxsize=1
        ) as sub:
            self._ready.set()
            async for ev in sub:
                if self._gate is not None and not self._gate():
                    self.frames_gated += 1
                    continue
                analysis = await asyncio.to_thread(
                    self._analyse, ev.image, ev.ir, self.decider.hold(ev.monotonic)
                )
                self.frames_analysed += 1
                self.reasons[str(analysis.door.reason)] += 1
                decisions = self.decider.observe_frame(analysis, ev.monotonic, self._clock.wall())
                decisions = await self._authorised(decisions)
                self._publish(decisions)
                # The crop shows this frame's gate face: only for decisions about its track.
                door = [d for d in decisions if d.at_door and d.track_id == self.decider.door_track]
                target = analysis.door.target
                if door and self._snapshot_sink is not None and target is not None:
                    await self._snapshot(door, ev.image, target.box)

    def _analyse(
        self,
        image: npt.NDArray[np.uint8],
        ir: npt.NDArray[np.uint8] | None,
        hold: SkipIf | None,
    ) -> FrameFaces:
        """Worker thread (one frame at a time): skip what cannot change the decision."""
        prev = self._last
        if (ir is None and prev is not None
                and not any(a.skipped for a, _ in prev.faces)
                and self._diff.unchanged(image, prev.door.target.box if prev.door.target else None)):
            self.frames_unchanged += 1
            return prev
        analysis = self._engine.pipeline.analyse_all(
            image, ir, skip_if=hold, max_faces=self._engine.cfg.decision.max_faces)
        if analysis.door.skipped:
            self.frames_skipped_decided += 1
        self.faces_analysed += sum(1 for a, _ in analysis.faces if not a.skipped)
        self._diff.remember(image)
        self._last = analysis
        return analysis

    async def _snapshot(
        self,
        decisions: list[AccessDecision],
        image: npt.NDArray[np.uint8],
        box: tuple[float, float, float, float],
    ) -> None:
        assert self._snapshot_sink is not None
        crop = await asyncio.to_thread(face_crop_jpeg, image, box)
        for decision in decisions:
            try:
                await self._snapshot_sink(decision, crop)
            except FacegateError as exc:
                # A snapshot is optional evidence: losing one must not stop recognition.
                _log.warning("recognition.snapshot_failed", error=type(exc).__name__)

    async def _deadlines(self) -> None:
        while True:
            await self._clock.sleep(self._tick_s)
            decisions = self.decider.tick(self._clock.monotonic(), self._clock.wall())
            self._publish(await self._authorised(decisions))

    async def run(self) -> None:
        """Run until cancelled; a crash propagates to the supervisor."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._frames(), name=f"{self._name}.frames")
                tg.create_task(self._deadlines(), name=f"{self._name}.deadlines")
        finally:
            self._ready.clear()
