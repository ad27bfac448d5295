"""The plain model run the reference way, for ``facegate calibrate --compare``.

OpenCV's own ``cv2.FaceDetectorYN`` on a 640x640 letterbox of the image (with
the same border as the calibration), the face nearest the centre,
``cv2.FaceRecognizerSF.alignCrop`` + ``feature`` on the plain fp32 fold of the
pinned SFace. No quality gate, no fusion: the number facegate's device path
is compared with, on the same images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.loader import LoadedModels
from .calibration import list_images
from .errors import ImageRejected
from .evaluation import Sample, prepare
from .image import decode_image
from .reasons import Reason

LETTERBOX = 640


class ReferencePath:
    """YuNet + SFace through OpenCV's API (blocking, not thread-safe)."""

    def __init__(self, models: LoadedModels) -> None:
        self.det = cv2.FaceDetectorYN.create(
            str(models.detector_path), "", (LETTERBOX, LETTERBOX), 0.6, 0.3, 50
        )
        rec = models.reference_recognizer_path or models.recognizer_path
        self.rec = cv2.FaceRecognizerSF.create(str(rec), "")

    def embed(self, bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32] | None:
        framed, _, _, _ = prepare(bgr)
        h, w = framed.shape[:2]
        f = LETTERBOX / max(h, w)
        nw, nh = round(w * f), round(h * f)
        canvas = np.zeros((LETTERBOX, LETTERBOX, 3), np.uint8)
        canvas[:nh, :nw] = cv2.resize(framed, (nw, nh), interpolation=cv2.INTER_AREA
                                      if f < 1 else cv2.INTER_LINEAR)
        _, faces = self.det.detect(canvas)
        if faces is None or not len(faces):
            return None
        cx, cy = nw / 2, nh / 2
        centres = faces[:, 0:2] + faces[:, 2:4] / 2
        best = faces[int(np.argmin(((centres - (cx, cy)) ** 2).sum(axis=1)))]
        feat = np.asarray(self.rec.feature(self.rec.alignCrop(canvas, best)), np.float32).ravel()
        return np.asarray(feat / max(float(np.linalg.norm(feat)), 1e-12), dtype=np.float32)


def collect_reference(
    models: LoadedModels, root: Path, *, every: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[Sample]:
    """Reference samples for the same files (and identity subsample) as ``collect``."""
    ref = ReferencePath(models)
    files = list_images(root)
    keep = set(sorted({p for p, _ in files})[::max(1, every)])
    files = [(p, f) for p, f in files if p in keep]
    names: dict[str, int] = {}
    out: list[Sample] = []
    for i, (person, path) in enumerate(files):
        label = names.setdefault(person, len(names))
        try:
            emb = ref.embed(decode_image(path.read_bytes()))
        except (ImageRejected, OSError):
            emb = None
        reason = Reason.OK if emb is not None else Reason.NO_FACE
        out.append(Sample(label, reason, reason, embedding=emb))
        if progress is not None and (i + 1) % 100 == 0:
            progress(i + 1, len(files))
    return out
