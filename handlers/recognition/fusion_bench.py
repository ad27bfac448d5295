"""Cost of the issue-15 defaults next to the old pipeline, and OpenCV like for like.

``python -m facegate.handlers.recognition.fusion_bench [--frames N] [--precision P]``
prints (never asserts) per-frame p50/p99 in ms of :meth:`FramePipeline.analyse`
on the ``facegate bench`` frames (640x480 JPEG, one face, 1,000-subject
gallery) for each embedding configuration (legacy = coarse landmarks + one
view; refine+flip every frame = the first issue-15 default; +ms = also the coarse
landmarks' views, what an uncertain frame costs with ``fusion.multiscale``; the device gate =
refined landmarks, mirror view only when the plain score is uncertain, measured
with the sample face enrolled (a clear match) and not enrolled (a clear
stranger); the share of frames that took the mirror pass is printed), alternating in
blocks so background load hits all alike, and OpenCV's own path
(``FaceDetectorYN`` + ``FaceRecognizerSF``) with its detector on the full
frame (640 px) and on the frame scaled to our coarse pass's 320 px, so both
ratios are printed. Decoding is excluded on both sides (frames are decoded
once up front).
"""

from __future__ import annotations

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before onnxruntime is imported

import argparse
import time

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.loader import LoadedModels, ModelOptions, load_models
from ...runtime.config.recognition import RecognitionSection
from ...runtime.demo import faces_dir
from ...runtime.machine import cpu_model
from .bench import make_frames, percentiles
from .engine import threshold_policy
from .fusion import EmbedOptions
from .matcher import Matcher
from .pipeline import FramePipeline
from .thresholds import ThresholdPolicy

SAMPLE = faces_dir() / "obama.jpg"  # shipped with the package: the bench runs from a wheel

class _OpenCV:
    def __init__(self, models: LoadedModels, width: int) -> None:
        self.width = width
        self.det = cv2.FaceDetectorYN.create(str(models.detector_path), "", (width, width),
                                             0.6, 0.3, 50)
        rec = models.reference_recognizer_path or models.recognizer_path
        self.rec = cv2.FaceRecognizerSF.create(str(rec), "")

    def run(self, bgr: npt.NDArray[np.uint8]) -> None:
        s = self.width / bgr.shape[1]
        img = bgr if s == 1.0 else cv2.resize(bgr, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        self.det.setInputSize((img.shape[1], img.shape[0]))
        _, faces = self.det.detect(img)
        if faces is not None and len(faces):
            self.rec.feature(self.rec.alignCrop(img, faces[0]))


def run(frames_n: int, precision: str) -> None:
    models = load_models(ModelOptions(recognizer_precision=precision))
    frames = [np.asarray(cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR), np.uint8)
              for d in make_frames(SAMPLE, frames_n)]
    matcher = Matcher(models.model_id, models.embedder.dim)
    g = np.random.default_rng(1).standard_normal((1000, models.embedder.dim)).astype(np.float32)
    matcher.add_batch([f"s{i}" for i in range(1000)], [f"t{i}" for i in range(1000)], g,
                      models.model_id)
    policy: ThresholdPolicy = threshold_policy(RecognitionSection(), models.model_id)
    known = Matcher(models.model_id, models.embedder.dim)
    known.add_batch([f"s{i}" for i in range(1000)], [f"t{i}" for i in range(1000)], g,
                    models.model_id)
    probe = FramePipeline(models, matcher).analyse(frames[0], search=False).embedding
    if probe is not None:
        known.add("sample", "t-sample", probe, models.model_id)
    paths = {
        "legacy (coarse, 1 view)": EmbedOptions.legacy(),
        "refine only": EmbedOptions(flip=False),
        "refine+flip every frame": EmbedOptions(),
        "refine+flip+ms every frame": EmbedOptions(multiscale=True),
    }
    pipes = {k: FramePipeline(models, matcher, embed=v) for k, v in paths.items()}
    pipes["device gate, enrolled face"] = FramePipeline(models, known,
                                                        threshold=policy.threshold)
    pipes["device gate, stranger"] = FramePipeline(models, matcher, threshold=policy.threshold)
    ocv = {"OpenCV detector 640": _OpenCV(models, 640), "OpenCV detector 320": _OpenCV(models, 320)}
    times: dict[str, list[float]] = {k: [] for k in (*pipes, *ocv)}
    for f in frames[:10]:
        for p in pipes.values():
            p.analyse(f)
        for o in ocv.values():
            o.run(f)
    for i in range(0, len(frames), 10):
        for f in frames[i : i + 10]:
            for k, p in pipes.items():
                t = time.perf_counter()
                p.analyse(f)
                times[k].append((time.perf_counter() - t) * 1e3)
            for k, o in ocv.items():
                t = time.perf_counter()
                o.run(f)
                times[k].append((time.perf_counter() - t) * 1e3)
    print(f"CPU: {cpu_model()}; load average {os.getloadavg()[0]:.2f}; {len(frames)} frames; "
          f"recogniser {models.model_id}")
    p50 = {k: percentiles(v) for k, v in times.items()}
    for k, v in p50.items():
        print(f"  {k:<28} p50 {v['p50']:7.2f} ms  p99 {v['p99']:7.2f} ms")
    for k, p in pipes.items():
        share = f"; mirror pass on {p.mirror_passes / max(1, len(frames) + 10):.0%} of frames"
        print(f"  {k:<28} / OpenCV@640 {p50[k]['p50'] / p50['OpenCV detector 640']['p50']:.2f}x"
              f"   / OpenCV@320 {p50[k]['p50'] / p50['OpenCV detector 320']['p50']:.2f}x"
              f"{share if p.threshold is not None else ''}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    a = ap.parse_args()
    run(a.frames, a.precision)


if __name__ == "__main__":
    main()
