"""Which face is the one at the gate: the documented selection rule.

A door terminal must decide about the person standing in front of it, not a
bystander who happens to be larger in the picture. The rule (one pure
function, :func:`select_face`, that the live pipeline, enrolment, the
multi-face tracker and ``facegate calibrate`` all call):

1. **Candidates** are the faces whose box centre lies inside the region of
   interest (fractions x, y, w, h of the frame) and whose shorter box side is
   at least ``min_face_px``. A smaller face is background, never the target.
2. The **target** is the largest candidate (by box area).
3. **Margin**: when another candidate's area is at least ``ambiguous_area``
   times the target's, two people are equally "at the gate" and the frame is
   refused as ambiguous (``MANY_FACES``) instead of guessing. Faces outside
   the ROI or below the minimum size never make a frame ambiguous.

At the gate ``ambiguous_area`` is 0.5 (the second face must be under half
the area, ~71 % of the side, of the first). Enrolment photos are ordinary
photographs: a smaller background face is accepted and the dominant face is
enrolled; the photo is refused only when a second face is nearly as large
(``ENROL_RULE``: 0.6 of the area).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...drivers.models.detector import Detection
from .reasons import Reason

Roi = tuple[float, float, float, float]
FULL_FRAME: Roi = (0.0, 0.0, 1.0, 1.0)


@dataclass(frozen=True, slots=True)
class SelectionRule:
    """Parameters of :func:`select_face` (see the module docstring)."""

    roi: Roi = FULL_FRAME
    min_face_px: float = 0.0
    ambiguous_area: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.ambiguous_area <= 1.0:
            raise ValueError("ambiguous_area must be in (0, 1]")


GATE_RULE = SelectionRule()
ENROL_RULE = SelectionRule(ambiguous_area=0.6)


@dataclass(frozen=True, slots=True)
class Selection:
    """The chosen face, or why there is none (``reason`` is OK when ``face`` is set)."""

    face: Detection | None
    reason: Reason
    candidates: int
    """Faces that passed the ROI and size filter."""


def select_face(
    detections: Sequence[Detection], width: int, height: int, rule: SelectionRule
) -> Selection:
    """Apply the selection rule to ``detections`` of a ``width`` x ``height`` frame."""
    if not detections:
        return Selection(None, Reason.NO_FACE, 0)
    rx, ry = rule.roi[0] * width, rule.roi[1] * height
    rw, rh = rule.roi[2] * width, rule.roi[3] * height
    inside = [
        d for d in detections
        if rx <= d.center[0] <= rx + rw and ry <= d.center[1] <= ry + rh
    ]
    if not inside:
        return Selection(None, Reason.OUTSIDE_ROI, 0)
    cands = sorted(
        (d for d in inside if min(d.box[2], d.box[3]) >= rule.min_face_px),
        key=lambda d: -d.area,
    )
    if not cands:
        return Selection(None, Reason.QUALITY_SMALL, 0)
    if len(cands) > 1 and cands[1].area >= rule.ambiguous_area * cands[0].area:
        return Selection(None, Reason.MANY_FACES, len(cands))
    return Selection(cands[0], Reason.OK, len(cands))
