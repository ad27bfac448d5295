"""Liveness: pluggable, model-free checks (this is NOT certified PAD).

These checks raise the bar against the cheapest attacks only; they are not
presentation-attack detection certified to ISO/IEC 30107-3 and must not be
described as such:

- :class:`StillnessCheck` (temporal, over the confirmation frames): a face
  whose landmarks and aligned pixels do not change at all across the frames
  is a printed photo on a tripod or a frozen replay. A live face always moves
  a little and a live sensor always has noise. A photo moved by hand passes.
- :class:`IrPresenceCheck` (per frame, when the camera pairs an IR frame):
  the face must also be detected in the IR image with box IoU >= the limit;
  phone and monitor screens show no face in IR.
- :class:`OnnxPadCheck` (per frame): a slot for a presentation-attack model
  given by config path and sha256 pin. Contract of the model: input
  1x3xHxW RGB scaled to 0..1 (H, W from the model; 80x80 when dynamic) of the
  face box enlarged 1.5x; output either 1 value (live probability, or a logit
  if outside 0..1) or 2 values (logits/probabilities of [attack, live]).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.detector import Detection, FaceDetector
from ...drivers.models.errors import InferenceError, ModelHashMismatch
from ...drivers.models.registry import ModelFamily, ModelSpec, verify_pin
from ...drivers.models.session import make_session
from ...runtime.events import StageResult
from .reasons import Reason


class FrameCheck(Protocol):
    """A per-frame liveness check. Blocking; runs in the pipeline's worker thread."""

    name: str

    def check(
        self,
        bgr: npt.NDArray[np.uint8],
        det: Detection,
        ir: npt.NDArray[np.uint8] | None,
    ) -> StageResult | None:
        """A result, or None when the check does not apply to this frame (e.g. no IR)."""
        ...


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class IrPresenceCheck:
    """The colour face must appear in the paired IR frame (IoU >= ``min_iou``)."""

    name = "ir_presence"

    def __init__(self, detector: FaceDetector, *, min_iou: float = 0.3) -> None:
        self._detector = detector
        self.min_iou = min_iou

    def check(
        self,
        bgr: npt.NDArray[np.uint8],
        det: Detection,
        ir: npt.NDArray[np.uint8] | None,
    ) -> StageResult | None:
        if ir is None:
            return None
        ir_bgr = cv2.cvtColor(ir, cv2.COLOR_GRAY2BGR) if ir.ndim == 2 else ir[..., :3]
        # The IR camera may have another resolution: compare in colour-frame coordinates.
        sx = bgr.shape[1] / max(1, ir_bgr.shape[1])
        sy = bgr.shape[0] / max(1, ir_bgr.shape[0])
        best = 0.0
        for face in self._detector.detect(np.ascontiguousarray(ir_bgr, dtype=np.uint8)):
            x, y, w, h = face.box
            best = max(best, iou(det.box, (x * sx, y * sy, w * sx, h * sy)))
        ok = best >= self.min_iou
        return StageResult(
            name=self.name, passed=ok,
            reason=Reason.LIVE if ok else Reason.LIVENESS_IR_MISSING, value=round(best, 3),
        )


class OnnxPadCheck:
    """A presentation-attack-detection model slot (see module docstring for its contract)."""

    name = "pad_model"

    def __init__(self, path: Path, sha256: str, *, threshold: float = 0.5) -> None:
        spec = ModelSpec(name="pad", family=ModelFamily.ARCFACE, path=path, sha256=sha256)
        verify_pin(spec)  # raises ModelHashMismatch before anything is loaded
        self._session = make_session(path, intra_threads=1)
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        h, w = inp.shape[2], inp.shape[3]
        self._size = (w if isinstance(w, int) else 80, h if isinstance(h, int) else 80)
        self.threshold = threshold

    def live_probability(self, bgr: npt.NDArray[np.uint8], det: Detection) -> float:
        x, y, w, h = det.box
        cx, cy, side = x + w / 2, y + h / 2, max(w, h) * 1.5
        m = np.array([[self._size[0] / side, 0, self._size[0] / 2 - cx * self._size[0] / side],
                      [0, self._size[1] / side, self._size[1] / 2 - cy * self._size[1] / side]])
        crop = cv2.warpAffine(bgr, m, self._size, borderMode=cv2.BORDER_REPLICATE)
        blob = (crop[..., ::-1].astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        try:
            out = np.asarray(self._session.run(None, {self._input: blob})[0], np.float64).ravel()
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise InferenceError(f"PAD model failed: {exc}") from None
        if out.size >= 2:
            v = out[:2]
            p = np.exp(v - v.max()) / np.exp(v - v.max()).sum() if (v < 0).any() or v.sum() > 1.001 else v
            return float(p[1])
        v0 = float(out[0]) if out.size else 0.0
        return v0 if 0.0 <= v0 <= 1.0 else float(1.0 / (1.0 + np.exp(-v0)))

    def check(
        self,
        bgr: npt.NDArray[np.uint8],
        det: Detection,
        ir: npt.NDArray[np.uint8] | None,
    ) -> StageResult | None:
        p = self.live_probability(bgr, det)
        ok = p >= self.threshold
        return StageResult(
            name=self.name, passed=ok, reason=Reason.LIVE if ok else Reason.LIVENESS_PAD,
            value=round(p, 3),
        )


class StillnessCheck:
    """Temporal check over the confirmation frames (see module docstring).

    ``motion`` is the largest landmark displacement from the first frame, in
    pixels normalised to a 112 px face; ``change`` is the largest mean
    absolute grey-level difference between consecutive aligned crops. The
    face is still (refused) when both are below their limits.
    """

    name = "stillness"

    def __init__(self, *, min_motion_px: float = 0.35, min_pixel_change: float = 0.4) -> None:
        self.min_motion_px = min_motion_px
        self.min_pixel_change = min_pixel_change

    def evaluate(
        self,
        landmarks: Sequence[npt.NDArray[np.float32]],
        face_sizes: Sequence[float],
        crops: Sequence[npt.NDArray[np.uint8]],
    ) -> StageResult:
        if len(landmarks) < 2:
            return StageResult(name=self.name, passed=False, reason=Reason.PENDING, value=None)
        first = landmarks[0].reshape(5, 2)
        motion = 0.0
        for lm, size in zip(landmarks[1:], face_sizes[1:], strict=True):
            d = float(np.abs(lm.reshape(5, 2) - first).max())
            motion = max(motion, d * 112.0 / max(size, 1.0))
        change = 0.0
        for a, b in itertools.pairwise(crops):
            change = max(change, float(cv2.absdiff(a, b).mean()))
        still = motion < self.min_motion_px and change < self.min_pixel_change
        return StageResult(
            name=self.name, passed=not still,
            reason=Reason.LIVENESS_STILL if still else Reason.LIVE,
            value=round(max(motion, change), 3),
        )


__all__ = [
    "FrameCheck",
    "IrPresenceCheck",
    "ModelHashMismatch",
    "OnnxPadCheck",
    "StillnessCheck",
    "iou",
]
