"""Per-frame analysis: detect, select, refine, quality, frame liveness, align, embed, match.

Selection is :func:`~.selection.select_face` (largest face in the ROI, with a
margin against the second); refinement and view fusion are ``fusion.py``.
The mirror view is embedded only when the plain view's search is uncertain
(:func:`~.fusion.needs_mirror`: best score near the decision threshold, or a
small runner-up margin); :attr:`FramePipeline.mirror_passes` counts those
extra recogniser runs. Without a ``threshold`` function (tools, benches) or
with ``search=False`` the mirror view is always fused.

:meth:`FramePipeline.analyse` is blocking (ONNX, OpenCV) and runs in a worker
thread. Its :class:`FrameAnalysis` is internal to the recognition package:
it holds the aligned crop and the embedding in memory for the decision step
and is never published, logged or stored.
"""

from __future__ import annotations

import dataclasses
import threading
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
from .fusion import EmbedOptions, extra_views, fuse_rows, needs_mirror, refine
from .image import to_bgr8
from .liveness import FrameCheck
from .matcher import Matcher, SearchResult
from .quality import QualityLimits, assess, first_failure
from .reasons import Reason
from .selection import GATE_RULE, Roi, SelectionRule, select_face

ENROL_MAX_YAW_DEG = 85.0
"""Default ``fusion.enrol_max_yaw_deg``: enrolment photos accept a wider yaw than the gate."""


def enrol_limits(gate: QualityLimits, max_yaw_deg: float = ENROL_MAX_YAW_DEG) -> QualityLimits:
    """The gate's quality limits with the enrolment yaw limit (never narrower than the gate's)."""
    return dataclasses.replace(gate, max_yaw_deg=max(gate.max_yaw_deg, max_yaw_deg))


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
    mirrored: bool = False
    """The mirror view was embedded and fused (uncertain plain view, or always)."""
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
        threshold: Callable[[int], float] | None = None,
        enrol_quality: QualityLimits | None = None,
    ) -> None:
        self.models = models
        self.matcher = matcher
        self.roi = roi
        self.rule = dataclasses.replace(rule or GATE_RULE, roi=roi)
        self.embed_opts = embed or EmbedOptions()
        self.quality = quality or QualityLimits()
        self.frame_checks = tuple(frame_checks)
        self.enrol_quality = enrol_quality or enrol_limits(self.quality)
        """The gate's limits with the wider enrolment yaw (``fusion.enrol_max_yaw_deg``)."""
        self.threshold = threshold
        """Decision threshold for a gallery size; None: the mirror view is always fused."""
        self.mirror_passes = 0
        """Recogniser runs spent on a mirror view (work counter, for tests and benches)."""
        self._count_lock = threading.Lock()
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
        coarse = sel.face.landmarks if sel.face is not target else None
        self._embed_and_search(out, crop, search=search, bgr=bgr, coarse=coarse)
        self.embedded += 1
        lat["embed"] = (time.perf_counter() - t4) * 1e3 - lat.get("search", 0.0)
        lat["total"] = (time.perf_counter() - t0) * 1e3
        return out

    def _embed_and_search(
        self, out: FrameAnalysis, crop: npt.NDArray[np.uint8], *, search: bool,
        bgr: npt.NDArray[np.uint8], coarse: npt.NDArray[np.float32] | None = None,
    ) -> None:
        """Plain view, search; the mirror view only when the rule says so (fusion.py)."""
        opts = self.embed_opts
        if not opts.flip or self.threshold is None or not search or opts.flip_band >= 1.0:
            out.mirrored = opts.flip
            views = np.concatenate([crop[None], extra_views(bgr, crop, coarse, opts)])
            out.embedding = fuse_rows(self.models.embedder.embed(views))
            if opts.flip:
                self._count()
            if search:
                self._search(out)
            return
        plain = self.models.embedder.embed(crop[None])
        out.embedding = np.asarray(plain[0], dtype=np.float32)
        self._search(out)
        assert out.search is not None
        best, second = out.search.best, out.search.runner_up
        threshold = self.threshold(out.search.subjects)
        if needs_mirror(best.score if best else None, second.score if second else None,
                        threshold, opts):
            mirror = self.models.embedder.embed(extra_views(bgr, crop, coarse, opts))
            self._count()
            out.mirrored = True
            out.embedding = fuse_rows(np.concatenate([plain, mirror]))
            self._search(out)

    def _search(self, out: FrameAnalysis) -> None:
        """Top-2 subjects of ``out.embedding``; its time adds to ``latency_ms['search']``."""
        assert out.embedding is not None
        t = time.perf_counter()
        out.search = self.matcher.search(out.embedding, k=2)
        ms = (time.perf_counter() - t) * 1e3
        out.latency_ms["search"] = out.latency_ms.get("search", 0.0) + ms

    def _count(self) -> None:
        with self._count_lock:
            self.mirror_passes += 1
