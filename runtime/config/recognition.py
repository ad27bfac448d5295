"""Config section of the recognition pipeline (owned by handlers/recognition)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._fields import setting


@dataclass(frozen=True)
class RecognitionSection:
    """Face detection, quality, liveness, matching and the decision rule."""

    enabled: bool = setting(True, doc="Run the recognition pipeline on camera frames.")
    target_fmr: float = setting(
        1e-3, doc="Operating point: target false-match rate per comparison.", gt=0, le=0.1
    )
    calibration: Path | None = setting(
        None, doc="Calibration table written by 'facegate calibrate'; absent uses built-in defaults."
    )
