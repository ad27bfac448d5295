"""Calibration tables and gallery-size-aware thresholds.

A calibration table (written by ``facegate calibrate``) lists, for one model,
the cosine threshold at which the measured impostor comparisons reach each
false-match rate. Identification against N subjects makes N impostor
comparisons, so the false-positive identification rate is roughly
``FPIR ~ N x FMR``. The configured ``target_fmr`` is the rate the device
accepts per identification attempt; the per-comparison rate used is
``target_fmr / N`` and the threshold rises as the gallery grows. Below the
table's smallest measured FMR the threshold is extrapolated linearly in
log10(FMR) from the last two points (conservative: it keeps rising) and
capped at 0.95.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RecognitionError

TABLE_FORMAT = "facegate-calibration/1"


class CalibrationError(RecognitionError):
    """A calibration table is unreadable, malformed or made for another model."""


@dataclass(frozen=True, slots=True)
class CalibrationTable:
    """Points ``(fmr, threshold)`` sorted by decreasing FMR, for ``model_id``."""

    model_id: str
    points: tuple[tuple[float, float], ...]
    summary: dict[str, float] = field(default_factory=dict)

    def threshold_at(self, fmr: float) -> float:
        pts = self.points
        if fmr >= pts[0][0]:
            return pts[0][1]
        for (f0, t0), (f1, t1) in itertools.pairwise(pts):
            if f1 <= fmr <= f0:
                a = (math.log10(fmr) - math.log10(f0)) / (math.log10(f1) - math.log10(f0))
                return t0 + a * (t1 - t0)
        (f0, t0), (f1, t1) = pts[-2], pts[-1]
        slope = (t1 - t0) / (math.log10(f1) - math.log10(f0))
        return min(0.95, t1 + slope * (math.log10(fmr) - math.log10(f1)))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "model_id": self.model_id,
            "points": [{"fmr": f, "threshold": t} for f, t in self.points],
            "summary": self.summary,
        }

    @classmethod
    def from_json(cls, raw: Any) -> CalibrationTable:
        try:
            if raw["format"] != TABLE_FORMAT:
                raise CalibrationError(f"unknown calibration format {raw['format']!r}")
            pts = sorted(
                ((float(p["fmr"]), float(p["threshold"])) for p in raw["points"]),
                key=lambda p: -p[0],
            )
            summary = {str(k): float(v) for k, v in dict(raw.get("summary", {})).items()}
            model_id = str(raw["model_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"malformed calibration table: {exc}") from None
        if len(pts) < 2 or any(not 0 < f <= 1 for f, _ in pts):
            raise CalibrationError("a calibration table needs >= 2 points with 0 < fmr <= 1")
        return cls(model_id=model_id, points=tuple(pts), summary=summary)

    @classmethod
    def load(cls, path: Path) -> CalibrationTable:
        try:
            raw = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"cannot read calibration table {path}: {exc}") from None
        return cls.from_json(raw)


BUILTIN = Path(__file__).with_name("sface_calibration.json")
"""The table of the exact fp32 build (``recognizer_precision = "fp32"``)."""
BUILTIN_INT8 = Path(__file__).with_name("sface_int8r1_calibration.json")
"""The table of the int8 build (``recognizer_precision = "int8"``, the default), same devset."""
BUILTIN_TABLES = (BUILTIN_INT8, BUILTIN)
"""Every shipped table; each names the model id it was measured with."""


def builtin_table(model_id: str | None = None) -> CalibrationTable:
    """The shipped devset table measured with ``model_id`` (see docs/performance.md).

    Selected by the ``model_id`` recorded inside each table, never by file
    name or config. Without ``model_id`` the table of the default build
    (int8); when no shipped table matches, that same default table, whose
    ``model_id`` the caller compares and refuses on a mismatch.
    """
    tables = [CalibrationTable.load(p) for p in BUILTIN_TABLES]
    return next((t for t in tables if t.model_id == model_id), tables[0])


class ThresholdPolicy:
    """Cosine threshold for the current gallery size (or a fixed override)."""

    def __init__(
        self, table: CalibrationTable, target_fmr: float, *, fixed: float | None = None
    ) -> None:
        self.table = table
        self.target_fmr = target_fmr
        self.fixed = fixed

    def per_comparison_fmr(self, gallery_size: int) -> float:
        return self.target_fmr / max(1, gallery_size)

    def threshold(self, gallery_size: int) -> float:
        if self.fixed is not None:
            return self.fixed
        return round(self.table.threshold_at(self.per_comparison_fmr(gallery_size)), 4)
