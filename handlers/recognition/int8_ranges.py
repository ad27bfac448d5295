"""Rebuild the int8 calibration ranges of the built-in SFace from the repo's sample faces.

``python -m facegate.handlers.recognition.int8_ranges [--out FILE]`` detects
and aligns every face (>= 40 px) in ``tests/data/faces`` except the photos of
children, and calibrates the activation ranges of the exact-rewrite fp32
SFace on those crops and their mirror images (recipe in
``facegate.drivers.models.quantize``). The default output is the shipped
file, so running it reproduces the artefact from a fresh clone; no image or
embedding is written, only per-tensor value ranges.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.loader import LoadedModels, ModelOptions, load_models
from ...drivers.models.quantize import BUILTIN_RANGES, build_ranges
from .align import align_face

SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "data" / "faces"
_CHILDREN = ("Family1-Son", "Family1-Daughter", "child")
MIN_FACE_PX = 40


def sample_crops(models: LoadedModels, folder: Path = SAMPLES) -> list[npt.NDArray[np.uint8]]:
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=BUILTIN_RANGES)
    p.add_argument("--samples", type=Path, default=SAMPLES)
    p.add_argument("--cache-dir", type=Path, default=None)
    args = p.parse_args(argv)
    # Ranges are calibrated on the exact fp32 graph, whatever the device default is.
    models = load_models(ModelOptions(cache_dir=args.cache_dir, recognizer_precision="fp32"))
    crops = sample_crops(models, args.samples)
    if not crops:
        print(f"no faces found in {args.samples}", file=sys.stderr)
        return 1
    build_ranges(models.recognizer_path, crops, args.out)
    print(f"{len(crops)} crops (+ mirrors) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
