"""Landmark refinement and view fusion: one face -> one better embedding.

The documented fusion rules (the same at enrolment, at the gate and in
``facegate calibrate``):

* **Views of one image** (this module): the face is aligned from the refined
  landmarks (see :func:`~facegate.drivers.models.detector.refine_detection`),
  embedded together with its mirror image in one batch, and the two
  L2-normalised rows are **averaged and re-normalised** (mean fusion). A mirror
  view cancels part of the left/right alignment error and of lighting
  asymmetry; it costs one more recogniser row in the same run.
* **Two detection scales** (``multiscale``, with ``flip``): the face is also
  aligned from the coarse pass's landmarks (320 px input) and that crop and
  its mirror join the mean, four rows in all. Always at enrolment; at the gate
  only where the mirror view is embedded (the uncertainty band), so a clear
  face still costs one row.
* **Templates of one subject** (the matcher): every enrolled image stays its own
  template and a subject scores the **maximum** cosine over its templates, so a
  second photo can only help the subject it belongs to.
* **Frames of one passage** (the decision): k agreeing frames, each fused as above.

:class:`EmbedOptions` is what the device config selects; ``EmbedOptions.legacy()``
is the pre-refinement pipeline (coarse landmarks, one view), kept for the bench
and the calibration comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.detector import REFINE_FACE_PX, Detection, FaceDetector, refine_detection
from ...drivers.models.embedder import FaceEmbedder
from .align import align_face


@dataclass(frozen=True, slots=True)
class EmbedOptions:
    """How a detected face becomes an embedding (mirrors ``[recognition.fusion]``)."""

    refine: bool = True
    """Re-detect the face on a crop at ``refine_face_px`` for precise landmarks."""
    refine_face_px: float = REFINE_FACE_PX
    flip: bool = True
    """Average the embedding with that of the mirrored crop (always at enrolment)."""
    flip_band: float = 0.08
    """At the gate: mirror pass only when |best - threshold| < flip_band (1.0: always)."""
    flip_margin: float = 0.03
    """At the gate: mirror pass also when best - runner-up < flip_margin."""
    multiscale: bool = False
    """With flip and refine: the coarse-landmark views join the fusion (see above)."""

    @classmethod
    def legacy(cls) -> EmbedOptions:
        """The pipeline before issue 15: coarse landmarks, one view."""
        return cls(refine=False, flip=False)

    @property
    def label(self) -> str:
        parts = [f"refine{int(self.refine_face_px)}" if self.refine else "coarse"]
        if self.flip:
            parts.append("flip")
        if self.multiscale and self.flip and self.refine:
            parts.append("ms")
        return "+".join(parts)


def multiscale_default(setting: bool | None, *, int8: bool) -> bool:
    """``[recognition.fusion] multiscale`` resolved: unset means on, except for the int8 build.

    Measured on the devset (every 4th identity, open set at the device threshold): with the
    fp32 build two scales cut FNMR@1e-4 from 4.28% to 3.69% and granted no stranger; with int8
    its own table placed the threshold lower and one stranger of 345 was granted, and "0
    strangers" is a hard target (docs/performance.md, issue 15).
    """
    return (not int8) if setting is None else setting


def needs_mirror(
    best: float | None, runner_up: float | None, threshold: float, opts: EmbedOptions
) -> bool:
    """Whether the gate embeds the mirror view after the plain one (rule above).

    ``best``/``runner_up``: the plain view's top two subject scores (None when
    the gallery has fewer subjects). ``flip_band`` >= 1: always. A face below
    ``threshold - flip_band`` (or an empty gallery) is a clear stranger whatever
    the runner-up; the margin rule applies to a face that could be granted.
    """
    if not opts.flip:
        return False
    if opts.flip_band >= 1.0:
        return True
    if best is None or best <= threshold - opts.flip_band:
        return False  # nobody can be granted: a clear stranger
    if best - threshold < opts.flip_band:
        return True
    return runner_up is not None and best - runner_up < opts.flip_margin


def refine(
    detector: FaceDetector, bgr: npt.NDArray[np.uint8], det: Detection, opts: EmbedOptions
) -> Detection:
    """``det`` with refined landmarks when ``opts.refine`` (else ``det``). Blocking."""
    if not opts.refine:
        return det
    return refine_detection(detector, bgr, det, face_px=opts.refine_face_px)


def aligned_views(crop: npt.NDArray[np.uint8], opts: EmbedOptions) -> npt.NDArray[np.uint8]:
    """The crops to embed for one aligned face: itself, and its mirror when ``opts.flip``."""
    if not opts.flip:
        return crop[None]
    return np.stack([crop, np.asarray(cv2.flip(crop, 1), dtype=np.uint8)])


def extra_views(
    bgr: npt.NDArray[np.uint8], crop: npt.NDArray[np.uint8],
    coarse: npt.NDArray[np.float32] | None, opts: EmbedOptions,
) -> npt.NDArray[np.uint8]:
    """The views fused with the plain ``crop``: its mirror, and with ``opts.multiscale``
    the face aligned from the ``coarse`` landmarks and that crop's mirror. Blocking."""
    if not opts.flip:
        return np.zeros((0, *crop.shape), np.uint8)
    out = [np.asarray(cv2.flip(crop, 1), dtype=np.uint8)]
    if opts.multiscale and opts.refine and coarse is not None:
        second = align_face(bgr, coarse)
        out.extend([second, np.asarray(cv2.flip(second, 1), dtype=np.uint8)])
    return np.stack(out)


def fuse_rows(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Mean of L2-normalised rows, re-normalised (one row in, the same row out)."""
    if rows.shape[0] == 1:
        return np.asarray(rows[0], dtype=np.float32)
    mean = rows.mean(axis=0)
    return np.asarray(mean / max(float(np.linalg.norm(mean)), 1e-12), dtype=np.float32)


def embed_face(
    embedder: FaceEmbedder, bgr: npt.NDArray[np.uint8], landmarks: npt.NDArray[np.float32],
    opts: EmbedOptions, *, coarse: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """(fused embedding, aligned crop) of the face at ``landmarks`` (every view fused;
    ``coarse``: the coarse pass's landmarks, for ``opts.multiscale``). Blocking."""
    crop = align_face(bgr, landmarks)
    views = np.concatenate([crop[None], extra_views(bgr, crop, coarse, opts)])
    return fuse_rows(embedder.embed(views)), crop
