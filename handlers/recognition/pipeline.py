"""Per-frame analysis: detect, select, refine, quality, frame liveness, align, embed, match.

Selection is :func:`~.selection.select_face` (largest face in the ROI, with a
margin against the second); refinement and view fusion are ``fusion.py``.

:meth:`FramePipeline.analyse` is blocking (ONNX, OpenCV) and runs in a worker
thread. Its :class:`FrameAnalysis` is internal to the recognition package:
it holds the aligned crop and the embedding in memory for the decision step
and is never published, logged or stored.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.detector import Detection
from ...drivers.models.loader import LoadedModels
from ...runtime.events import StageResult
from .align import align_face
from .errors import ImageRejected
from .fusion import EmbedOptions, aligned_views, fuse_rows, refine
from .image import to_bgr8
from .liveness import FrameCheck
from .matcher import Matcher, SearchResult
from .quality import QualityLimits, assess, first_failure
from .reasons import Reason
from .selection import GATE_RULE, Roi, SelectionRule, select_face


def pick_target(
    detections: Sequence[Detection], width: int, height: int, roi: Roi
) -> Detection | None:
    """The face the gate rule selects in the ROI (None when none or ambiguous)."""
    rule = dataclasses.replace(GATE_RULE, roi=roi)
    return select_face(detections, width, height, rule).face


@dataclass(slots=True, eq=False)
class FrameAnalysis:
    """What one frame says about its target face. Internal: holds biometric data."""

    reason: Reason
    faces: int
    target: Detection | None = None
    quality: tuple[StageResult, ...] = ()
    liveness: tuple[StageResult, ...] = ()
    crop_grey: npt.NDArray[np.uint8] | None = field(default=None, repr=False)
    embedding: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    search: SearchResult | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    skipped: bool = False
    """The target's track was already decided: analysis stopped after selection."""

    @property
    def usable(self) -> bool:
        """Quality and frame liveness passed and the face was embedded."""
        return self.reason is Reason.OK and self.embedding is not None


class FramePipeline:
    """Steps 1-6 of the recognition pipeline for one frame (thread-safe)."""

    def __init__(
        self,
        models: LoadedModels,
        matcher: Matcher,
        *,
        roi: Roi = (0.0, 0.0, 1.0, 1.0),
        quality: QualityLimits | None = None,
        frame_checks: Sequence[FrameCheck] = (),
        rule: SelectionRule | None = None,
        embed: EmbedOptions | None = None,
    ) -> None:
        self.models = models
        self.matcher = matcher
        self.roi = roi
        self.rule = dataclasses.replace(rule or GATE_RULE, roi=roi)
        self.embed_opts = embed or EmbedOptions()
        self.quality = quality or QualityLimits()
        self.frame_checks = tuple(frame_checks)
        self.embedded = 0
        """Faces embedded so far (a work counter for benches and tests)."""

    def analyse(
        self,
        image: npt.NDArray[np.generic],
        ir: npt.NDArray[np.uint8] | None = None,
        *,
        search: bool = True,
        skip_if: Callable[[Detection], bool] | None = None,
    ) -> FrameAnalysis:
        """Analyse one frame. Never raises for bad pixels: the reason says what was wrong."""
        lat: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            bgr = to_bgr8(image)
        except ImageRejected as exc:
            return FrameAnalysis(reason=Reason(exc.reason_code), faces=0, latency_ms=lat)
        if bgr.size == 0 or min(bgr.shape[:2]) < 16:
            return FrameAnalysis(reason=Reason.IMAGE_TOO_SMALL, faces=0, latency_ms=lat)
        faces = self.models.detector.detect(bgr)
        t1 = time.perf_counter()
        lat["detect"] = (t1 - t0) * 1e3
        if not faces:
            return FrameAnalysis(reason=Reason.NO_FACE, faces=0, latency_ms=lat)
        sel = select_face(faces, bgr.shape[1], bgr.shape[0], self.rule)
        if sel.face is None:
            return FrameAnalysis(reason=sel.reason, faces=len(faces), latency_ms=lat)
        if skip_if is not None and skip_if(sel.face):
            # Its track is decided and cooling down: nothing after this can change a decision.
            return FrameAnalysis(reason=Reason.OK, faces=len(faces), target=sel.face,
                                 latency_ms=lat, skipped=True)
        target = refine(self.models.detector, bgr, sel.face, self.embed_opts)
        t_ref = time.perf_counter()
        lat["refine"] = (t_ref - t1) * 1e3
        t1 = t_ref
        quality = assess(bgr, target, self.quality)
        t2 = time.perf_counter()
        lat["quality"] = (t2 - t1) * 1e3
        failed = first_failure(quality)
        out = FrameAnalysis(
            reason=Reason.OK, faces=len(faces), target=target, quality=quality, latency_ms=lat
        )
        if failed is not None:
            out.reason = Reason(failed.reason)
            return out
        live = tuple(r for c in self.frame_checks if (r := c.check(bgr, target, ir)) is not None)
        out.liveness = live
        t3 = time.perf_counter()
        lat["liveness"] = (t3 - t2) * 1e3
        crop = align_face(bgr, target.landmarks)
        out.crop_grey = np.asarray(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        t4 = time.perf_counter()
        lat["align"] = (t4 - t3) * 1e3
        live_failed = first_failure(live)
        if live_failed is not None:
            out.reason = Reason(live_failed.reason)
            return out
        out.embedding = fuse_rows(self.models.embedder.embed(aligned_views(crop, self.embed_opts)))
        self.embedded += 1
        t5 = time.perf_counter()
        lat["embed"] = (t5 - t4) * 1e3
        if search:
            out.search = self.matcher.search(out.embedding, k=2)
            lat["search"] = (time.perf_counter() - t5) * 1e3
        lat["total"] = (time.perf_counter() - t0) * 1e3
        return out
