"""Multi-frame decisions over tracked faces (steps 7-8 of the pipeline).

Every face a frame reports (the gate's target and, with
``max_faces`` > 1, the bystanders: ``pipeline.FrameFaces``) belongs to a track
(``tracking.py``: overlap with the predicted box, then centre distance), and
each track has its own decision. A track is **at the door** while its face is
the one the gate rule (``selection.py``) picks; only decisions taken while at
the door carry ``at_door = True``, and only those can open the door. A track
decided as a bystander that then becomes the gate's face is decided again at
once (its cool-down does not delay the person who steps up). A track that no
frame matches for ``track_lost_s`` ends.

Rules, evaluated per track after every frame and on every tick:

- ``granted``: k usable frames within ``window_s`` agree on the same subject
  with score >= threshold (and margin >= ``min_margin``), and the stillness
  check over those frames passes. With the adaptive rule (``adaptive.py``)
  k is ``fast_k`` on strong evidence and ``weak_k`` on weak evidence.
- ``denied``: the same, but the confirmation frames are perfectly still
  (``liveness_still``), or k frames in the window failed a frame liveness
  check (e.g. ``liveness_ir_missing``).
- ``unknown``: ``unknown_k`` usable frames in the window scored below the
  threshold and were not still.
- ``undecided``: none of the above by ``deadline_s`` after the track began,
  or the track was lost first; the reason is the most frequent frame failure.

A track is decided once; after ``cooldown_s`` it may be decided again.
A decided track in its cool-down skips its analysis after selection
(:meth:`DecisionEngine.hold`), per track.
The published :class:`AccessDecision` never carries the image or embedding.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ...runtime.config.recognition import DecisionSettings
from ...runtime.events import AccessDecision, Decision, StageResult
from .adaptive import required_frames
from .liveness import StillnessCheck, iou
from .pipeline import FrameAnalysis, FrameFaces, SkipIf
from .reasons import Reason
from .thresholds import ThresholdPolicy
from .tracking import Tracker

_LIVENESS_FAIL = {Reason.LIVENESS_IR_MISSING, Reason.LIVENESS_PAD}


@dataclass(slots=True)
class _Obs:
    t: float
    analysis: FrameAnalysis


@dataclass(slots=True)
class _Track:
    id: int
    started: float
    last_seen: float
    box: tuple[float, float, float, float]
    frames: collections.deque[_Obs] = field(default_factory=lambda: collections.deque(maxlen=64))
    decided_at: float | None = None
    at_door: bool = True
    """Its face was the gate's target in the track's latest frame."""
    decided_at_door: bool = True
    """The last decision was taken while at the door."""


class DecisionEngine:
    """Turns per-frame analyses into AccessDecision events (pure logic, clock-free)."""

    def __init__(
        self,
        settings: DecisionSettings,
        thresholds: ThresholdPolicy,
        stillness: StillnessCheck | None,
        *,
        model_id: str,
        enrolled: Callable[[str], bool] | None = None,
    ) -> None:
        """``enrolled(subject_id)`` says whether the subject is still in the matcher *now*.

        A frame's search may have run (in a worker thread) before a concurrent
        ``remove_subject``; votes for a subject no longer enrolled are discarded
        when the decision is taken, so an erased subject is never granted after
        its removal returned.
        """
        self.settings = settings
        self.thresholds = thresholds
        self.stillness = stillness
        self.model_id = model_id
        self._enrolled = enrolled
        self._tracks: dict[int, _Track] = {}
        self._tracker = Tracker(min_iou=settings.track_iou)
        self.door_track: int | None = None
        """The track of the gate's target in the last frame observed (None: no target)."""

    @property
    def tracking(self) -> bool:
        return bool(self._tracks)

    @property
    def tracks(self) -> int:
        """Live tracks (faces followed now)."""
        return len(self._tracks)

    def hold(self, now: float) -> SkipIf | None:
        """A predicate for a frame taken at ``now``: is this face in a decided, cooling-down track?

        ``hold(now)(face, at_door)``. A snapshot of the tracks (safe to call in a
        worker thread); None when no track is decided, so the frame must be
        analysed in full. A track decided as a bystander is not held when its
        face is now the gate's target: it is decided again, at the door.
        """
        s = self.settings
        held = [
            (box, tr.decided_at_door)
            for tid, box in self._tracker.predicted(now).items()
            if (tr := self._tracks.get(tid)) is not None and tr.decided_at is not None
            and now - tr.decided_at < s.cooldown_s and now - tr.last_seen <= s.track_lost_s
        ]
        if not held:
            return None
        return lambda d, at_door: any(
            iou(box, d.box) >= s.track_iou and (door or not at_door) for box, door in held)

    def observe(self, a: FrameAnalysis, now: float, wall: float) -> list[AccessDecision]:
        """Feed the gate face's analysis of one frame taken at monotonic ``now``."""
        return self.observe_frame(FrameFaces(a), now, wall)

    def observe_frame(self, ff: FrameFaces, now: float, wall: float) -> list[AccessDecision]:
        """Feed every face of one frame (``FrameFaces``); returns the decisions it completes."""
        out = self._expire(now, wall)
        faces = ff.faces
        self.door_track = None
        if not faces:
            out += self.tick(now, wall)
            return out
        boxes = [a.target.box for a, _ in faces if a.target is not None]
        ids = self._tracker.assign(boxes, now)
        for (a, at_door), tid in zip(faces, ids, strict=True):
            assert a.target is not None
            tr = self._tracks.get(tid)
            if tr is None:
                tr = self._tracks[tid] = _Track(id=tid, started=now, last_seen=now, box=a.target.box)
            tr.last_seen, tr.box, tr.at_door = now, a.target.box, at_door
            if at_door:
                self.door_track = tid
            if tr.decided_at is not None:
                # A bystander's decision never stands for the door: decide again, on door frames.
                promoted = at_door and not tr.decided_at_door
                if now - tr.decided_at < self.settings.cooldown_s and not promoted:
                    continue
                tr.decided_at, tr.started = None, now
                tr.frames.clear()
            if a.skipped:
                continue
            tr.frames.append(_Obs(now, a))
            d = self._evaluate(tr, now, wall)
            if d is not None:
                out.append(d)
        return out

    def tick(self, now: float, wall: float) -> list[AccessDecision]:
        """Apply deadlines and track loss when frames stop coming."""
        out = self._expire(now, wall)
        for tr in list(self._tracks.values()):
            if tr.decided_at is None and now - tr.started >= self.settings.deadline_s:
                out.append(self._undecided(tr, wall, Reason.DEADLINE, now))
        return out

    # -- rules --------------------------------------------------------------
    def _expire(self, now: float, wall: float) -> list[AccessDecision]:
        out: list[AccessDecision] = []
        for tr in list(self._tracks.values()):
            if now - tr.last_seen > self.settings.track_lost_s:
                out += self._end(tr, wall, Reason.TRACK_LOST)
        return out

    def _end(self, tr: _Track, wall: float, reason: Reason) -> list[AccessDecision]:
        self._tracks.pop(tr.id, None)
        self._tracker.drop(tr.id)
        if tr.decided_at is None and tr.frames:
            return [self._undecided(tr, wall, reason, tr.last_seen)]
        return []

    def _window(self, tr: _Track, now: float) -> list[_Obs]:
        return [o for o in tr.frames if now - o.t <= self.settings.window_s]

    def _evaluate(self, tr: _Track, now: float, wall: float) -> AccessDecision | None:
        s = self.settings
        window = self._window(tr, now)
        usable = [o for o in window if o.analysis.usable and o.analysis.search is not None]
        gallery = usable[-1].analysis.search.subjects if usable and usable[-1].analysis.search else 0
        threshold = self.thresholds.threshold(gallery)
        live_fail = [o for o in window if o.analysis.reason in _LIVENESS_FAIL]
        if len(live_fail) >= s.k:
            return self._decide(tr, live_fail[-s.k:], Decision.DENIED,
                                Reason(live_fail[-1].analysis.reason),
                                threshold=threshold, wall=wall, now=now)
        votes: dict[str, list[_Obs]] = collections.defaultdict(list)
        below: list[_Obs] = []
        for o in usable:
            res = o.analysis.search
            assert res is not None
            best, second = res.best, res.runner_up
            margin = best.score - (second.score if second else -1.0) if best else 0.0
            if best is not None and self._enrolled is not None and not self._enrolled(best.subject_id):
                continue  # searched before the subject was removed: a stale vote, never a grant
            if best is not None and best.score >= threshold and margin >= s.min_margin:
                votes[best.subject_id].append(o)
            else:
                below.append(o)
        for frames in votes.values():
            need = required_frames(s, [o.analysis for o in frames], threshold,
                                   liveness_failed=bool(live_fail))
            if len(frames) >= need:
                return self._confirm(tr, frames[-need:], Decision.GRANTED, Reason.MATCH,
                                     threshold=threshold, wall=wall, now=now)
        if len(below) >= s.unknown_k:
            reason = Reason.EMPTY_GALLERY if gallery == 0 else Reason.NO_MATCH
            return self._confirm(tr, below[-s.unknown_k:], Decision.UNKNOWN, reason,
                                 threshold=threshold, wall=wall, now=now)
        return None

    def _still(self, frames: list[_Obs]) -> StageResult | None:
        if self.stillness is None:
            return None
        crops = [o.analysis.crop_grey for o in frames if o.analysis.crop_grey is not None]
        lms: list[npt.NDArray[np.float32]] = []
        sizes: list[float] = []
        for o in frames:
            t = o.analysis.target
            assert t is not None
            lms.append(t.landmarks)
            sizes.append(max(t.box[2], t.box[3]))
        return self.stillness.evaluate(lms, sizes, crops)

    def _confirm(
        self, tr: _Track, frames: list[_Obs], decision: Decision, reason: Reason,
        *, threshold: float, wall: float, now: float,
    ) -> AccessDecision:
        still = self._still(frames)
        if still is not None and not still.passed:
            return self._decide(tr, frames, Decision.DENIED, Reason.LIVENESS_STILL,
                                threshold=threshold, wall=wall, now=now, extra=(still,))
        extra = (still,) if still is not None else ()
        return self._decide(tr, frames, decision, reason, threshold=threshold, wall=wall, now=now,
                            extra=extra)

    def _undecided(self, tr: _Track, wall: float, reason: Reason, now: float) -> AccessDecision:
        fails = collections.Counter(
            o.analysis.reason for o in tr.frames if o.analysis.reason is not Reason.OK
        )
        why = fails.most_common(1)[0][0] if fails else reason
        frames = list(tr.frames)[-max(1, self.settings.k):]
        gallery = next(
            (o.analysis.search.subjects for o in reversed(tr.frames) if o.analysis.search), 0
        )
        return self._decide(tr, frames, Decision.UNDECIDED, why,
                            threshold=self.thresholds.threshold(gallery), wall=wall, now=now)

    def _decide(
        self, tr: _Track, frames: list[_Obs], decision: Decision, reason: Reason,
        *, threshold: float, wall: float, now: float, extra: tuple[StageResult, ...] = (),
    ) -> AccessDecision:
        tr.decided_at, tr.decided_at_door = now, tr.at_door
        last = frames[-1].analysis if frames else None
        res = last.search if last is not None else None
        best = res.best if res else None
        second = res.runner_up if res else None
        # Report the subject only when it is the answer; an unknown face names nobody.
        subject = best.subject_id if decision is Decision.GRANTED and best else None
        if decision is Decision.GRANTED:
            scores = [o.analysis.search.best.score for o in frames
                      if o.analysis.search and o.analysis.search.best]
            score: float | None = round(float(np.median(scores)), 4)
        else:
            score = round(best.score, 4) if best else None
        runner = round(second.score, 4) if second else None
        latency: dict[str, list[float]] = collections.defaultdict(list)
        for o in frames:
            for k, v in o.analysis.latency_ms.items():
                latency[k].append(v)
        return AccessDecision(
            at=wall,
            event_id=uuid.uuid4().hex,
            decision=decision,
            reason=str(reason),
            subject_id=subject,
            score=score,
            runner_up=runner,
            margin=round(score - runner, 4) if score is not None and runner is not None else None,
            threshold=threshold,
            quality=last.quality if last else (),
            liveness=(last.liveness if last else ()) + extra,
            model_id=self.model_id,
            gallery_size=res.subjects if res else 0,
            latency_ms=tuple((k, round(float(np.median(v)), 2)) for k, v in latency.items()),
            frames=len(frames),
            track_id=tr.id,
            decision_ms=round((now - tr.started) * 1e3, 1),
            at_door=tr.at_door,
        )
