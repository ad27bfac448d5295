"""What the accuracy work costs per analysed frame: the refine pass and the mirror view.

``facegate bench --json`` key ``analysed_frame_split`` (context for the issue-16
pipeline target, which is answered per frame over a stream: ``stream_bench.py``).
The device's :meth:`FramePipeline.analyse` runs on the same decoded 640x480 bench
frames in four configurations, rotating per frame so background load hits all alike:

* ``bare``: no refine pass, one view (``EmbedOptions.legacy()``, the pre-issue-15 path);
* ``refine``: + the refine pass (a second detection on a crop around the face, for
  precise landmarks), one view;
* ``refine_flip``: + the mirror view always embedded and fused (``flip_band = 1``);
* ``device``: the default config: refine, mirror view only when the plain view's
  search is uncertain (near the threshold or a small runner-up margin).

Each figure is the whole ``analyse`` call (detect, select, refine, quality, align,
embed, 1:N search over 1,000 random subjects), decode excluded. The bench face is
not enrolled, so it scores far from the threshold and ``device`` rarely runs the
mirror view (``device_mirror_passes``): ``refine_flip`` is the cost of a frame
where it does. Costs are differences of p50s, so they carry both figures' noise.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from ...drivers.models.loader import LoadedModels
from ...runtime.config.recognition import RecognitionSection
from .bench import _decode, percentiles
from .engine import RecognitionEngine
from .fusion import EmbedOptions
from .pipeline import FramePipeline

VARIANTS = ("bare", "refine", "refine_flip", "device")


def _pipelines(engine: RecognitionEngine) -> dict[str, FramePipeline]:
    def make(opts: EmbedOptions) -> FramePipeline:
        return FramePipeline(engine.models, engine.matcher, embed=opts,
                             threshold=engine.thresholds.threshold)

    return {"bare": make(EmbedOptions.legacy()), "refine": make(EmbedOptions(flip=False)),
            "refine_flip": make(EmbedOptions(flip_band=1.0)), "device": engine.pipeline}


def bench_analysed_split(models: LoadedModels, frames: list[bytes], *, gallery: int = 1000,
                         warmup: int = 5) -> dict[str, Any]:
    """p50/p99 ms of each configuration per analysed frame, and the derived costs."""
    engine = RecognitionEngine(RecognitionSection(), models)
    rng = np.random.default_rng(1)
    g = rng.standard_normal((gallery, models.embedder.dim)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    engine.matcher.add_batch([f"s{i}" for i in range(gallery)], [f"t{i}" for i in range(gallery)],
                             g, models.model_id)
    pipes = _pipelines(engine)
    images: list[npt.NDArray[np.uint8]] = [_decode(d) for d in frames]
    for img in images[:warmup]:
        for p in pipes.values():
            p.analyse(img)
    mirror0 = pipes["device"].mirror_passes
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for i, img in enumerate(images):
        order = VARIANTS[i % len(VARIANTS):] + VARIANTS[: i % len(VARIANTS)]
        for name in order:
            t = time.perf_counter()
            a = pipes[name].analyse(img)
            if a.embedding is not None:  # a frame whose face failed the gate is not "analysed"
                times[name].append((time.perf_counter() - t) * 1e3)
    stats = {k: percentiles(v) for k, v in times.items() if v}
    if len(stats) < len(VARIANTS):
        raise RuntimeError("the bench face was not embedded in every configuration")

    def cost(a: str, b: str) -> dict[str, float]:
        return {q: round(stats[a][q] - stats[b][q], 3) for q in ("p50", "p99")}

    return {
        "what": "FramePipeline.analyse on decoded 640x480 frames (decode excluded): detect, "
                "select, [refine], quality, align, embed [+ mirror], 1:N search of 1,000",
        "per_analysed_frame_ms": stats,
        "frames": {k: len(v) for k, v in times.items()},
        "refine_cost_ms": cost("refine", "bare"),
        "flip_cost_ms": cost("refine_flip", "refine"),
        "device_mirror_passes": pipes["device"].mirror_passes - mirror0,
        "order": "the four configurations rotate frame by frame after a warm-up",
    }
