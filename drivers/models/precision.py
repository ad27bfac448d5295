"""Which build of the built-in SFace ``recognizer_precision = "auto"`` runs: measured once, then pinned.

Why not a CPU feature rule: on an AMD Zen 4 with AVX-512 VNNI the int8 build was
*slower* than fp32 on OpenCV's dnn (idle, embed p50 12.0 vs 10.2 ms; lead's
measurement, docs/performance.md) and it is less accurate on the devset (FNMR@1e-4
4.44% vs 4.28%). So ``auto`` is fp32 unless int8 is measured faster by a clear
margin (:data:`INT8_MIN_GAIN`) on this CPU, in the same interleaved probe that
picks the fp32 engine (``engines.time_candidates``).

Why pinned: the build is part of the model id, and templates of one id are
refused by the other (``registry.check_same_model``; the gallery loads only the
running id's templates). A timing probe that is re-run (new library version, a
quieter machine, a deleted probe cache) could flip the build and strand every
enrolled template. So the first ``auto`` decision is written to
``<cache_dir>/recognizer-build.json`` (:class:`BuildPin`), keyed by the
recogniser's model id only (not by CPU or library versions), and every later
start reuses it without measuring. A device upgraded from before pinning has no
pin but a model cache: it keeps the build that cache shows it ran (the int8 file
exists: int8, the old VNNI rule; else fp32), because its templates are of that
build (a probe that picks fp32 deletes the int8 file it built, so a lost pin
reads the same). Only an operator changes the build: by setting
``recognizer_precision`` explicitly (and re-enrolling), or, to measure again, by
deleting the whole model cache.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from .cache_file import read_object, write_object

_log = structlog.get_logger("facegate.models")

FP32 = "fp32"
INT8 = "int8"
PRECISIONS = (FP32, INT8)
INT8_MIN_GAIN = 0.15
"""int8 must be at least this fraction faster than the fastest fp32 engine to be chosen:
it is the less accurate build, so a tie or a gain inside the probe's noise keeps fp32."""


@dataclass(frozen=True, slots=True)
class PrecisionChoice:
    """The build ``auto`` runs and why (printed by ``facegate bench``)."""

    precision: str
    source: str
    """``probe`` (measured now), ``pinned`` (decided at an earlier start), ``earlier start``
    (a cache from before pinning: its build kept), ``config`` (forced) or ``only`` (a user
    recogniser: no int8 recipe)."""
    probe_ms: dict[str, float] = field(default_factory=dict)
    """Median ms per candidate (``<engine> fp32``, ``onnxruntime int8``) of the deciding probe."""
    load_avg: float | None = None
    """1-minute load average when the probe ran (above the core count: fp32, see
    :func:`decide_precision`)."""

    def as_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "source": self.source,
                "probe_ms": dict(self.probe_ms), "probe_load_avg": self.load_avg,
                "int8_min_gain": INT8_MIN_GAIN}


def decide_precision(probe_ms: Mapping[str, float], *, int8_key: str, busy: bool = False) -> str:
    """int8 when ``probe_ms[int8_key]`` beats every fp32 candidate by :data:`INT8_MIN_GAIN`.

    ``probe_ms`` maps candidate name to median ms (the other keys are fp32
    candidates). No int8 figure, no fp32 figure, or a probe taken while other
    processes competed for the cores (``busy``): fp32, the accurate build. Why
    busy means fp32: contention slows OpenCV's 2-thread fp32 engine more than
    int8 (at load 4.4 on 2 cores int8 read 9.0 vs 16.3 ms, where the idle
    pipeline ran it slower than fp32), so such a probe measures the load, not
    the CPU, and its result is pinned for good.
    """
    int8 = probe_ms.get(int8_key)
    fp32 = [v for k, v in probe_ms.items() if k != int8_key]
    if busy or int8 is None or not fp32:
        return FP32
    return INT8 if int8 <= (1.0 - INT8_MIN_GAIN) * min(fp32) else FP32


def machine_busy() -> bool:
    """1-minute load average above the core count: the probe would measure contention."""
    return os.getloadavg()[0] > (os.cpu_count() or 1)


class BuildPin:
    """The build ``auto`` chose on this device, per recogniser model id (write once).

    An unreadable file reads as "no pin" (the probe runs and writes it again); a
    file that cannot be written is logged and the device runs unpinned.
    """

    def __init__(self, cache_dir: Path) -> None:
        self.path = cache_dir / "recognizer-build.json"

    def _read(self) -> dict[str, Any]:
        return read_object(self.path)

    def get(self, model_id: str) -> PrecisionChoice | None:
        row = self._read().get(model_id)
        if not isinstance(row, dict) or row.get("precision") not in PRECISIONS:
            return None
        ms, load = row.get("probe_ms"), row.get("load_avg")
        return PrecisionChoice(str(row["precision"]), "pinned",
                               {str(k): float(v) for k, v in ms.items()}
                               if isinstance(ms, dict) else {},
                               float(load) if isinstance(load, int | float) else None)

    def put(self, model_id: str, choice: PrecisionChoice) -> PrecisionChoice:
        """Pin ``choice`` unless a pin exists: the first writer wins, so two processes
        starting together on one cache (``facegate run`` and ``facegate enroll``) agree.
        Returns the pinned choice (``choice``, or the other process's as ``pinned``)."""
        existing = self.get(model_id)
        if existing is not None:
            return existing
        data = self._read()
        data[model_id] = {"precision": choice.precision, "probe_ms": choice.probe_ms,
                          "load_avg": choice.load_avg}
        raced: list[PrecisionChoice] = []

        def place(tmp: str) -> None:
            try:
                os.link(tmp, self.path)  # atomic create-if-absent
            except FileExistsError:
                existing = self.get(model_id)
                if existing is not None:
                    raced.append(existing)
                    return
                os.replace(tmp, self.path)  # a file without this model's pin: add it

        try:
            write_object(self.path, data, place)
        except OSError as exc:
            _log.warning("models.build_not_pinned", error=exc.strerror or type(exc).__name__)
        return raced[0] if raced else choice
