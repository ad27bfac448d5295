"""Measuring a model on a labelled folder: score distributions and a calibration table.

``DIR/<person>/*.jpg`` (any image format). Each image gets a border added
(tight, pre-cropped faces such as ORL or Glint crops are otherwise missed by
the detector), the face nearest the image centre is embedded (no quality
gate: this measures the model), and every pair of images is compared:
same person = genuine, different persons = impostor. Images without a face
are counted as failures to enrol and left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.loader import LoadedModels
from .align import align_face
from .thresholds import CalibrationTable

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".pgm", ".tif", ".tiff"})
REPORT_FMRS = (1e-2, 1e-3, 1e-4)


@dataclass(frozen=True, slots=True)
class EmbeddedSet:
    """Embeddings (rows, L2-normalised) with the integer label of each row."""

    embeddings: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    identities: int
    images: int
    failed: int


def list_images(root: Path) -> list[tuple[str, Path]]:
    """(person, file) for every image one level below ``root``, sorted."""
    out = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(person.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                out.append((person.name, f))
    return out


def embed_for_calibration(
    models: LoadedModels, bgr: npt.NDArray[np.uint8]
) -> npt.NDArray[np.float32] | None:
    """Embedding of the face nearest the centre of ``bgr`` (with a border), or None."""
    h, w = bgr.shape[:2]
    if min(h, w) < 112:
        # Tiny crops (e.g. 23x28 px): YuNet's smallest anchors need ~16 px eyes-to-mouth.
        f = 112.0 / min(h, w)
        bgr = np.asarray(cv2.resize(bgr, (round(w * f), round(h * f)),
                                    interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
        h, w = bgr.shape[:2]
    pad = max(h, w) // 2
    framed = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    faces = models.detector.detect(np.asarray(framed, dtype=np.uint8))
    if not faces:
        return None
    cx, cy = framed.shape[1] / 2, framed.shape[0] / 2
    face = min(faces, key=lambda d: (d.center[0] - cx) ** 2 + (d.center[1] - cy) ** 2)
    crop = align_face(np.asarray(framed, dtype=np.uint8), face.landmarks)
    emb: npt.NDArray[np.float32] = models.embedder.embed(crop)[0]
    return emb


@dataclass(frozen=True, slots=True)
class ScoreStats:
    """Genuine and impostor score distributions and the derived error rates."""

    genuine: npt.NDArray[np.float32]
    impostor_sorted: npt.NDArray[np.float32]

    def threshold_at(self, fmr: float) -> float:
        """Lowest threshold whose impostor acceptance rate is <= ``fmr``."""
        imp = self.impostor_sorted
        k = math.floor(fmr * imp.size)
        if k <= 0:
            return float(imp[-1]) + 1e-6
        return float(imp[imp.size - k])

    def fmr(self, threshold: float) -> float:
        imp = self.impostor_sorted
        return float(imp.size - np.searchsorted(imp, threshold, side="left")) / imp.size

    def fnmr(self, threshold: float) -> float:
        return float(np.mean(self.genuine < threshold))

    def eer(self) -> tuple[float, float]:
        """(EER, threshold) where FMR and FNMR cross, by bisection on the threshold."""
        lo, hi = -1.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if self.fmr(mid) > self.fnmr(mid):
                lo = mid
            else:
                hi = mid
        t = (lo + hi) / 2
        return (self.fmr(t) + self.fnmr(t)) / 2, t


def pair_scores(data: EmbeddedSet) -> ScoreStats:
    """All-pairs cosine scores split into genuine and (sorted) impostor."""
    e, y = data.embeddings, data.labels
    n = e.shape[0]
    gen: list[npt.NDArray[np.float32]] = []
    imp: list[npt.NDArray[np.float32]] = []
    step = 1024
    for start in range(0, n, step):
        block = e[start : start + step] @ e.T
        for i in range(block.shape[0]):
            r = start + i
            s = block[i, r + 1 :]
            same = y[r + 1 :] == y[r]
            gen.append(s[same])
            imp.append(s[~same])
    genuine = np.concatenate(gen) if gen else np.zeros(0, np.float32)
    impostor = np.sort(np.concatenate(imp)) if imp else np.zeros(0, np.float32)
    return ScoreStats(genuine=genuine.astype(np.float32), impostor_sorted=impostor.astype(np.float32))


def build_table(stats: ScoreStats, model_id: str, data: EmbeddedSet) -> CalibrationTable:
    """Points every quarter decade of FMR from ~0.56 down to ~10 impostor pairs."""
    min_fmr = 10.0 / max(1, stats.impostor_sorted.size)
    points: list[tuple[float, float]] = []
    x = 0.25
    while 10 ** (-x) >= min_fmr:
        f = 10 ** (-x)
        points.append((f, round(stats.threshold_at(f), 5)))
        x += 0.25
    if len(points) < 2:
        raise ValueError("too few impostor pairs for a calibration table (need >= 20)")
    eer, eer_t = stats.eer()
    summary = {
        "identities": float(data.identities),
        "images": float(data.images),
        "failed_to_enrol": float(data.failed),
        "genuine_pairs": float(stats.genuine.size),
        "impostor_pairs": float(stats.impostor_sorted.size),
        "eer": round(eer, 5),
        "eer_threshold": round(eer_t, 5),
    }
    for f in REPORT_FMRS:
        t = stats.threshold_at(f)
        summary[f"fnmr@{f:g}"] = round(stats.fnmr(t), 5)
        summary[f"threshold@{f:g}"] = round(t, 5)
    return CalibrationTable(model_id=model_id, points=tuple(points), summary=summary)
