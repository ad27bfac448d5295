"""Which face is the one at the gate: the documented selection rule.

A door terminal must decide about the person standing in front of it, not a
bystander who happens to be larger in the picture. The rule (one pure
function, :func:`select_face`, that the live pipeline, enrolment, the
multi-face tracker and ``facegate calibrate`` all call):

1. **Region**: only faces whose box centre lies inside the ROI (``roi``,
   fractions x, y, w, h of the frame; ``recognition.roi``) are considered.
2. **Centre first**: if any of them has its centre inside the central region
   (``central``, default the middle half each way, ``CENTRAL_ROI``), only those
   compete; otherwise all faces of step 1 do (a person off-centre is still
   served when nobody is in the middle).
3. **Minimum size**: competitors have a shorter box side of at least
   ``min_face_px`` (0 at the gate, where the quality gate reports a too-small
   target with its measured size).
4. The **target** is the largest competitor (box area).
5. **Margin**: when another competitor's area is at least ``ambiguous_area``
   times the target's, two people are equally "at the gate" and the frame is
   refused as ambiguous (``MANY_FACES``) instead of guessed.

At the gate ``ambiguous_area`` is 0.5 (the second face must be under half
the area, ~71 % of the side, of the first). Enrolment photos
(``ENROL_RULE``, whole photo, same central preference) accept a smaller
background face and enrol the main face; they are refused only when a
second competitor is nearly as large (0.6 of the area).

Measured on the devset (every 3rd identity, 1,778 images, 323 with more
than one face, 26 with a bystander larger than the subject): without the
central preference, margin 0.5 refuses 9.8 % of the images as ambiguous and
0.6 refuses 7.1 %; with it 0.4 % and 0.3 %, and the face chosen is always
the one nearest the image centre.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...drivers.models.detector import Detection
from .reasons import Reason

Roi = tuple[float, float, float, float]
FULL_FRAME: Roi = (0.0, 0.0, 1.0, 1.0)
CENTRAL_ROI: Roi = (0.25, 0.25, 0.5, 0.5)


def _inside(d: Detection, roi: Roi, width: int, height: int) -> bool:
    rx, ry, rw, rh = roi[0] * width, roi[1] * height, roi[2] * width, roi[3] * height
    return rx <= d.center[0] <= rx + rw and ry <= d.center[1] <= ry + rh


@dataclass(frozen=True, slots=True)
class SelectionRule:
    """Parameters of :func:`select_face` (see the module docstring)."""

    roi: Roi = FULL_FRAME
    central: Roi = CENTRAL_ROI
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
    """Faces that competed (after the ROI, centre and size filters)."""


def select_face(
    detections: Sequence[Detection], width: int, height: int, rule: SelectionRule
) -> Selection:
    """Apply the selection rule to ``detections`` of a ``width`` x ``height`` frame."""
    if not detections:
        return Selection(None, Reason.NO_FACE, 0)
    inside = [d for d in detections if _inside(d, rule.roi, width, height)]
    if not inside:
        return Selection(None, Reason.OUTSIDE_ROI, 0)
    central = [d for d in inside if _inside(d, rule.central, width, height)]
    if central:
        inside = central
    cands = sorted(
        (d for d in inside if min(d.box[2], d.box[3]) >= rule.min_face_px),
        key=lambda d: -d.area,
    )
    if not cands:
        return Selection(None, Reason.QUALITY_SMALL, 0)
    if len(cands) > 1 and cands[1].area >= rule.ambiguous_area * cands[0].area:
        return Selection(None, Reason.MANY_FACES, len(cands))
    return Selection(cands[0], Reason.OK, len(cands))


def other_faces(
    detections: Sequence[Detection], width: int, height: int, rule: SelectionRule,
    *, min_face_px: float, exclude: Detection | None,
) -> list[Detection]:
    """The faces besides the gate's target that are identified too (issue 16), largest first.

    Every face whose centre lies in the ROI (step 1 of the rule) and whose
    shorter box side is at least ``min_face_px`` (the quality gate's minimum
    size: a smaller face could never pass it), except ``exclude`` (the
    target). None of them can open the door: only :func:`select_face` picks
    the face at the gate, and these are reported as ``at_door: false``.
    """
    return sorted(
        (d for d in detections
         if d is not exclude and _inside(d, rule.roi, width, height)
         and min(d.box[2], d.box[3]) >= min_face_px),
        key=lambda d: -d.area,
    )
