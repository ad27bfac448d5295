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
from .selection import GATE_RULE, Roi, SelectionRule, other_faces, select_face

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


SkipIf = Callable[[Detection, bool], bool]
"""``skip_if(face, at_door)``: True when the face's track is decided and cooling down."""


@dataclass(slots=True, eq=False)
class FrameFaces:
    """Every analysed face of one frame (issue 16). Internal: holds biometric data."""

    door: FrameAnalysis
    """The face the gate rule selects, or why there is none (what :meth:`FramePipeline.analyse` returns)."""
    others: tuple[FrameAnalysis, ...] = ()
    """Other faces in the ROI above the quality gate's minimum size, largest first (never at the door)."""

    @property
    def faces(self) -> list[tuple[FrameAnalysis, bool]]:
        """(analysis, at_door) of every face with a box, the gate face first."""
        head = [(self.door, True)] if self.door.target is not None else []
        return head + [(o, False) for o in self.others]


# One face to embed: its analysis, its aligned crop, and the extra views fused with it.
_Job = tuple[FrameAnalysis, npt.NDArray[np.uint8], npt.NDArray[np.uint8]]


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
        skip_if: SkipIf | None = None,
    ) -> FrameAnalysis:
        """Analyse one frame's gate face. Never raises for bad pixels: the reason says what was wrong."""
        return self.analyse_all(image, ir, search=search, skip_if=skip_if, max_faces=1).door

    def analyse_all(
        self,
        image: npt.NDArray[np.generic],
        ir: npt.NDArray[np.uint8] | None = None,
        *,
        search: bool = True,
        skip_if: SkipIf | None = None,
        max_faces: int = 1,
    ) -> FrameFaces:
        """The gate face and up to ``max_faces - 1`` other faces of one frame (issue 16).

        Detection and selection run once; each face then goes through
        refinement, the quality gate, frame liveness and alignment, and the
        faces that passed are embedded in **one** recogniser call (a batch of
        crops; a model with a fixed batch of 1 runs them in a loop inside the
        embedder) and searched one by one. ``skip_if(face, at_door)`` stops a
        face after selection (its track is decided and cooling down).
        """
        lat: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            bgr = to_bgr8(image)
        except ImageRejected as exc:
            return FrameFaces(FrameAnalysis(reason=Reason(exc.reason_code), faces=0, latency_ms=lat))
        if bgr.size == 0 or min(bgr.shape[:2]) < 16:
            return FrameFaces(FrameAnalysis(reason=Reason.IMAGE_TOO_SMALL, faces=0, latency_ms=lat))
        faces = self.models.detector.detect(bgr)
        lat["detect"] = (time.perf_counter() - t0) * 1e3
        if not faces:
            return FrameFaces(FrameAnalysis(reason=Reason.NO_FACE, faces=0, latency_ms=lat))
        sel = select_face(faces, bgr.shape[1], bgr.shape[0], self.rule)
        jobs: list[tuple[Detection, bool]] = [] if sel.face is None else [(sel.face, True)]
        if max_faces > 1:
            others = other_faces(faces, bgr.shape[1], bgr.shape[0], self.rule,
                                 min_face_px=self.quality.min_face_px, exclude=sel.face)
            jobs += [(d, False) for d in others[: max_faces - len(jobs)]]
        done: list[FrameAnalysis] = []
        todo: list[_Job] = []
        for det, at_door in jobs:
            face_lat = lat if at_door else {"detect": lat["detect"]}
            if skip_if is not None and skip_if(det, at_door):
                # Its track is decided and cooling down: nothing after this can change a decision.
                done.append(FrameAnalysis(reason=Reason.OK, faces=len(faces), target=det,
                                          latency_ms=face_lat, skipped=True))
                continue
            out, crop = self._prepare(bgr, ir, det, len(faces), face_lat)
            done.append(out)
            if crop is not None:
                # The coarse pass's own crop is the second scale (fusion.multiscale).
                coarse = det.landmarks if out.target is not det else None
                todo.append((out, crop, extra_views(bgr, crop, coarse, self.embed_opts)))
        if todo:
            self._embed_batch(todo, search=search)
        if sel.face is None:
            door = FrameAnalysis(reason=sel.reason, faces=len(faces), latency_ms=lat)
            result = FrameFaces(door, tuple(done))
        else:
            door = done[0]
            result = FrameFaces(door, tuple(done[1:]))
        if door.embedding is not None:
            lat["total"] = (time.perf_counter() - t0) * 1e3
        return result

    def _prepare(
        self, bgr: npt.NDArray[np.uint8], ir: npt.NDArray[np.uint8] | None, det: Detection,
        faces: int, lat: dict[str, float],
    ) -> tuple[FrameAnalysis, npt.NDArray[np.uint8] | None]:
        """Refine, gate, frame liveness, align one face; the crop when it may be embedded."""
        t1 = time.perf_counter()
        target = refine(self.models.detector, bgr, det, self.embed_opts)
        t2 = time.perf_counter()
        lat["refine"] = (t2 - t1) * 1e3
        quality = assess(bgr, target, self.quality)
        t3 = time.perf_counter()
        lat["quality"] = (t3 - t2) * 1e3
        out = FrameAnalysis(reason=Reason.OK, faces=faces, target=target, quality=quality,
                            latency_ms=lat)
        failed = first_failure(quality)
        if failed is not None:
            out.reason = Reason(failed.reason)
            return out, None
        out.liveness = tuple(
            r for c in self.frame_checks if (r := c.check(bgr, target, ir)) is not None)
        t4 = time.perf_counter()
        lat["liveness"] = (t4 - t3) * 1e3
        crop = align_face(bgr, target.landmarks)
        out.crop_grey = np.asarray(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
        lat["align"] = (time.perf_counter() - t4) * 1e3
        live_failed = first_failure(out.liveness)
        if live_failed is not None:
            out.reason = Reason(live_failed.reason)
            return out, None
        return out, crop

    def _embed_batch(self, items: list[_Job], *, search: bool) -> None:
        """Embed (one recogniser call for all faces) and search; the extra views (mirror, and
        with ``fusion.multiscale`` the coarse-scale crop and its mirror) where uncertain.

        Each face's ``latency_ms['embed']`` is its share of the batch's time.
        """
        opts = self.embed_opts
        t = time.perf_counter()
        if not opts.flip or self.threshold is None or not search or opts.flip_band >= 1.0:
            rows = self.models.embedder.embed(
                np.concatenate([np.concatenate([c[None], x]) for _, c, x in items]))
            at = 0
            for out, _, extra in items:
                per = 1 + extra.shape[0]
                out.mirrored = opts.flip
                out.embedding = fuse_rows(rows[at : at + per])
                at += per
                if opts.flip:
                    self._count()
            self._share(items, t, search=search)
            return
        plain = self.models.embedder.embed(np.stack([c for _, c, _ in items]))
        for j, (out, _, _) in enumerate(items):
            out.embedding = np.asarray(plain[j], dtype=np.float32)
            self._search(out)
        need: list[int] = []
        for j, (out, _, extra) in enumerate(items):
            assert out.search is not None
            best, second = out.search.best, out.search.runner_up
            if extra.shape[0] and needs_mirror(
                best.score if best else None, second.score if second else None,
                self.threshold(out.search.subjects), opts,
            ):
                need.append(j)
        if need:
            rows = self.models.embedder.embed(np.concatenate([items[j][2] for j in need]))
            at = 0
            for j in need:
                out, _, extra = items[j]
                per = extra.shape[0]
                self._count()
                out.mirrored = True
                out.embedding = fuse_rows(np.concatenate([plain[j][None], rows[at : at + per]]))
                at += per
                self._search(out)
        self._share(items, t, search=False)

    def _share(self, items: list[_Job], t: float, *, search: bool) -> None:
        """Search when asked; record each face's share of the batch time as ``embed``."""
        if search:
            for out, _, _ in items:
                self._search(out)
        total = (time.perf_counter() - t) * 1e3
        searched = sum(out.latency_ms.get("search", 0.0) for out, _, _ in items)
        for out, _, _ in items:
            out.latency_ms["embed"] = (total - searched) / len(items)
        with self._count_lock:
            self.embedded += len(items)

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
