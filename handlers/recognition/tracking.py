"""Which face is which across frames: one track per face (issue 16).

Every face a frame's analysis reports (the face at the gate and the
bystanders) is matched to a live track, so each person keeps a track id and
their own decision (``decision.py``) from frame to frame. Pure logic, no clock:
the caller passes the frame time.

Matching, per frame:

1. **Prediction**: each track's box is moved by its velocity (centre motion
   per second, smoothed over frames) to the frame time, so two people who
   walk past each other are compared with where they are going, not where
   they were.
2. **Overlap**: (face, track) pairs with IoU of the face's box and the
   predicted box >= ``min_iou`` are taken greedily, highest IoU first; each
   face and each track is used at most once.
3. **Centre**: a face left over takes the nearest unused track whose
   predicted centre is within ``centre_frac`` of the face's size (a face that
   moved fast or changed size between two frames).
4. Anything else starts a new track with the next id (a per-process counter,
   never an identity).

A track that no frame matches keeps its id until the caller drops it
(``decision.py`` ends it after ``track_lost_s``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from .liveness import iou

Box = tuple[float, float, float, float]

_SMOOTH = 0.5
"""Weight of the newest velocity measurement (exponential smoothing)."""


@dataclass(slots=True)
class _State:
    box: Box
    t: float
    vx: float = 0.0
    vy: float = 0.0
    seen: int = 1

    def predicted(self, now: float) -> Box:
        dt = max(0.0, now - self.t)
        x, y, w, h = self.box
        return (x + self.vx * dt, y + self.vy * dt, w, h)

    def update(self, box: Box, now: float) -> None:
        dt = now - self.t
        if dt > 1e-6:
            vx = (box[0] + box[2] / 2 - self.box[0] - self.box[2] / 2) / dt
            vy = (box[1] + box[3] / 2 - self.box[1] - self.box[3] / 2) / dt
            if self.seen == 1:
                self.vx, self.vy = vx, vy
            else:
                self.vx += _SMOOTH * (vx - self.vx)
                self.vy += _SMOOTH * (vy - self.vy)
        self.box, self.t = box, now
        self.seen += 1


def _centre(b: Box) -> tuple[float, float]:
    return b[0] + b[2] / 2, b[1] + b[3] / 2


class Tracker:
    """Assigns the faces of each frame to tracks (see module docstring). Not thread-safe."""

    def __init__(self, *, min_iou: float = 0.3, centre_frac: float = 0.5) -> None:
        self.min_iou = min_iou
        self.centre_frac = centre_frac
        self._tracks: dict[int, _State] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._tracks)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._tracks

    def predicted(self, now: float) -> dict[int, Box]:
        """Every live track's box moved to ``now`` (a snapshot: safe to use in another thread)."""
        return {tid: st.predicted(now) for tid, st in self._tracks.items()}

    def assign(self, boxes: Sequence[Box], now: float) -> list[int]:
        """The track id of each box of one frame (new tracks for faces nobody had)."""
        pred = self.predicted(now)
        out: list[int | None] = [None] * len(boxes)
        pairs = sorted(
            ((iou(b, p), i, tid) for i, b in enumerate(boxes) for tid, p in pred.items()),
            key=lambda x: (-x[0], x[1], x[2]),
        )
        used: set[int] = set()
        for score, i, tid in pairs:
            if score < self.min_iou:
                break
            if out[i] is None and tid not in used:
                out[i] = tid
                used.add(tid)
        for i, b in enumerate(boxes):
            if out[i] is not None:
                continue
            cx, cy = _centre(b)
            limit = self.centre_frac * max(b[2], b[3])
            best: tuple[float, int] | None = None
            for tid, p in pred.items():
                if tid in used:
                    continue
                px, py = _centre(p)
                d = math.hypot(px - cx, py - cy)
                if d <= limit and (best is None or d < best[0]):
                    best = (d, tid)
            if best is not None:
                out[i] = best[1]
                used.add(best[1])
        ids: list[int] = []
        for i, b in enumerate(boxes):
            known = out[i]
            if known is None:
                known = next(self._ids)
                self._tracks[known] = _State(b, now)
            else:
                self._tracks[known].update(b, now)
            ids.append(known)
        return ids

    def drop(self, track_id: int) -> None:
        """Forget a track (it ended); its id is never reused."""
        self._tracks.pop(track_id, None)
