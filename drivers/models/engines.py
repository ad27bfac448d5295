"""Recogniser engines: the same fp32 graph on onnxruntime or on OpenCV's dnn, chosen by measurement.

Why: on CPUs without VNNI (e.g. AMD Zen 3, AVX2 + FMA only) neither onnxruntime
build is the fastest way to run SFace: OpenCV's own ``cv2.dnn`` (already a
dependency: it fuses Conv + BN + PReLU and parallelises well over 2 cores) ran
the plain fp32 fold in 11.9 ms where onnxruntime took 14.5 ms (int8) and
18.9 ms (fp32 rewrite), idle, 2 cores (docs/performance.md, issue 16 round 3).

* :class:`OpenCvSession` puts a ``cv2.dnn.Net`` behind the small session
  surface :class:`~.embedder.FaceEmbedder` uses (``run``, ``get_inputs``,
  ``get_outputs``). It runs fp32 graphs only (OpenCV cannot run the int8 QDQ
  build), on OpenCV's own thread pool (``cv2.getNumThreads()``, process-wide).
* :func:`choose_engine` times every candidate on the same input, interleaved
  (warm-up first, then rounds of one run each, so background load hits all
  alike), drops any candidate whose output is not the reference's (cosine
  < :data:`FAITHFUL_COS`: every candidate must compute the same function, so
  the model id and the templates do not depend on the engine), and keeps the
  one with the lowest median. The choice is cached per CPU, library versions,
  model file and thread budget (:class:`ProbeCache`), so a device probes once
  (again when a choice made on a busy machine meets a quieter one).

The precision (int8 or fp32) changes the model id, so its probe
(:func:`time_candidates` over both builds, ``precision.py``) runs once per
device and its result is pinned, never re-measured like the engine choice.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import structlog

from ...runtime.machine import cpu_features, cpu_model
from .cache_file import read_object, write_object
from .errors import ModelFormatError

_log = structlog.get_logger("facegate.models")

ONNXRUNTIME = "onnxruntime"
OPENCV = "opencv"
ENGINES = (ONNXRUNTIME, OPENCV)
FAITHFUL_COS = 0.9999
"""Minimum cosine of a candidate's output to the reference engine's on the probe input."""
PROBE_VERSION = "1"


class Session(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the embedder uses."""

    def get_inputs(self) -> Any: ...
    def get_outputs(self) -> Any: ...
    def run(self, output_names: Sequence[str] | None, feeds: dict[str, Any]) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class _Arg:
    name: str
    shape: list[int | str]


class OpenCvSession:
    """A ``cv2.dnn.Net`` with the session surface of :class:`~.embedder.FaceEmbedder`.

    One input of shape ``1x3x112x112`` (batch fixed at 1: the embedder loops
    over rows) and one output row. ``cv2.dnn.Net`` is not thread-safe: runs are
    serialised by a lock. Blocking: call off the event loop.
    """

    def __init__(self, path: Path, *, input_shape: tuple[int, int, int] = (3, 112, 112)) -> None:
        try:
            self._net = cv2.dnn.readNetFromONNX(str(path))
            self._net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            names = list(self._net.getUnconnectedOutLayersNames())
        except cv2.error as exc:
            raise ModelFormatError(f"OpenCV dnn cannot load {path.name}: {exc}") from None
        self._lock = threading.Lock()
        self._inputs = [_Arg("input", [1, *input_shape])]
        self._outputs = [_Arg(names[0] if names else "output", [1, "dim"])]
        self.path = path

    def get_inputs(self) -> list[_Arg]:
        return self._inputs

    def get_outputs(self) -> list[_Arg]:
        return self._outputs

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, Any]) -> list[Any]:
        (blob,) = feeds.values()
        x = np.ascontiguousarray(blob, dtype=np.float32)
        with self._lock:
            self._net.setInput(x)
            out = self._net.forward()
        return [np.asarray(out, dtype=np.float32).reshape(x.shape[0], -1)]


@dataclass(frozen=True, slots=True)
class EngineChoice:
    """Which engine runs the recogniser, and why (printed by ``facegate bench``)."""

    engine: str
    source: str
    """``probe`` (measured now), ``cache`` (measured earlier on this CPU), ``config`` (forced)
    or ``only`` (a single candidate, e.g. int8, which OpenCV cannot run)."""
    probe_ms: dict[str, float] = field(default_factory=dict)
    """Median ms per candidate in the probe that made the choice (empty when forced)."""
    dropped: tuple[str, ...] = ()
    """Candidates refused because their output differed from the reference."""

    def as_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "source": self.source, "probe_ms": dict(self.probe_ms),
                "dropped": list(self.dropped)}


def probe_input(seed: int = 20261201) -> npt.NDArray[np.float32]:
    """A deterministic face-sized NCHW input (smooth gradient plus noise, 0-255)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 255.0, 112, dtype=np.float32)
    img = (ramp[None, :] + ramp[:, None]) / 2 + rng.normal(0, 20, (3, 112, 112))
    return np.clip(img, 0, 255).astype(np.float32)[None]


def _row(session: Session, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    name = session.get_inputs()[0].name
    y = np.asarray(session.run(None, {name: x})[0], np.float64).ravel()
    return y / max(float(np.linalg.norm(y)), 1e-12)


def choose_engine(
    candidates: Mapping[str, Session],
    *,
    rounds: int = 9,
    warmup: int = 10,
    timer: Callable[[], float] = time.perf_counter,
) -> EngineChoice:
    """The fastest faithful candidate (the first one is the reference). Blocking.

    Every candidate runs ``warmup`` untimed runs, then ``rounds`` rounds of one
    timed run each, candidates interleaved; the median decides. 10 warm-up runs:
    a fresh OpenCV net read 15 ms per run after 2 warm-up runs and 8.3 ms warm
    (Zen 4, load 2.2), which biased a 2-run warm-up against it.
    """
    if not candidates:
        raise ValueError("no engine candidates")
    names = list(candidates)
    if len(names) == 1:
        return EngineChoice(names[0], "only")
    x = probe_input()
    ref = _row(candidates[names[0]], x)
    dropped = []
    for n in names[1:]:
        try:
            cos = float(_row(candidates[n], x) @ ref)
        except Exception as exc:  # noqa: BLE001 - an engine that cannot run is simply not chosen
            _log.warning("models.engine_failed", engine=n, error=type(exc).__name__)
            cos = -1.0
        if cos < FAITHFUL_COS:
            dropped.append(n)
    live = {n: s for n, s in candidates.items() if n not in dropped}
    ms = time_candidates(live, rounds=rounds, warmup=warmup, timer=timer)
    best = min(ms, key=lambda n: ms[n])
    return EngineChoice(best, "probe", ms, tuple(dropped))


def time_candidates(
    candidates: Mapping[str, Session],
    *,
    rounds: int = 9,
    warmup: int = 10,
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median ms per candidate on :func:`probe_input`. Blocking.

    Every candidate runs ``warmup`` untimed runs, then ``rounds`` rounds of one
    timed run each, candidates interleaved, so background load hits all alike.
    """
    x = probe_input()
    feeds = {n: {s.get_inputs()[0].name: x} for n, s in candidates.items()}
    for n, s in candidates.items():
        for _ in range(warmup):
            s.run(None, feeds[n])
    times: dict[str, list[float]] = {n: [] for n in candidates}
    for _ in range(rounds):
        for n, s in candidates.items():
            t = timer()
            s.run(None, feeds[n])
            times[n].append((timer() - t) * 1e3)
    return {n: round(statistics.median(v), 3) for n, v in times.items()}


def probe_key(model_file: str, threads: int) -> str:
    """What a cached choice depends on: CPU, library versions, model file, thread budget."""
    import onnxruntime as ort  # noqa: PLC0415 - already imported by the loader; version only

    feats = ",".join(sorted(cpu_features()))
    return (f"v{PROBE_VERSION}|{cpu_model()}|{feats}|{os.cpu_count()}|ort {ort.__version__}|"
            f"cv2 {cv2.__version__}|cv2 threads {cv2.getNumThreads()}|{model_file}|t{threads}")


class ProbeCache:
    """Engine choices measured on this machine, in ``<cache_dir>/engine-probe.json``.

    Delete the file (or set ``recognition.models.recognizer_engine``) to choose again.
    A cache that cannot be read or written is ignored: the probe just runs again.
    """

    def __init__(self, cache_dir: Path) -> None:
        self.path = cache_dir / "engine-probe.json"

    def _read(self) -> dict[str, Any]:
        return read_object(self.path)

    def get(self, key: str, *, load_now: float | None = None) -> EngineChoice | None:
        """The cached choice for ``key``; None when absent, unreadable, or measured on a busy
        machine (1-minute load above the core count) that is now at most half as busy, so
        a choice made under contention is measured again in quieter conditions."""
        row = self._read().get(key)
        if not isinstance(row, dict) or row.get("engine") not in ENGINES:
            return None
        then = row.get("load_avg")
        now = os.getloadavg()[0] if load_now is None else load_now
        if isinstance(then, int | float) and then > (os.cpu_count() or 1) and now <= then / 2:
            return None
        ms = row.get("probe_ms")
        return EngineChoice(str(row["engine"]), "cache",
                            {str(k): float(v) for k, v in ms.items()} if isinstance(ms, dict) else {})

    def put(self, key: str, choice: EngineChoice) -> None:
        data = self._read()
        data[key] = {"engine": choice.engine, "probe_ms": choice.probe_ms,
                     "load_avg": round(os.getloadavg()[0], 2)}
        try:
            write_object(self.path, data)
        except OSError as exc:
            _log.warning("models.engine_probe_not_cached", error=exc.strerror or type(exc).__name__)
