"""Benchmarks behind ``facegate bench`` (numbers printed, never asserted in tests).

Pipeline: a 640x480 JPEG frame with one face (a sample photo, shifted by a
few pixels per frame so caches cannot make repeats free) goes through decode
(cv2.imdecode), detect, quality, align, embed and a 1:N search against a
1,000-subject gallery. OpenCV's own path (``cv2.FaceDetectorYN`` at the
frame size + ``cv2.FaceRecognizerSF`` alignCrop/feature, fed the plain fp32
fold of the same pinned files, on OpenCV's own thread pool of
``cv2.getNumThreads()`` threads, 2 here, the same budget as ours: detector 1
thread then recogniser 2 threads) runs on the same JPEG bytes.

Like for like: both paths start their clock on the *encoded* JPEG bytes and
run the same ``cv2.imdecode`` inside their timed section (``OURS_STAGES`` /
``OPENCV_STAGES`` name what each total includes; ours does strictly more:
the quality gate and the 1:N search). Both get the same warm-up, and
:func:`bench_compare` alternates the two paths in blocks of frames so a
change in background load hits both alike.

Matcher: N random unit 128-d templates; probes are mated (an enrolled
template mixed with noise to cosine ~0.6, like a genuine SFace pair), which
is the case where missing the true row would change a decision. Recall@1 is
measured against exact float32 search. Plain numpy (GEMV + argmax) and
faiss ``IndexFlatIP`` (when installed) run on the same data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.loader import LoadedModels
from .align import align_face
from .matcher import Matcher
from .quality import QualityLimits, assess

STAGES = ("decode", "detect", "quality", "align", "embed", "search", "total")


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 3),
            "p99": round(float(np.percentile(a, 99)), 3)}


def _decode(data: bytes) -> npt.NDArray[np.uint8]:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("bench frame does not decode")
    return np.asarray(img, dtype=np.uint8)


def make_frames(face_image: Path, count: int) -> list[bytes]:
    """``count`` JPEG 640x480 frames with the face shifted by up to 3 px."""
    img = cv2.imread(str(face_image))
    if img is None:
        raise FileNotFoundError(face_image)
    h, w = img.shape[:2]
    scale = max(660 / w, 500 / h)
    big = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    frames = []
    rng = np.random.default_rng(7)
    for _ in range(count):
        dx, dy = (int(v) for v in rng.integers(0, 7, 2))
        frame = np.ascontiguousarray(big[dy : dy + 480, dx : dx + 640])
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        frames.append(buf.tobytes())
    return frames


OURS_STAGES = ("decode", "detect", "quality", "align", "embed", "search")
"""What our timed total includes, in order."""
OPENCV_STAGES = ("decode", "detect", "align", "embed")
"""What OpenCV's timed total includes: the same imdecode, FaceDetectorYN,
alignCrop and feature (it has no quality gate and no 1:N search)."""


@dataclass
class PipelineResult:
    stages: dict[str, dict[str, float]]
    sustained_fps: float
    opencv: dict[str, float] = field(default_factory=dict)
    opencv_stages: dict[str, dict[str, float]] = field(default_factory=dict)
    opencv_at_input: dict[str, float] = field(default_factory=dict)
    """OpenCV's path with its detector given facegate's detector input width (like for like)."""
    detector_input_width: int = 0

    def ratios(self) -> dict[str, float | None]:
        """Our total over OpenCV's, p50 and p99, at 640 px and at our detector input width."""
        ours = self.stages["total"]
        out: dict[str, float | None] = {}
        for key, ref in (("640", self.opencv), ("input", self.opencv_at_input)):
            for q in ("p50", "p99"):
                r = ref.get(q)
                out[f"{q}_vs_opencv_{key}"] = round(ours[q] / r, 3) if r else None
        return out


class _OurPath:
    """Our pipeline, one frame at a time, with per-stage times in ms."""

    def __init__(self, models: LoadedModels, gallery: int) -> None:
        self.models = models
        self.matcher = Matcher(models.model_id, models.embedder.dim)
        rng = np.random.default_rng(1)
        g = rng.standard_normal((gallery, models.embedder.dim)).astype(np.float32)
        self.matcher.add_batch([f"s{i}" for i in range(gallery)],
                               [f"t{i}" for i in range(gallery)], g, models.model_id)
        self.limits = QualityLimits()

    def run(self, data: bytes) -> dict[str, float] | None:
        t0 = time.perf_counter()
        bgr = _decode(data)
        t1 = time.perf_counter()
        faces = self.models.detector.detect(bgr)
        t2 = time.perf_counter()
        if not faces:
            return None
        target = max(faces, key=lambda d: d.area)
        assess(bgr, target, self.limits)
        t3 = time.perf_counter()
        crop = align_face(bgr, target.landmarks)
        t4 = time.perf_counter()
        emb = self.models.embedder.embed(crop)[0]
        t5 = time.perf_counter()
        self.matcher.search(emb, k=2)
        t6 = time.perf_counter()
        marks = (t0, t1, t2, t3, t4, t5, t6)
        out = {s: (marks[i + 1] - marks[i]) * 1e3 for i, s in enumerate(OURS_STAGES)}
        out["total"] = (t6 - t0) * 1e3
        return out


class _OpenCVPath:
    """OpenCV's own YuNet + SFace path on the same JPEG bytes and (converted) models."""

    def __init__(self, models: LoadedModels, input_width: int | None = None) -> None:
        """``input_width``: detect on the frame scaled to this width (facegate's detector
        input, like for like) and map the face back to the full frame for alignment."""
        self.input_width = input_width
        self.det = cv2.FaceDetectorYN.create(str(models.detector_path), "", (640, 480),
                                             0.6, 0.3, 50)
        # OpenCV gets the plain fp32 fold (its own fused Conv+PReLU path is fast
        # on it), not our onnxruntime-specific rewrite or int8 build of it.
        rec_path = models.reference_recognizer_path or models.recognizer_path
        self.rec = cv2.FaceRecognizerSF.create(str(rec_path), "")

    def run(self, data: bytes) -> dict[str, float] | None:
        t0 = time.perf_counter()
        bgr = _decode(data)
        return self.run_bgr(bgr, t0)

    def run_bgr(self, bgr: npt.NDArray[np.uint8], t0: float | None = None, *,
                every_face: bool = False) -> dict[str, float] | None:
        """The path on a decoded frame (``t0``: when its clock started; now if None).

        ``every_face``: align and embed every face found (OpenCV's path over a scene
        with several people), else the first one (the one-face frames of the bench)."""
        t0 = time.perf_counter() if t0 is None else t0
        t1 = time.perf_counter()
        small, scale = bgr, 1.0
        if self.input_width is not None and bgr.shape[1] > self.input_width:
            scale = self.input_width / bgr.shape[1]
            small = np.asarray(cv2.resize(bgr, (self.input_width, round(bgr.shape[0] * scale)),
                                          interpolation=cv2.INTER_LINEAR), dtype=np.uint8)
        self.det.setInputSize((small.shape[1], small.shape[0]))
        _, faces = self.det.detect(small)
        if faces is not None and scale != 1.0:
            mapped = np.asarray(faces, dtype=np.float32).copy()
            mapped[:, :14] = mapped[:, :14] / scale
            faces = mapped
        t2 = time.perf_counter()
        if faces is None or not len(faces):
            return None
        crops = [self.rec.alignCrop(bgr, f) for f in (faces if every_face else faces[:1])]
        t3 = time.perf_counter()
        for crop in crops:
            self.rec.feature(crop)
        t4 = time.perf_counter()
        marks = (t0, t1, t2, t3, t4)
        out = {s: (marks[i + 1] - marks[i]) * 1e3 for i, s in enumerate(OPENCV_STAGES)}
        out["total"] = (t4 - t0) * 1e3
        return out


def _collect(rows: list[dict[str, float]], stages: tuple[str, ...]) -> dict[str, dict[str, float]]:
    if not rows:
        raise RuntimeError("no face found in the bench frames")
    return {s: percentiles([r[s] for r in rows]) for s in (*stages, "total")}


def bench_compare(
    models: LoadedModels, frames: list[bytes], *, gallery: int = 1000, block: int = 10,
    warmup: int = 10,
) -> PipelineResult:
    """Our path and OpenCV's on the same JPEG ``frames``, alternating in blocks.

    Each path first runs ``warmup`` frames untimed; then blocks of ``block``
    frames go through ours, then OpenCV's, then the next block, so both see
    the same background load. Sustained fps is ours, back to back, afterwards.
    """
    width = int(getattr(models.detector, "input_width", 320))
    ours, ocv = _OurPath(models, gallery), _OpenCVPath(models)
    ocv_in = _OpenCVPath(models, width)
    for data in frames[:warmup]:
        ours.run(data)
        ocv.run(data)
        ocv_in.run(data)
    ours_rows: list[dict[str, float]] = []
    ocv_rows: list[dict[str, float]] = []
    ocv_in_rows: list[dict[str, float]] = []
    for i in range(0, len(frames), block):
        chunk = frames[i : i + block]
        ours_rows.extend(r for d in chunk if (r := ours.run(d)) is not None)
        ocv_rows.extend(r for d in chunk if (r := ocv.run(d)) is not None)
        ocv_in_rows.extend(r for d in chunk if (r := ocv_in.run(d)) is not None)
    stages = _collect(ours_rows, OURS_STAGES)
    ocv_stages = _collect(ocv_rows, OPENCV_STAGES)
    start = time.perf_counter()
    for data in frames:
        ours.run(data)
    fps = len(frames) / (time.perf_counter() - start)
    return PipelineResult(stages=stages, sustained_fps=round(fps, 1),
                          opencv=ocv_stages["total"], opencv_stages=ocv_stages,
                          opencv_at_input=_collect(ocv_in_rows, OPENCV_STAGES)["total"],
                          detector_input_width=width)


def _probes(
    x: npt.NDArray[np.float32], n: int, cos: float, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    idx = rng.integers(0, x.shape[0], n)
    noise = rng.standard_normal((n, x.shape[1])).astype(np.float32)
    noise -= (noise * x[idx]).sum(1, keepdims=True) * x[idx]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    q = cos * x[idx] + np.sqrt(1 - cos**2) * noise
    return idx, (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def _time(fn: Callable[[npt.NDArray[np.float32]], Any], qs: npt.NDArray[np.float32]) -> list[float]:
    ms = []
    for q in qs:
        t = time.perf_counter()
        fn(q)
        ms.append((time.perf_counter() - t) * 1e3)
    return ms


def bench_matcher(n: int, *, queries: int = 100, dim: int = 128, seed: int = 0) -> dict[str, Any]:
    """Search latency at ``n`` templates: ours and plain numpy float32 (interleaved, query by
    query, so background load hits both alike), then faiss IndexFlatIP."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    m = Matcher("bench@0", dim)
    m.reserve(n)
    ids = [str(i) for i in range(n)]
    m.add_batch(ids, ids, x, "bench@0")
    _, qs = _probes(x, queries, 0.6, rng)
    m.search(qs[0])  # warm-up: creates the int8 session
    ours: list[float] = []
    plain: list[float] = []
    for q in qs:
        ours.extend(_time(lambda v: m.search(v, k=2), q[None]))
        plain.extend(_time(lambda v: int(np.argmax(x @ v)), q[None]))
    exact = [int(np.argmax(x @ q)) for q in qs]
    hits = sum(
        1 for e, q in zip(exact, qs, strict=True)
        if (b := m.search(q, k=1).best) is not None and b.template_id == str(e)
    )
    out: dict[str, Any] = {
        "n": n,
        "ours": percentiles(ours),
        "mode": m.kernel,
        "recall_at_1": round(hits / len(exact), 4),
        "numpy": percentiles(plain),
        "order": "ours and numpy alternate query by query",
    }
    try:
        import faiss  # noqa: PLC0415 - optional dependency, imported only when benchmarking
    except ImportError:
        out["faiss"] = None
    else:
        index = faiss.IndexFlatIP(dim)
        index.add(x)
        out["faiss"] = percentiles(_time(lambda q: index.search(q[None], 2), qs))
    return out


ENGINE_VARIANTS = (
    ("onnxruntime int8, 2 threads", "int8", "onnxruntime", 2),
    ("onnxruntime int8, 1 thread", "int8", "onnxruntime", 1),
    ("onnxruntime fp32, 2 threads", "fp32", "onnxruntime", 2),
    ("opencv dnn fp32", "fp32", "opencv", 2),
)
"""(label, precision, engine, onnxruntime threads) compared by :func:`bench_engines`."""


def bench_engines(frames: list[bytes], *, rounds: int = 40, spin: str = "auto") -> dict[str, Any]:
    """Embedding alone on each recogniser build and engine, interleaved, on real aligned crops.

    One crop per run (the crops of the bench frames, cycled); the variants take
    turns run by run, so background load hits all alike. ``cos_min_to_fp32``:
    the lowest cosine of each variant's embedding to onnxruntime fp32's on the
    same crops (fp32 engines must be ~1.0; int8 >= 0.99 is its fidelity bound).
    """
    from ...drivers.models.loader import ModelOptions, load_models  # noqa: PLC0415 - avoids a cycle at import

    loaded = {
        label: load_models(ModelOptions(recognizer_precision=prec, recognizer_engine=eng,  # type: ignore[arg-type]  # literals from ENGINE_VARIANTS
                                        recognizer_threads=threads,
                                        recognizer_spin=spin))  # type: ignore[arg-type]  # CLI-checked literal
        for label, prec, eng, threads in ENGINE_VARIANTS
    }
    first = next(iter(loaded.values()))
    crops = []
    for data in frames[:8]:
        bgr = _decode(data)
        faces = first.detector.detect(bgr)
        if faces:
            crops.append(align_face(bgr, max(faces, key=lambda d: d.area).landmarks))
    if not crops:
        raise RuntimeError("no face found in the bench frames")
    batch = np.stack(crops)
    ref = loaded["onnxruntime fp32, 2 threads"].embedder.embed(batch)
    out: dict[str, Any] = {}
    times: dict[str, list[float]] = {k: [] for k in loaded}
    for m in loaded.values():  # warm-up
        m.embedder.embed(batch[:1])
        m.embedder.embed(batch[:1])
    for r in range(rounds):
        order = list(loaded.items())
        order = order[r % len(order):] + order[: r % len(order)]
        for label, m in order:
            crop = batch[r % len(batch)]
            t = time.perf_counter()
            m.embedder.embed(crop)
            times[label].append((time.perf_counter() - t) * 1e3)
    for label, m in loaded.items():
        cos = (m.embedder.embed(batch) * ref).sum(axis=1)
        out[label] = {**percentiles(times[label]), "model_id": m.model_id,
                      "engine": m.engine.engine, "cos_min_to_fp32": round(float(cos.min()), 6)}
    return out
