"""The quality gate: is this face good enough to identify?

Each check yields a :class:`StageResult` with a stable reason code and the
measured value, so a refusal explains itself. Yaw and pitch come from the
five landmarks only (no 3-D fit). Yaw: the nose tip stands in front of the
eye plane, so turning the head by ``yaw`` moves it sideways off the face's
midline by ``depth * sin(yaw)`` while the half eye distance shrinks to
``half_iod * cos(yaw)``; their ratio is ``(depth / half_iod) * tan(yaw)``
and is inverted with ``atan`` using the mean-face ratio ``half_iod / depth``
(:data:`HALF_IOD_PER_NOSE_DEPTH`). The earlier ``asin`` form read the same
ratio as a sine, which saturates at 90 deg for a 45 deg head turn and
turned landmark noise on frontal faces into large angles. Pitch: where the
nose sits between the eye line and the mouth line.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.detector import Detection
from ...runtime.config.recognition import QualitySettings
from ...runtime.events import StageResult
from .reasons import Reason

# Nose position between eye line and mouth line on a frontal face (ArcFace template).
_FRONTAL_PITCH_RATIO = (71.7366 - 51.6) / (92.28 - 51.6)
# Half the distance between the eye centres over the nose tip's depth in front of
# them, for a mean adult face (eye centres +-32 mm, nose tip ~26 mm in front).
HALF_IOD_PER_NOSE_DEPTH = 1.22


QualityLimits = QualitySettings
"""The gate's thresholds: the config section ``[recognition.quality]`` itself (one type)."""


def estimate_pose(landmarks: npt.NDArray[np.float32]) -> tuple[float, float]:
    """(yaw, pitch) in degrees from the five landmarks; 0, 0 is frontal."""
    p = landmarks.reshape(5, 2).astype(np.float64)
    eye_l, eye_r, nose, mouth_l, mouth_r = p
    eye_mid = (eye_l + eye_r) / 2
    mouth_mid = (mouth_l + mouth_r) / 2
    eye_dist = float(np.linalg.norm(eye_r - eye_l)) or 1.0
    axis = mouth_mid - eye_mid
    axis_len = float(np.linalg.norm(axis)) or 1.0
    unit = axis / axis_len
    rel = nose - eye_mid
    # Lateral offset of the nose from the face's vertical midline.
    lateral = float(rel[0] * unit[1] - rel[1] * unit[0])
    yaw = math.degrees(math.atan(2.0 * lateral / eye_dist * HALF_IOD_PER_NOSE_DEPTH))
    along = float(rel @ unit) / axis_len
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, 2.0 * (along - _FRONTAL_PITCH_RATIO)))))
    return yaw, pitch


def face_patch(bgr: npt.NDArray[np.uint8], det: Detection) -> npt.NDArray[np.uint8]:
    """The grey face box clipped to the image (may be empty at the border)."""
    h, w = bgr.shape[:2]
    x, y, bw, bh = det.box
    x0, y0 = max(0, int(x)), max(0, int(y))
    x1, y1 = min(w, int(x + bw)), min(h, int(y + bh))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), np.uint8)
    return np.asarray(cv2.cvtColor(bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY), dtype=np.uint8)


def sharpness(grey: npt.NDArray[np.uint8]) -> float:
    """Variance of the Laplacian at a fixed 96 px scale (so it does not depend on distance)."""
    if grey.size == 0:
        return 0.0
    norm = cv2.resize(grey, (96, 96), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(norm, cv2.CV_64F).var())


def assess(
    bgr: npt.NDArray[np.uint8], det: Detection, limits: QualityLimits
) -> tuple[StageResult, ...]:
    """Run every check (not just until the first failure) so the decision lists them all."""
    results: list[StageResult] = []
    side = min(det.box[2], det.box[3])
    results.append(StageResult(
        name="size", passed=side >= limits.min_face_px,
        reason=Reason.OK if side >= limits.min_face_px else Reason.QUALITY_SMALL,
        value=round(side, 1),
    ))
    grey = face_patch(bgr, det)
    # Brightness before sharpness: a dark face also has little contrast, and the
    # first failure is what a refusal reports.
    bright = float(grey.mean()) if grey.size else 0.0
    if bright < limits.min_brightness:
        reason = Reason.QUALITY_DARK
    elif bright > limits.max_brightness:
        reason = Reason.QUALITY_BRIGHT
    else:
        reason = Reason.OK
    results.append(StageResult(
        name="brightness", passed=reason is Reason.OK, reason=reason, value=round(bright, 1)
    ))
    sharp = sharpness(grey)
    results.append(StageResult(
        name="sharpness", passed=sharp >= limits.min_sharpness,
        reason=Reason.OK if sharp >= limits.min_sharpness else Reason.QUALITY_BLUR,
        value=round(sharp, 1),
    ))
    yaw, pitch = estimate_pose(det.landmarks)
    results.append(StageResult(
        name="yaw", passed=abs(yaw) <= limits.max_yaw_deg,
        reason=Reason.OK if abs(yaw) <= limits.max_yaw_deg else Reason.QUALITY_POSE_YAW,
        value=round(yaw, 1),
    ))
    results.append(StageResult(
        name="pitch", passed=abs(pitch) <= limits.max_pitch_deg,
        reason=Reason.OK if abs(pitch) <= limits.max_pitch_deg else Reason.QUALITY_POSE_PITCH,
        value=round(pitch, 1),
    ))
    return tuple(results)


def first_failure(results: tuple[StageResult, ...]) -> StageResult | None:
    """The first failed check, or None when all passed."""
    return next((r for r in results if not r.passed), None)
