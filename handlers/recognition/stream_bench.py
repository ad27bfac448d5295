"""The device path over a 30 fps stream of approaches, against OpenCV's path on the same frames.

``python -m facegate.handlers.recognition.stream_bench`` (also in ``facegate bench
--json`` as ``device_stream``) prints, never asserts:

**Stream.** 640x480 BGR frames at 30 fps (timestamps ``i / 30`` s): an empty
scene (a fixed textured background with camera noise, sigma 1.5 grey levels per
pixel and frame), then a person fills the view and stays ``--stay`` frames
(the photo, re-jittered every frame: +-1 deg, +-1 % scale, +-2.5 px, a live face
moves), leaves, the next one comes. Approaches: ``obama.jpg`` (enrolled),
``biden.jpg`` (a stranger), ``Family2-Lady1.jpg`` (enrolled), ``obama2.jpg`` (the
first subject, another photo). Gallery: those two subjects (enrolled through the
real enrolment path) plus 998 random templates (a 1,000-subject threshold).

**Ours, per frame** = what the device runs on a frame that has arrived: the
real :class:`RecognitionService` frame step (``_analyse``: the unchanged-frame
check, then :meth:`FramePipeline.analyse` with the decided-track skip from
:meth:`DecisionEngine.hold`) plus :meth:`DecisionEngine.observe`. Frames of a
decided, cooling-down track stop after detection and selection; empty frames
cost a detection. Every frame is analysed (none is dropped: the latest-wins queue
drops frames only when an analysis takes longer than a frame interval).

**OpenCV, per frame** = ``cv2.FaceDetectorYN`` (at 320 px, the same detector
work as ours, and at 640 px) on every frame, plus ``alignCrop`` and
``FaceRecognizerSF.feature`` (fp32 fold) when it finds a face: it has no
tracks, so it identifies every frame. Both sides start from the same decoded
BGR frame (camera decoding excluded on both). The three paths run on each frame
in rotating order, so background load hits them alike.

Also printed: the same per-frame figures restricted to the frames on which we
ran the recogniser (``ours_embedding_frames``: the per-analysed-frame cost inside
the stream), the work counters, and each approach's decision and time to decision.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.loader import LoadedModels, ModelOptions, load_models
from ...runtime.bus import EventBus
from ...runtime.clock import ManualClock
from ...runtime.config.recognition import RecognitionSection
from ...runtime.demo import faces_dir
from ...runtime.logs import configure_logging
from ...runtime.machine import cpu_label
from .bench import _OpenCVPath, percentiles
from .engine import RecognitionEngine
from .service import RecognitionService

FPS = 30.0
APPROACHES = (("obama.jpg", "A"), ("biden.jpg", None), ("Family2-Lady1.jpg", "B"),
              ("obama2.jpg", "A"))
"""(photo, enrolled subject key or None for a stranger)."""
ENROL = (("obama.jpg", "A"), ("Family2-Lady1.jpg", "B"))
WHAT = {
    "ours": "RecognitionService frame step (unchanged-frame check, FramePipeline.analyse with "
            "the decided-track skip) + DecisionEngine.observe, on every frame",
    "opencv_320": "FaceDetectorYN on the frame scaled to 320 px + alignCrop + "
                  "FaceRecognizerSF.feature when a face is found, on every frame",
    "opencv_640": "the same with FaceDetectorYN on the full 640x480 frame",
    "input": "the same decoded 640x480 BGR frames for all (camera decode excluded from all)",
}


def _place(img: npt.NDArray[np.uint8], models: LoadedModels, face_px: int = 170
           ) -> npt.NDArray[np.uint8]:
    """A 640x480 frame of ``img`` with its largest face ``face_px`` high, centred."""
    faces = models.detector.detect(img)
    if not faces:
        raise ValueError("a stream photo has no face")
    det = max(faces, key=lambda d: d.area)
    s = face_px / det.box[3]
    big = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    pad = 640
    big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    cx, cy = int(det.center[0] * s) + pad, int(det.center[1] * s) + pad
    return np.ascontiguousarray(big[cy - 240 : cy + 240, cx - 320 : cx + 320])


def _jitter(frame: npt.NDArray[np.uint8], rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    m = cv2.getRotationMatrix2D((320, 240), rng.uniform(-1, 1), 1 + rng.uniform(-0.01, 0.01))
    m[:, 2] = m[:, 2] + rng.uniform(-2.5, 2.5, 2)
    return np.asarray(cv2.warpAffine(frame, m, (640, 480), borderMode=cv2.BORDER_REPLICATE),
                      np.uint8)


def _background(rng: np.random.Generator) -> npt.NDArray[np.float32]:
    base = rng.uniform(60, 190, (12, 16, 3)).astype(np.float32)
    return np.asarray(cv2.resize(base, (640, 480), interpolation=cv2.INTER_CUBIC), np.float32)


@dataclass(frozen=True, slots=True)
class StreamFrame:
    image: npt.NDArray[np.uint8]
    approach: int
    """Index into the approaches, -1 for an empty scene."""


def make_stream(folder: Path, models: LoadedModels, *, stay: int, gap: int, seed: int = 3,
                approaches: int = len(APPROACHES)) -> list[StreamFrame]:
    """Empty scene, approach, empty scene, ... (see the module docstring)."""
    rng = np.random.default_rng(seed)
    bg = _background(rng)
    out: list[StreamFrame] = []

    def empty(n: int) -> None:
        for _ in range(n):
            noisy = bg + rng.normal(0, 1.5, bg.shape).astype(np.float32)
            out.append(StreamFrame(np.clip(noisy, 0, 255).astype(np.uint8), -1))

    empty(gap)
    for i, (photo, _) in enumerate(APPROACHES[:approaches]):
        img = cv2.imread(str(folder / photo))
        if img is None:
            raise FileNotFoundError(folder / photo)
        base = _place(np.asarray(img, np.uint8), models)
        for _ in range(stay):
            out.append(StreamFrame(_jitter(base, rng), i))
        empty(gap)
    return out


def _enrol(engine: RecognitionEngine, folder: Path) -> dict[str, str]:
    ids: dict[str, str] = {}
    for photo, key in ENROL:
        emb = asyncio.run(engine.embed_image((folder / photo).read_bytes()))
        engine.matcher.add(f"S-{key}", f"S-{key}-t1", emb.embedding, emb.model_id)
        ids[f"S-{key}"] = key
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((998, engine.models.embedder.dim)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    engine.matcher.add_batch([f"D-{i}" for i in range(998)], [f"D-{i}-t1" for i in range(998)],
                             noise, engine.model_id)
    return ids


def bench_stream(models: LoadedModels, *, stay: int = 90, gap: int = 45,
                 cfg: RecognitionSection | None = None, warmup: int = 10,
                 approaches: int = len(APPROACHES)) -> dict[str, Any]:
    """Run the stream through ours and OpenCV's paths (rotating order); figures in ms."""
    folder = faces_dir()
    engine = RecognitionEngine(cfg or RecognitionSection(), models)
    ids = _enrol(engine, folder)
    svc = RecognitionService(engine, EventBus(), ManualClock())
    frames = make_stream(folder, models, stay=stay, gap=gap, approaches=approaches)
    ocv = {"opencv_320": _OpenCVPath(models, 320), "opencv_640": _OpenCVPath(models)}
    for f in frames[gap : gap + min(warmup, stay)]:  # warm-up on face frames, outside the stream's state
        engine.pipeline.analyse(f.image)
        for p in ocv.values():
            p.run_bgr(f.image)
    embedded0, mirror0 = engine.pipeline.embedded, engine.pipeline.mirror_passes
    times: dict[str, list[float]] = {"ours": [], **{k: [] for k in ocv}}
    emb_frames: list[int] = []
    decisions: list[dict[str, Any]] = []
    for i, f in enumerate(frames):
        now = i / FPS
        order = ["ours", *ocv]
        order = order[i % 3 :] + order[: i % 3]
        for name in order:
            t0 = time.perf_counter()
            if name == "ours":
                before = engine.pipeline.embedded
                a = svc._analyse(f.image, None, svc.decider.hold(now))  # the device's own frame step
                ds = svc.decider.observe_frame(a, now, now)  # every face, as the service does
                times["ours"].append((time.perf_counter() - t0) * 1e3)
                if engine.pipeline.embedded > before:
                    emb_frames.append(i)
                for d in ds:
                    want = APPROACHES[f.approach][1] if f.approach >= 0 else None
                    decisions.append({
                        "frame": i, "approach": f.approach, "decision": str(d.decision),
                        "reason": d.reason, "frames": d.frames, "decision_ms": d.decision_ms,
                        "subject_is_expected": (ids.get(d.subject_id or "") == want)
                        if d.subject_id else None,
                    })
            else:
                ocv[name].run_bgr(f.image)
                times[name].append((time.perf_counter() - t0) * 1e3)
    stats = {k: {**percentiles(v), "mean": round(float(np.mean(v)), 3)} for k, v in times.items()}
    ratios = {f"{q}_vs_{k}": round(stats["ours"][q] / stats[k][q], 3)
              for k in ocv for q in ("p50", "p99", "mean")}
    on_emb = {k: percentiles([v[i] for i in emb_frames]) for k, v in times.items()} \
        if emb_frames else {}
    face_frames = sum(1 for f in frames if f.approach >= 0)
    return {
        "what": WHAT,
        "frames": len(frames), "fps": FPS, "face_frames": face_frames,
        "approaches": [{"photo_enrolled": key is not None} for _, key in APPROACHES[:approaches]],
        "stay_frames": stay, "gap_frames": gap,
        "per_frame_ms": stats,
        "ratios": ratios,
        "ours_embedding_frames": {"count": len(emb_frames), **on_emb},
        "work": {
            "embedded": engine.pipeline.embedded - embedded0,
            "mirror_passes": engine.pipeline.mirror_passes - mirror0,
            "skipped_decided": svc.frames_skipped_decided,
            "unchanged_reused": svc.frames_unchanged,
        },
        "decisions": decisions,
        "model_id": models.model_id,
        "engine": models.engine.engine,
        "decision_rule": {"k": engine.cfg.decision.k, "fast_k": engine.cfg.decision.fast_k,
                          "cooldown_s": engine.cfg.decision.cooldown_s},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--stay", type=int, default=90, help="frames each person stays (default 90)")
    ap.add_argument("--gap", type=int, default=45,
                    help="empty frames between people (default 45: > track_lost_s, a new track)")
    ap.add_argument("--precision", choices=("auto", "int8", "fp32"), default="auto")
    ap.add_argument("--engine", choices=("auto", "onnxruntime", "opencv"), default="auto")
    args = ap.parse_args(argv)
    configure_logging(device_id="cli", level="warning", stream=sys.stderr)  # stdout: JSON
    models = load_models(ModelOptions(recognizer_precision=args.precision,
                                      recognizer_engine=args.engine))
    out = {"cpu": cpu_label(), **bench_stream(models, stay=args.stay, gap=args.gap)}
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
