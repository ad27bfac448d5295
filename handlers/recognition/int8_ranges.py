"""Calibration crops for the int8 build of the built-in SFace.

:func:`sample_crops` detects and aligns every face (>= 40 px) in a folder of
photos except the photos of children. The developer tool that rebuilds the
shipped ranges file from the repository's sample faces is
``scripts/int8_ranges`` (not installed); recipe in
``facegate.drivers.models.quantize``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.loader import LoadedModels
from .align import align_face

_CHILDREN = ("Family1-Son", "Family1-Daughter", "child")
MIN_FACE_PX = 40


def sample_crops(models: LoadedModels, folder: Path) -> list[npt.NDArray[np.uint8]]:
    """Aligned 112x112 BGR crops of every adult sample face, in file-name order."""
    crops: list[npt.NDArray[np.uint8]] = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png") or path.name.startswith(_CHILDREN):
            continue
        raw = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if raw is None:
            continue
        img = np.asarray(raw, dtype=np.uint8)
        for det in models.detector.detect(img):
            if min(det.box[2], det.box[3]) >= MIN_FACE_PX:
                crops.append(align_face(img, det.landmarks))
    return crops
