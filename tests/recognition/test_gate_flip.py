"""Issue 15: the gate spends the mirror view only on uncertain faces; enrolment always fuses.

Real models, real photos, a real matcher; the threshold is fixed through the
device config so "near the threshold" is chosen by the test. The work counter
``FramePipeline.mirror_passes`` counts the extra recogniser runs.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from facegate.drivers.models import LoadedModels
from facegate.handlers.recognition import Reason, RecognitionEngine
from facegate.handlers.recognition.evaluation import Sample, gate_flip_stats
from facegate.handlers.recognition.fusion import EmbedOptions, fuse_rows, needs_mirror
from facegate.runtime.config.recognition import FusionSettings, RecognitionSection

from .conftest import face_bgr, place_in_frame


def _png(bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", bgr)
    assert ok
    return buf.tobytes()


def _engine(models: LoadedModels, threshold: float) -> RecognitionEngine:
    # The mirror rule alone (two-scale fusion has its own test: test_accuracy_round3.py).
    cfg = RecognitionSection(threshold=threshold, fusion=FusionSettings(multiscale=False))
    eng = RecognitionEngine(cfg, models)
    for sid, name in (("s-obama", "obama.jpg"), ("s-biden", "biden.jpg")):
        emb = eng.embed_image_sync(_png(face_bgr(name))).embedding
        eng.matcher.add(sid, f"t-{sid}", emb, models.model_id)
    return eng


def test_mirror_rule_band_and_margin() -> None:
    o = EmbedOptions(flip_band=0.08, flip_margin=0.03)
    assert not needs_mirror(0.80, 0.10, 0.45, o)  # clear match
    assert not needs_mirror(0.10, 0.09, 0.45, o)  # clear stranger, even with a tiny lead
    assert not needs_mirror(0.37, 0.36, 0.45, o)  # at the band's lower edge: still clear
    assert needs_mirror(0.50, 0.10, 0.45, o)  # inside the band
    assert needs_mirror(0.80, 0.78, 0.45, o)  # two subjects nearly tied
    assert not needs_mirror(None, None, 0.45, o)  # empty gallery
    assert not needs_mirror(0.50, None, 0.45, EmbedOptions(flip=False))
    assert needs_mirror(0.95, None, 0.0, EmbedOptions(flip_band=1.0))  # band 1: always


def test_clear_match_and_clear_stranger_skip_the_mirror_pass_borderline_uses_it(
    models: LoadedModels,
) -> None:
    eng = _engine(models, threshold=0.40)
    pipe = eng.pipeline
    frame = place_in_frame(face_bgr("obama2.jpg"), models)
    before = pipe.mirror_passes
    clear = pipe.analyse(frame)
    assert clear.usable and clear.search is not None and clear.search.best is not None
    plain_score = clear.search.best.score
    assert clear.search.best.subject_id == "s-obama" and plain_score > 0.40 + 0.08
    assert not clear.mirrored and pipe.mirror_passes == before  # one recogniser row
    # A stranger (not enrolled): far below the threshold, no mirror pass either.
    stranger = pipe.analyse(place_in_frame(face_bgr("Family1-Dad1.jpg"), models))
    assert stranger.usable and stranger.search is not None and stranger.search.best is not None
    assert stranger.search.best.score < 0.40 - 0.08
    assert not stranger.mirrored and pipe.mirror_passes == before
    # The same frame with the threshold at its plain score: uncertain, the mirror is spent.
    border = _engine(models, threshold=plain_score).pipeline
    out = border.analyse(frame)
    assert out.mirrored and border.mirror_passes == 1
    assert out.embedding is not None and clear.embedding is not None
    assert abs(float(np.linalg.norm(out.embedding)) - 1.0) < 1e-4
    # The fused embedding is the mean of the plain and mirror views (fusion.py).
    mirror = models.embedder.embed(
        np.asarray(cv2.flip(_crop(border, frame), 1), dtype=np.uint8)[None])
    fused = fuse_rows(np.stack([clear.embedding, mirror[0]]))
    assert float(fused @ out.embedding) > 0.999
    assert out.search is not None and out.search.best is not None
    assert out.search.best.subject_id == "s-obama"


def _crop(pipe: object, frame: np.ndarray) -> np.ndarray:
    from facegate.handlers.recognition.align import align_face  # noqa: PLC0415 - test helper
    from facegate.handlers.recognition.pipeline import FramePipeline  # noqa: PLC0415 - test helper

    assert isinstance(pipe, FramePipeline)
    out = pipe.analyse(frame, search=False)
    assert out.target is not None
    return align_face(frame, out.target.landmarks)


def test_without_a_threshold_or_a_search_the_mirror_is_always_fused(models: LoadedModels) -> None:
    pipe = _engine(models, threshold=0.40).pipeline
    frame = place_in_frame(face_bgr("obama2.jpg"), models)
    n = pipe.mirror_passes
    assert pipe.analyse(frame, search=False).mirrored and pipe.mirror_passes == n + 1
    always = RecognitionEngine(
        RecognitionSection(threshold=0.40, fusion=FusionSettings(flip_band=1.0)), models)
    assert always.pipeline.analyse(frame).mirrored


def test_enrolment_accepts_a_wider_yaw_than_the_gate(models: LoadedModels) -> None:
    eng = RecognitionEngine(RecognitionSection(), models)
    assert eng.pipeline.enrol_quality.max_yaw_deg == 85.0
    assert eng.pipeline.quality.max_yaw_deg == 80.0
    narrow = RecognitionSection(fusion=FusionSettings(enrol_max_yaw_deg=20.0))
    # Never narrower than the gate's own limit.
    assert RecognitionEngine(narrow, models).pipeline.enrol_quality.max_yaw_deg == 80.0


def test_calibration_models_the_gate_rule_on_pairs() -> None:
    ok = Reason.OK
    e = np.eye(4, dtype=np.float32)
    fused = [e[0], e[0], e[1], e[1]]
    plain = [_u([1, 0, 0, 1]), e[0], _u([0, 1, 1, 0]), e[1]]  # probes 0 and 2 are off-axis
    s = [Sample(lab, ok, ok, embedding=f, plain=p)
         for lab, f, p in zip([0, 0, 1, 1], fused, plain, strict=True)]
    # Pair (i, j), i < j: image i's plain view probes image j's fused template. The plain
    # genuine scores (0.707) lie in the band around 0.7: the fused score (1.0) is used.
    stats, share = gate_flip_stats(s, threshold=0.7, band=0.05)
    assert stats is not None and sorted(stats.genuine.tolist()) == pytest.approx([1.0, 1.0])
    assert share == pytest.approx(2 / 6)  # the two genuine pairs of six
    # Outside the band the plain score stands.
    stats0, share0 = gate_flip_stats(s, threshold=0.9, band=0.05)
    assert stats0 is not None and share0 == 0.0
    assert sorted(stats0.genuine.tolist()) == pytest.approx([0.7071, 0.7071], abs=1e-3)


def _u(v: list[float]) -> np.ndarray:
    a = np.asarray(v, np.float32)
    return a / np.linalg.norm(a)
