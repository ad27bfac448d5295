"""Tiny, smooth random motion that makes a replayed still photo look like a live person.

A person standing at a gate is never perfectly still: the head sways by a few
pixels and turns by a fraction of a degree between frames. :class:`Jitter`
models that as a mean-reverting random walk of translation, rotation and
scale, so consecutive frames differ slightly and drift stays bounded. Without
jitter a simulated camera replays the *same* array, which a temporal liveness
check must reject as a frozen replay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import cv2
import numpy as np

from .frames import Image, freeze

_REVERT = 0.85  # pull back towards the centre each frame, so motion never drifts away


@dataclass(frozen=True, slots=True)
class Pose:
    """One frame's offset: pixels, degrees and relative scale."""

    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0
    scale: float = 1.0


class Jitter:
    """A seeded random walk of small affine poses (deterministic for a given ``rng``)."""

    def __init__(
        self,
        rng: random.Random,
        *,
        step_px: float = 1.0,
        step_deg: float = 0.25,
        step_scale: float = 0.003,
        max_px: float = 6.0,
        max_deg: float = 2.0,
        max_scale: float = 0.03,
    ) -> None:
        self._rng = rng
        self._steps = (step_px, step_deg, step_scale)
        self._limits = (max_px, max_deg, max_scale)
        self._pose = Pose()

    def next_pose(self) -> Pose:
        """Advance the walk one frame and return the new pose."""
        p, (sp, sd, ss), (mp, md, ms) = self._pose, self._steps, self._limits
        g = self._rng.gauss

        def walk(value: float, step: float, limit: float) -> float:
            return max(-limit, min(limit, _REVERT * value + g(0.0, step)))

        self._pose = Pose(
            dx=walk(p.dx, sp, mp),
            dy=walk(p.dy, sp, mp),
            angle=walk(p.angle, sd, md),
            scale=1.0 + walk(p.scale - 1.0, ss, ms),
        )
        return self._pose


def apply_pose(image: Image, pose: Pose) -> Image:
    """Warp ``image`` by ``pose`` about its centre (blocking: ~1 ms at 640x480).

    Borders are reflected so no black wedge appears at the frame edge.
    """
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), pose.angle, pose.scale)
    matrix[0, 2] += pose.dx
    matrix[1, 2] += pose.dy
    warped = cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    return freeze(np.asarray(warped, dtype=np.uint8))
