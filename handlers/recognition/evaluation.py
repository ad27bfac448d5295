"""``facegate calibrate``'s device-path measurement: every configuration in one pass.

Each image of ``DIR/<person>/*`` gets the same preparation as before (small
crops upscaled, a 50 % black border so tight crops are detected) and then
goes through the device's own path (:func:`~.facepath.locate` pieces): the
coarse detector pass, the selection rule (``selection.py``) with its regions
mapped onto the original image, landmark refinement, the quality gate and
view fusion (``fusion.py``). One pass yields every configuration that is
compared, so they see identical detections:

========== ================================================================
legacy     the pipeline before issue 15: face nearest the centre, coarse
           landmarks, one view, no gate (what the old tables measured)
coarse     selection rule, coarse landmarks, one view
coarse+flip  selection rule, coarse landmarks, mirror-fused
refine     selection rule, refined landmarks, one view
refine+flip  selection rule, refined landmarks, mirror-fused on every image
refine+flip@gate  the device: templates fused, a probe fused only when its plain
           score is uncertain (``fusion.needs_mirror``; :func:`gate_flip_stats`)
multi+flip two detection scales: the views aligned from the coarse (320 px) and
           the refined landmarks, each with its mirror, mean-fused (4 rows);
           gate of the refined face (``fusion.multiscale``, issue 15 round 3)
========== ================================================================

Per configuration: failures to enrol (no face selected: none found, none in
the ROI, or two of similar size), gate refusals, FNMR/EER over the images the
gate accepts (what the device compares) and over every selected image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from ...drivers.models.detector import Detection
from ...drivers.models.loader import LoadedModels
from .align import align_face
from .calibration import EmbeddedSet, ScoreStats, list_images, pair_scores
from .errors import ImageRejected
from .fusion import EmbedOptions, aligned_views, fuse_rows, refine
from .image import decode_image
from .quality import QualityLimits, assess, first_failure
from .reasons import Reason
from .selection import ENROL_RULE, GATE_RULE, SelectionRule, select_face

CONFIGS = ("legacy", "coarse", "coarse+flip", "refine", "refine+flip", "multi+flip")
DEFAULT_CONFIG = "refine+flip"


@dataclass(slots=True)
class Sample:
    """One image under one configuration. Internal: holds an embedding."""

    label: int
    selected: Reason  # gate rule: OK or why no face was selected
    enrol_selected: Reason  # enrolment rule
    gate: Reason = Reason.OK  # first failed quality check of the selected face
    embedding: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    enrol_gate: Reason = Reason.OK  # the same with the enrolment limits (wider yaw)
    plain: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    """Flip configurations: the plain view alone (what the gate embeds first)."""


@dataclass
class Collected:
    """Samples per configuration, in file order, and the identity names' count."""

    samples: dict[str, list[Sample]]
    identities: int
    images: int


def prepare(bgr: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], int, int, int]:
    """(framed image, border, original width, original height) as calibration always did."""
    h, w = bgr.shape[:2]
    if min(h, w) < 112:
        # Tiny crops (e.g. 23x28 px): YuNet's smallest anchors need ~16 px eyes-to-mouth.
        f = 112.0 / min(h, w)
        bgr = np.asarray(cv2.resize(bgr, (round(w * f), round(h * f)),
                                    interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
        h, w = bgr.shape[:2]
    pad = max(h, w) // 2
    framed = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return np.ascontiguousarray(framed, dtype=np.uint8), pad, w, h


def framed_rule(rule: SelectionRule, pad: int, w: int, h: int) -> SelectionRule:
    """``rule`` with its regions (fractions of the original image) mapped into the framed one."""
    fw, fh = w + 2 * pad, h + 2 * pad

    def mapped(r: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        return ((pad + r[0] * w) / fw, (pad + r[1] * h) / fh, r[2] * w / fw, r[3] * h / fh)

    return dataclasses.replace(rule, roi=mapped(rule.roi), central=mapped(rule.central))


def _nearest_centre(faces: list[Detection], width: int, height: int) -> Detection:
    cx, cy = width / 2, height / 2
    return min(faces, key=lambda d: (d.center[0] - cx) ** 2 + (d.center[1] - cy) ** 2)


def analyse_image(
    models: LoadedModels, bgr: npt.NDArray[np.uint8], label: int, *, rule: SelectionRule,
    enrol_rule: SelectionRule, limits: QualityLimits, face_px: float,
    enrol_limits: QualityLimits | None = None,
) -> dict[str, Sample]:
    """Every configuration of :data:`CONFIGS` for one decoded image. Blocking."""
    framed, pad, w, h = prepare(bgr)
    H, W = framed.shape[:2]
    faces = models.detector.detect(framed)
    sel = select_face(faces, W, H, framed_rule(rule, pad, w, h))
    esel = select_face(faces, W, H, framed_rule(enrol_rule, pad, w, h))
    out: dict[str, Sample] = {}
    crops: list[npt.NDArray[np.uint8]] = []
    if faces:
        legacy = _nearest_centre(faces, W, H)
        crops.append(align_face(framed, legacy.landmarks))
        out["legacy"] = Sample(label, Reason.OK, Reason.OK)
    else:
        out["legacy"] = Sample(label, Reason.NO_FACE, Reason.NO_FACE)
    face = sel.face or esel.face
    gates: dict[str, Reason] = {}
    egates: dict[str, Reason] = {}
    if face is not None:
        fine = refine(models.detector, framed, face, EmbedOptions(refine_face_px=face_px))
        for name, det in (("coarse", face), ("refine", fine)):
            failed = first_failure(assess(framed, det, limits))
            gates[name] = Reason.OK if failed is None else Reason(failed.reason)
            efailed = first_failure(assess(framed, det, enrol_limits or limits))
            egates[name] = Reason.OK if efailed is None else Reason(efailed.reason)
            crops.extend(aligned_views(align_face(framed, det.landmarks), EmbedOptions()))
    rows = models.embedder.embed(np.stack(crops)) if crops else None
    if rows is not None and faces:
        out["legacy"].embedding = rows[0]
    for cfg in CONFIGS[1:]:
        s = Sample(label, sel.reason, esel.reason)
        if rows is not None and face is not None:
            base = 1 if cfg.startswith("coarse") else 3
            s.gate = gates["coarse" if cfg.startswith("coarse") else "refine"]
            s.enrol_gate = egates["coarse" if cfg.startswith("coarse") else "refine"]
            s.embedding = fuse_rows(rows[base : base + 2]) if cfg.endswith("flip") else rows[base]
            if cfg == "multi+flip":  # both scales, both views: rows 1-4
                s.embedding = fuse_rows(rows[1:5])
            s.plain = rows[base] if cfg.endswith("flip") else None
        out[cfg] = s
    return out


def collect(
    models: LoadedModels, root: Path, *,
    rule: SelectionRule = GATE_RULE, enrol_rule: SelectionRule = ENROL_RULE,
    limits: QualityLimits | None = None, face_px: float = EmbedOptions().refine_face_px,
    every: int = 1, progress: Callable[[int, int], None] | None = None,
    enrol_limits: QualityLimits | None = None,
) -> Collected:
    """Analyse every image under ``root`` (every ``every``-th identity). Blocking, minutes."""
    lim = limits or QualityLimits()
    files = list_images(root)
    persons = sorted({p for p, _ in files})[::max(1, every)]
    keep = set(persons)
    files = [(p, f) for p, f in files if p in keep]
    names: dict[str, int] = {}
    samples: dict[str, list[Sample]] = {c: [] for c in CONFIGS}
    for i, (person, path) in enumerate(files):
        label = names.setdefault(person, len(names))
        try:
            bgr = decode_image(path.read_bytes())
            per = analyse_image(models, bgr, label, rule=rule, enrol_rule=enrol_rule,
                                limits=lim, face_px=face_px, enrol_limits=enrol_limits)
        except (ImageRejected, OSError):
            per = {c: Sample(label, Reason.IMAGE_CORRUPT, Reason.IMAGE_CORRUPT) for c in CONFIGS}
        for c in CONFIGS:
            samples[c].append(per[c])
        if progress is not None and (i + 1) % 100 == 0:
            progress(i + 1, len(files))
    return Collected(samples=samples, identities=len(names), images=len(files))


def embedded_set(samples: list[Sample], dim: int, *, gated: bool, identities: int) -> EmbeddedSet:
    """The comparable images: a selected face (and, when ``gated``, a passed gate)."""
    use = [s for s in samples if s.selected is Reason.OK and s.embedding is not None
           and (not gated or s.gate is Reason.OK)]
    return EmbeddedSet(
        embeddings=np.stack([s.embedding for s in use if s.embedding is not None])
        if use else np.zeros((0, dim), np.float32),
        labels=np.asarray([s.label for s in use], dtype=np.int64),
        identities=identities,
        images=len(samples),
        failed=sum(1 for s in samples if s.selected is not Reason.OK),
    )


@dataclass(frozen=True, slots=True)
class GateReport:
    """How many images the gate refused, why, and how many of those would have matched."""

    refused: int
    by_reason: dict[str, int]
    would_match: int
    """Refused images whose genuine comparisons mostly reach the FMR 1e-4 threshold."""
    refused_with_mates: int


def gate_report(samples: list[Sample], threshold: float) -> GateReport:
    """Judge the gate's refusals against the scores the refused faces would have had."""
    sel = [s for s in samples if s.selected is Reason.OK and s.embedding is not None]
    refused = [s for s in sel if s.gate is not Reason.OK]
    by: dict[str, int] = {}
    for s in refused:
        by[str(s.gate)] = by.get(str(s.gate), 0) + 1
    would = with_mates = 0
    for s in refused:
        assert s.embedding is not None
        mates = [m.embedding for m in sel if m.label == s.label and m is not s
                 and m.embedding is not None]
        if not mates:
            continue
        with_mates += 1
        scores = np.stack(mates) @ s.embedding
        would += int(float(np.mean(scores >= threshold)) > 0.5)
    return GateReport(len(refused), by, would, with_mates)


def stats_of(data: EmbeddedSet) -> ScoreStats | None:
    """All-pairs statistics, or None when there are no genuine or impostor pairs."""
    if data.embeddings.shape[0] < 2:
        return None
    stats = pair_scores(data)
    if stats.genuine.size == 0 or stats.impostor_sorted.size == 0:
        return None
    return stats


def gate_flip_stats(
    samples: list[Sample], *, threshold: float, band: float
) -> tuple[ScoreStats | None, float]:
    """All-pairs statistics under the gate's mirror rule, and the share of pairs mirrored.

    Pair (i, j), i < j, is image i probed against image j's template: the
    template is fused (enrolment always fuses), the probe's plain view is
    scored first, and the fused score replaces it when the plain score lies
    within ``band`` of ``threshold`` (the device's operating threshold). The
    runner-up margin does not apply to a 1:1 pair; the open-set run models it.
    """
    use = [s for s in samples if s.selected is Reason.OK and s.gate is Reason.OK
           and s.embedding is not None and s.plain is not None]
    if len(use) < 2:
        return None, 0.0
    e = np.stack([s.embedding for s in use if s.embedding is not None])
    p = np.stack([s.plain for s in use if s.plain is not None])
    y = np.asarray([s.label for s in use], dtype=np.int64)
    gen: list[npt.NDArray[np.float32]] = []
    imp: list[npt.NDArray[np.float32]] = []
    mirrored = pairs = 0
    for start in range(0, e.shape[0], 512):
        plain = p[start : start + 512] @ e.T
        fused = e[start : start + 512] @ e.T
        uncertain = np.abs(plain - threshold) < band
        block = np.where(uncertain, fused, plain)
        for i in range(block.shape[0]):
            r = start + i
            row, same = block[i, r + 1 :], y[r + 1 :] == y[r]
            mirrored += int(uncertain[i, r + 1 :].sum())
            pairs += row.size
            gen.append(row[same])
            imp.append(row[~same])
    stats = ScoreStats(genuine=np.concatenate(gen).astype(np.float32),
                       impostor_sorted=np.sort(np.concatenate(imp)).astype(np.float32))
    if stats.genuine.size == 0 or stats.impostor_sorted.size == 0:
        return None, 0.0
    return stats, mirrored / max(1, pairs)
