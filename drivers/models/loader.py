"""Loading the detector and recogniser: verify pin, convert (cached), open session.

:func:`load_models` is the one entry point the pipeline, the enrolment API,
``facegate calibrate`` and ``facegate bench`` use. It is blocking (hashing,
conversion and session creation take ~0.1-1 s); async callers use
:func:`load_models_async`, which also reports a refused file on the bus.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.events import SecurityEvent, SecurityKind
from .cached import converted_path, optimized_path
from .detector import FaceDetector
from .embedder import FaceEmbedder
from .engines import (
    ONNXRUNTIME,
    OPENCV,
    EngineChoice,
    OpenCvSession,
    ProbeCache,
    choose_engine,
    probe_key,
    time_candidates,
)
from .errors import ModelCacheError, ModelFormatError, ModelHashMismatch
from .precision import FP32, INT8, BuildPin, PrecisionChoice, decide_precision, machine_busy
from .registry import BUILTIN_DETECTOR, BUILTIN_RECOGNIZER, ModelSpec, verify_pin
from .session import make_session
from .spin import AdaptiveSpin

_log = structlog.get_logger("facegate.models")


def default_cache_dir(config_path: Path | None = None) -> Path:
    """``<config dir>/model-cache`` when a config file is known, else the user cache."""
    if config_path is not None:
        return config_path.resolve().parent / "model-cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facegate" / "models"


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """What to load and how. Defaults are the pinned built-in YuNet + SFace."""

    detector: ModelSpec = BUILTIN_DETECTOR
    recognizer: ModelSpec = BUILTIN_RECOGNIZER
    cache_dir: Path | None = None
    detector_threads: int = 1
    recognizer_threads: int = 2
    detector_input_width: int = 320
    detector_score: float = 0.6
    recognizer_spin: Literal["auto", "on", "off"] = "auto"
    """Recogniser threads busy-wait within a run: always, never, or per run by measured
    latency (``auto``, :class:`~.spin.AdaptiveSpin`)."""
    recognizer_precision: str | None = None
    """``int8``: the built-in SFace quantised with the recipe in
    ``quantize.py``; its model id gains ``:int8r<N>-<ranges hash>``, so
    templates and calibration tables must be made with it. ``fp32``: the
    exact fp32 function of the plain fold (same embeddings and model id on
    every engine). ``None`` or ``auto`` (default): :func:`resolve_precision`
    (the build pinned on this device; at the first start fp32 unless int8 is
    measured faster by a clear margin, then pinned: ``precision.py``)."""
    recognizer_engine: Literal["auto", "onnxruntime", "opencv"] = "auto"
    """Who runs an fp32 recogniser: onnxruntime (the exact rewrite), OpenCV's dnn (the
    plain fold), or ``auto``: the faster of the two as measured on this CPU
    (``engines.choose_engine``, cached). int8 always runs on onnxruntime."""


@dataclass(frozen=True, slots=True)
class LoadedModels:
    """A ready detector and recogniser. ``model_id`` is the recogniser's id."""

    detector: FaceDetector
    embedder: FaceEmbedder
    detector_path: Path
    recognizer_path: Path
    reference_recognizer_path: Path | None = None
    """The plain fp32 fold of the recogniser (before the exact rewrites of
    ``optimize.py``); ``None`` when ``recognizer_path`` is that fold. OpenCV's
    reference path in ``facegate bench`` runs this file."""
    detector_id: str = BUILTIN_DETECTOR.model_id
    """The detector's id (``<name>@<sha256[:8]>``); it changes with the file."""
    engine: EngineChoice = field(default_factory=lambda: EngineChoice(ONNXRUNTIME, "config"))
    """Which engine runs the recogniser and why (``engines.py``)."""
    precision: PrecisionChoice = field(default_factory=lambda: PrecisionChoice(FP32, "config"))
    """Which build runs and why (``precision.py``)."""

    @property
    def model_id(self) -> str:
        return self.embedder.model_id


def resolve_precision(
    recognizer: ModelSpec, requested: str | None, cache_dir: Path | None = None
) -> PrecisionChoice | None:
    """The recogniser build for ``requested``; None when ``auto`` must measure it first.

    A forced build (``fp32``/``int8``) is used as is. ``None``/``auto``: a user
    recogniser is fp32 (no int8 recipe); the built-in SFace runs the build
    pinned in ``cache_dir`` by an earlier start (:class:`~.precision.BuildPin`),
    so a device never switches builds under its stored templates (they carry
    the model id, and the other build's id refuses them). Unpinned: None, and
    :func:`load_models` measures both builds (:func:`probe_precision`: fp32
    unless int8 is faster by :data:`~.precision.INT8_MIN_GAIN`) and pins the result.
    """
    if requested not in (None, "auto"):
        return PrecisionChoice(str(requested), "config")
    if recognizer != BUILTIN_RECOGNIZER:
        return PrecisionChoice(FP32, "only")
    return BuildPin(cache_dir).get(recognizer.model_id) if cache_dir is not None else None


INT8_CANDIDATE = "onnxruntime int8"


def probe_precision(
    fp32_path: Path, plain_path: Path, int8_path: Path, threads: int
) -> PrecisionChoice:
    """Time the int8 build against fp32 on both engines, interleaved, and decide. Blocking.

    The lowest seam of the ``auto`` choice (tests replace it with a fixed result).
    """
    candidates: dict[str, Any] = {
        "onnxruntime fp32": make_session(fp32_path, intra_threads=threads),
        INT8_CANDIDATE: make_session(int8_path, intra_threads=threads),
    }
    try:
        candidates["opencv fp32"] = OpenCvSession(plain_path)
    except ModelFormatError as exc:
        _log.info("models.engine_unavailable", engine=OPENCV, error=str(exc)[:120])
    # 10 warm-up runs: a fresh session's first runs are slow (OpenCV's read 15 ms warm-up
    # against 8.3 ms warm here), which would bias a short probe against one engine.
    ms = time_candidates(candidates, warmup=10, rounds=15)
    busy = machine_busy()
    return PrecisionChoice(decide_precision(ms, int8_key=INT8_CANDIDATE, busy=busy), "probe", ms,
                           round(os.getloadavg()[0], 2))


def _recognizer_session(
    opts: ModelOptions, rec_path: Path, plain_rec: Path, precision: str, cache: Path
) -> tuple[Any, EngineChoice]:
    """The recogniser's session on the engine ``opts`` asks for (measured when ``auto``)."""
    threads = opts.recognizer_threads

    def ort_session() -> Any:
        if opts.recognizer_spin == "auto":
            return AdaptiveSpin(
                make_session(rec_path, intra_threads=threads, spin=False),
                make_session(rec_path, intra_threads=threads, spin=True),
            )
        return make_session(rec_path, intra_threads=threads, spin=opts.recognizer_spin == "on")

    wanted = opts.recognizer_engine
    if wanted == OPENCV:
        if precision != "fp32":
            raise ModelFormatError(
                "OpenCV's dnn runs fp32 graphs only: set recognizer_precision = \"fp32\" "
                "or recognizer_engine = \"onnxruntime\"")
        return OpenCvSession(plain_rec), EngineChoice(OPENCV, "config")
    if wanted == ONNXRUNTIME or precision != "fp32":
        return ort_session(), EngineChoice(ONNXRUNTIME, "config" if wanted == ONNXRUNTIME else "only")
    probes = ProbeCache(cache)
    key = probe_key(plain_rec.name, threads)
    cached = probes.get(key)
    if cached is not None:
        try:
            return (OpenCvSession(plain_rec) if cached.engine == OPENCV else ort_session()), cached
        except ModelFormatError:
            pass  # measure again below
    candidates: dict[str, Any] = {ONNXRUNTIME: ort_session()}
    try:
        candidates[OPENCV] = OpenCvSession(plain_rec)
    except ModelFormatError as exc:
        _log.info("models.engine_unavailable", engine=OPENCV, error=str(exc)[:120])
    choice = choose_engine(candidates)
    if choice.source == "probe":
        probes.put(key, choice)
    _log.info("models.engine_chosen", engine=choice.engine, probe_ms=choice.probe_ms,
              dropped=list(choice.dropped))
    return candidates[choice.engine], choice


def convert_cached(source: Path, source_hash: str, cache_dir: Path, *, dynamic_spatial: bool) -> Path:
    """:func:`.convert.convert_cached`, importing the converter only on a cache miss."""
    target = converted_path(source, source_hash, cache_dir)
    if target.is_file():
        return target
    from . import convert  # noqa: PLC0415 - imports onnx (+27 MB RSS, issue 16): only when converting

    return convert.convert_cached(source, source_hash, cache_dir, dynamic_spatial=dynamic_spatial)


def optimized_cached(plain: Path) -> Path:
    """:func:`.convert.optimized_cached`, importing the optimiser only on a cache miss.

    A rewrite that failed caches nothing and falls back to ``plain``; such a model
    retries it (and imports onnx) at each start, as before.
    """
    target = optimized_path(plain)
    if target.is_file():
        return target
    from . import convert  # noqa: PLC0415 - imports onnx (+27 MB RSS, issue 16): only when optimising

    return convert.optimized_cached(plain)


def _int8_cached(opts: ModelOptions, rec_path: Path, plain_rec: Path, cache: Path) -> Path:
    """The int8 build of the built-in SFace (quantised once, cached)."""
    from .quantize import BUILTIN_RANGES, quantize_cached  # noqa: PLC0415 - pulls in onnxruntime.quantization

    if opts.recognizer != BUILTIN_RECOGNIZER or rec_path == plain_rec:
        raise ModelFormatError("int8 precision is available for the built-in SFace only")
    try:
        return quantize_cached(rec_path, BUILTIN_RANGES)
    except OSError as exc:
        raise ModelCacheError(
            f"model cache {cache} cannot be written ({exc.strerror or exc}): "
            "set recognition.models.cache_dir to a writable folder"
        ) from None


def _earlier_build(rec_path: Path) -> PrecisionChoice:
    """The build a start before pinning ran, read from the model cache it left.

    Before builds were pinned, ``auto`` meant int8 on VNNI CPUs (and the int8 file
    was cached then), else fp32: a device upgraded from then keeps the build its
    templates were made with. A cache with the fp32 fold but no int8 file ran fp32.
    """
    from .quantize import BUILTIN_RANGES, quantized_path  # noqa: PLC0415 - only when unpinned

    if quantized_path(rec_path, BUILTIN_RANGES).is_file():
        return PrecisionChoice(INT8, "earlier start")
    return PrecisionChoice(FP32, "earlier start")


def load_models(opts: ModelOptions | None = None) -> LoadedModels:
    """Verify both pins, convert once into the cache, and open tuned sessions.

    Raises ModelHashMismatch (file refused, nothing loaded), ModelFileMissing,
    or ModelFormatError.
    """
    opts = opts or ModelOptions()
    cache = opts.cache_dir or default_cache_dir()
    verify_pin(opts.detector)
    verify_pin(opts.recognizer)
    # Converted at an earlier start (before builds were pinned): see _earlier_build.
    started_before = converted_path(opts.recognizer.path, opts.recognizer.sha256, cache).is_file()
    try:
        det_path = convert_cached(opts.detector.path, opts.detector.sha256, cache, dynamic_spatial=True)
        plain_rec = convert_cached(
            opts.recognizer.path, opts.recognizer.sha256, cache, dynamic_spatial=False
        )
        rec_path = optimized_cached(plain_rec)
    except OSError as exc:
        # The pins were verified above, so an OSError here is the cache folder (an operator
        # mistake): say which folder and which key, not a traceback.
        raise ModelCacheError(
            f"model cache {cache} cannot be written ({exc.strerror or exc}): "
            "set recognition.models.cache_dir to a writable folder"
        ) from None
    model_id = opts.recognizer.model_id
    choice = resolve_precision(opts.recognizer, opts.recognizer_precision, cache)
    if choice is None:  # auto, unpinned: the earlier start's build, or measure both; then pin
        probed: Path | None = None
        if started_before:
            choice = _earlier_build(rec_path)
        elif rec_path == plain_rec:  # the exact rewrite failed: no int8 build to compare
            choice = PrecisionChoice(FP32, "only")
        else:
            probed = _int8_cached(opts, rec_path, plain_rec, cache)
            choice = probe_precision(rec_path, plain_rec, probed, opts.recognizer_threads)
        choice = BuildPin(cache).put(model_id, choice)
        if probed is not None and choice.precision == FP32:
            # Keep "an int8 file in the cache = this device ran int8" (_earlier_build).
            probed.unlink(missing_ok=True)
        _log.info("models.build_chosen", precision=choice.precision, probe_ms=choice.probe_ms)
    precision = choice.precision
    if precision == INT8:
        from .quantize import BUILTIN_RANGES, recipe_tag  # noqa: PLC0415 - pulls in onnxruntime.quantization

        rec_path = _int8_cached(opts, rec_path, plain_rec, cache)
        # ":" not "+": model ids must pass storage's id rule (A-Z a-z 0-9 . _ : @ -).
        model_id = f"{model_id}:{recipe_tag(BUILTIN_RANGES)}"
    elif precision != FP32:
        raise ModelFormatError(f"unknown recognizer precision {precision!r}")
    detector = FaceDetector(
        make_session(det_path, intra_threads=opts.detector_threads),
        input_width=opts.detector_input_width,
        score_threshold=opts.detector_score,
    )
    session, engine = _recognizer_session(opts, rec_path, plain_rec, precision, cache)
    embedder = FaceEmbedder(session, opts.recognizer, model_id=model_id)
    _log.info(
        "models.loaded",
        detector=opts.detector.model_id,
        recognizer=embedder.model_id,
        dim=embedder.dim,
        engine=engine.engine,
        precision=precision,
        precision_source=choice.source,
    )
    reference = plain_rec if rec_path != plain_rec else None
    return LoadedModels(detector, embedder, det_path, rec_path, reference,
                        detector_id=opts.detector.model_id, engine=engine, precision=choice)


async def load_models_async(
    opts: ModelOptions | None = None,
    *,
    bus: EventBus | None = None,
    clock: Clock | None = None,
) -> LoadedModels:
    """:func:`load_models` off the loop; a refused file is also a ``MODEL_REJECTED`` event."""
    try:
        return await asyncio.to_thread(load_models, opts)
    except ModelHashMismatch as exc:
        _log.error("models.rejected", path=exc.path, expected=exc.expected[:16],
                   actual=exc.actual[:16])
        if bus is not None and clock is not None:
            bus.publish(
                SecurityEvent(
                    at=clock.wall(),
                    kind=SecurityKind.MODEL_REJECTED,
                    detail=f"model file {Path(exc.path).name} failed its sha256 pin",
                    source="recognition.models",
                )
            )
        raise
