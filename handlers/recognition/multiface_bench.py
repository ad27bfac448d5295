"""Several faces per frame (issue 16): cost per frame and per face at 1, 3 and 6 faces.

Frames are 640x480 composites of the committed sample photos (each face
scaled to the same height, ``face_px``, on a grey background; one face in the
central region, the others around it), moved by up to 2 px per frame so no
cache makes a repeat free. Each frame goes through the device's own
:meth:`FramePipeline.analyse_all` (detect once, then per face: refine,
quality, liveness, align; one recogniser batch; a 1:N search per face; the
gate's conditional mirror pass) against a gallery of 1,000 random subjects
plus the photographed people, so searches find real matches. The face counts
are interleaved in blocks of frames so a change in background load hits them
alike. Decoding is not included (the frames are arrays).

Printed per face count: frame p50/p99, the cost per face (p50 / faces) and
the marginal cost of each face after the first. ``batch_vs_loop`` times the
recogniser on the same aligned crops as one batch and as one call per crop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.loader import LoadedModels
from ...runtime.config.recognition import RecognitionSection
from .align import align_face
from .bench import percentiles
from .decision import DecisionEngine
from .engine import RecognitionEngine

PHOTOS = ("obama.jpg", "biden.jpg", "Family1-Son1.jpg", "Family2-Lady1.jpg",
          "Family2-Man1.jpg", "obama2.jpg")
"""Sample photos shipped with the demo (copies of tests/data/faces), one clear face each.
The first five people are enrolled; the sixth photo is another picture of the first."""
_ENROLLED = 5

# Face centres in a 640x480 frame: the first is the gate's target (central region).
_SLOTS = ((320, 130), (107, 130), (533, 130), (107, 370), (320, 370), (533, 370))


def _face_patch(models: LoadedModels, photo: npt.NDArray[np.uint8], face_px: int,
                margin: float) -> npt.NDArray[np.uint8]:
    det = max(models.detector.detect(photo), key=lambda d: d.area)
    s = face_px / det.box[3]
    big = cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    cx, cy = det.center[0] * s, det.center[1] * s
    half = int(face_px * margin)
    pad = cv2.copyMakeBorder(big, half, half, half, half, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    x0, y0 = round(cx), round(cy)
    return np.ascontiguousarray(pad[y0 : y0 + 2 * half, x0 : x0 + 2 * half])


def compose(models: LoadedModels, photos: Sequence[npt.NDArray[np.uint8]], *,
            face_px: int | Sequence[int] = 90, slots: Sequence[tuple[int, int]] = _SLOTS,
            margin: float = 0.95) -> npt.NDArray[np.uint8]:
    """One 640x480 frame with ``photos[i]``'s face centred on ``slots[i]``, ``face_px`` high.

    ``face_px`` is one height for all faces or one per photo; each face brings a
    square of its photo ``2 * margin * face_px`` wide (later photos paint over earlier ones).
    """
    sizes = [face_px] * len(photos) if isinstance(face_px, int) else list(face_px)
    canvas = np.full((480, 640, 3), 90, np.uint8)
    for photo, (cx, cy), px in zip(photos, slots, sizes, strict=False):
        patch = _face_patch(models, photo, px, margin)
        h, w = patch.shape[:2]
        x0, y0 = cx - w // 2, cy - h // 2
        xs, ys = max(0, x0), max(0, y0)
        xe, ye = min(640, x0 + w), min(480, y0 + h)
        canvas[ys:ye, xs:xe] = patch[ys - y0 : ye - y0, xs - x0 : xe - x0]
    return canvas


def _shifted(frame: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    dx, dy = rng.uniform(-2.0, 2.0, 2)
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float32)
    return np.asarray(cv2.warpAffine(frame, m, (640, 480), borderMode=cv2.BORDER_REPLICATE),
                      dtype=np.uint8)


def _engine(models: LoadedModels, photos: Sequence[npt.NDArray[np.uint8]],
            gallery: int) -> RecognitionEngine:
    engine = RecognitionEngine(RecognitionSection(), models)
    rng = np.random.default_rng(1)
    g = rng.standard_normal((gallery, models.embedder.dim)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    engine.matcher.add_batch([f"s{i}" for i in range(gallery)],
                             [f"t{i}" for i in range(gallery)], g, models.model_id)
    for i, photo in enumerate(photos[:_ENROLLED]):
        ok, buf = cv2.imencode(".png", photo)
        assert ok
        emb = engine.embed_image_sync(buf.tobytes())
        engine.matcher.add(f"p{i}", f"p{i}-t", emb.embedding, emb.model_id)
    return engine


def bench_multi_face(
    models: LoadedModels, faces_dir: Path, *, counts: Sequence[int] = (1, 3, 6),
    frames: int = 60, gallery: int = 1000, block: int = 10, face_px: int = 90, reps: int = 30,
) -> dict[str, Any]:
    """Frame and per-face cost at each face count in ``counts`` (see module docstring)."""
    photos = []
    for name in PHOTOS:
        img = cv2.imread(str(faces_dir / name))
        if img is None:
            raise FileNotFoundError(faces_dir / name)
        photos.append(np.asarray(img, dtype=np.uint8))
    engine = _engine(models, photos, gallery)
    pipe = engine.pipeline
    base = {n: compose(models, photos[:n], face_px=face_px) for n in counts}
    rng = np.random.default_rng(7)
    times: dict[int, list[float]] = {n: [] for n in counts}
    found: dict[int, list[int]] = {n: [] for n in counts}
    for n in counts:  # warm-up
        for _ in range(3):
            pipe.analyse_all(_shifted(base[n], rng), max_faces=n)
    while any(len(times[n]) < frames for n in counts):
        for n in counts:
            for _ in range(min(block, frames - len(times[n]))):
                f = _shifted(base[n], rng)
                t = time.perf_counter()
                ff = pipe.analyse_all(f, max_faces=n)
                times[n].append((time.perf_counter() - t) * 1e3)
                found[n].append(sum(1 for a, _ in ff.faces if a.embedding is not None))
    one = percentiles(times[counts[0]])["p50"] if counts else 0.0
    out: dict[str, Any] = {}
    for n in counts:
        p = percentiles(times[n])
        out[str(n)] = {
            "frame_p50_ms": p["p50"], "frame_p99_ms": p["p99"],
            "per_face_ms": round(p["p50"] / n, 3),
            "marginal_per_face_ms": (round((p["p50"] - one) / (n - 1), 3)
                                     if n > 1 and counts[0] == 1 else None),
            "faces_embedded_mean": round(float(np.mean(found[n])), 2),
        }
    for n in counts:
        out[str(n)]["with_decisions"] = steady_state(engine, base[n], n, frames, rng)
    return {"faces": out, "batch_vs_loop": batch_vs_loop(models, base[max(counts)], rng, reps),
            "frame": f"640x480, faces {face_px} px high, no decode",
            "gallery_subjects": len(engine.matcher), "frames_per_count": frames}


def steady_state(engine: RecognitionEngine, base: npt.NDArray[np.uint8], n: int, frames: int,
                 rng: np.random.Generator, *, fps: float = 10.0) -> dict[str, Any]:
    """Frame cost as the device runs it: per-track decisions at ``fps``, decided tracks skipped.

    The same frames feed a :class:`DecisionEngine` (the device's settings) on a
    simulated clock; each frame is analysed with its ``hold`` predicate, so a face
    whose track is decided and cooling down stops after selection.
    """
    decider = DecisionEngine(engine.cfg.decision, engine.thresholds, engine.stillness,
                             model_id=engine.model_id)
    times: list[float] = []
    decisions = 0
    for i in range(frames):
        now = i / fps
        f = _shifted(base, rng)
        t = time.perf_counter()
        ff = engine.pipeline.analyse_all(f, skip_if=decider.hold(now), max_faces=n)
        times.append((time.perf_counter() - t) * 1e3)
        decisions += len(decider.observe_frame(ff, now, now))
    p = percentiles(times)
    return {"frame_p50_ms": p["p50"], "frame_p99_ms": p["p99"],
            "frame_mean_ms": round(float(np.mean(times)), 3), "decisions": decisions,
            "fps": fps}


def batch_vs_loop(models: LoadedModels, frame: npt.NDArray[np.uint8], rng: np.random.Generator,
                  reps: int = 30) -> dict[str, Any]:
    """The recogniser on the frame's aligned crops: one batched call vs one call per crop."""
    crops = np.stack([align_face(frame, d.landmarks) for d in models.detector.detect(frame)])
    batch: list[float] = []
    loop: list[float] = []
    models.embedder.embed(crops)
    for _ in range(reps):
        order = (0, 1) if rng.random() < 0.5 else (1, 0)
        for which in order:
            t = time.perf_counter()
            if which == 0:
                models.embedder.embed(crops)
            else:
                for c in crops:
                    models.embedder.embed(c[None])
            (batch if which == 0 else loop).append((time.perf_counter() - t) * 1e3)
    # The embedder loops inside embed() when the graph's batch axis is fixed at 1.
    fixed = bool(getattr(models.embedder, "_batch_fixed", False))  # read-only peek at the driver
    return {"crops": int(crops.shape[0]), "model_batch_fixed_at_1": fixed,
            "batch": percentiles(batch), "loop": percentiles(loop)}
