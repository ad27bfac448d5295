"""The device's path from a decoded image to one face: detect, select, refine, gate.

One function, :func:`locate`, used by the live pipeline, enrolment and
``facegate calibrate``, so the calibration table describes what the device
does: the coarse detector pass finds the faces, :func:`~.selection.select_face`
picks the one at the gate, the fine pass refines its landmarks, and the
quality gate judges the refined face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ...drivers.models.detector import Detection, FaceDetector
from ...runtime.events import StageResult
from .fusion import EmbedOptions, refine
from .quality import QualityLimits, assess, first_failure
from .reasons import Reason
from .selection import Selection, SelectionRule, select_face


@dataclass(frozen=True, slots=True)
class Located:
    """Where the face is and whether the gate accepts it.

    ``reason`` is OK, a selection reason (no face, outside the ROI, several
    faces) or the first failed quality check. ``target`` is set whenever a face
    was selected, even when the gate refused it (the tracker and the decision
    still need its box).
    """

    reason: Reason
    faces: int
    selection: Selection
    target: Detection | None = None
    quality: tuple[StageResult, ...] = ()


def locate(
    detector: FaceDetector,
    bgr: npt.NDArray[np.uint8],
    rule: SelectionRule,
    limits: QualityLimits,
    opts: EmbedOptions,
    *,
    detections: list[Detection] | None = None,
) -> Located:
    """Detect (unless ``detections`` are given), select, refine and gate. Blocking."""
    faces = detector.detect(bgr) if detections is None else detections
    sel = select_face(faces, bgr.shape[1], bgr.shape[0], rule)
    if sel.face is None:
        return Located(sel.reason, len(faces), sel)
    target = refine(detector, bgr, sel.face, opts)
    quality = assess(bgr, target, limits)
    failed = first_failure(quality)
    reason = Reason.OK if failed is None else Reason(failed.reason)
    return Located(reason, len(faces), sel, target, quality)

