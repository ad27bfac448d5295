"""Issue 15 round 3: two-scale fusion (enrolment always, gate in the band) and the open-set study.

Real models and photos for the fusion; the study's counting is checked on
hand-made unit vectors whose every score is known.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from facegate.drivers.models import LoadedModels
from facegate.handlers.recognition import Reason, RecognitionEngine
from facegate.handlers.recognition.align import align_face
from facegate.handlers.recognition.calibrate_run import device_config_name
from facegate.handlers.recognition.engine import embed_options, int8_build
from facegate.handlers.recognition.evaluation import Sample, analyse_image
from facegate.handlers.recognition.fusion import EmbedOptions, extra_views, fuse_rows
from facegate.handlers.recognition.openset_study import run_study
from facegate.handlers.recognition.quality import QualityLimits
from facegate.handlers.recognition.selection import (
    ENROL_RULE,
    GATE_RULE,
    SelectionRule,
    select_face,
)
from facegate.handlers.recognition.thresholds import CalibrationTable
from facegate.runtime.config.recognition import FusionSettings, RecognitionSection

from .conftest import face_bgr, place_in_frame

# Real detector and recogniser runs, several per test: generous on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(300)


def _png(bgr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", bgr)
    assert ok
    return buf.tobytes()


def _engine(models: LoadedModels, threshold: float, *, multiscale: bool) -> RecognitionEngine:
    cfg = RecognitionSection(threshold=threshold, fusion=FusionSettings(multiscale=multiscale))
    eng = RecognitionEngine(cfg, models)
    for sid, name in (("s-obama", "obama.jpg"), ("s-biden", "biden.jpg")):
        emb = eng.embed_image_sync(_png(face_bgr(name))).embedding
        eng.matcher.add(sid, f"t-{sid}", emb, models.model_id)
    return eng


def _four_views(models: LoadedModels, bgr: np.ndarray, rule: SelectionRule) -> np.ndarray:
    """The expected two-scale fusion, built by hand from the detector's own passes."""
    from facegate.handlers.recognition.fusion import refine  # noqa: PLC0415 - test helper

    faces = models.detector.detect(bgr)
    sel = select_face(faces, bgr.shape[1], bgr.shape[0], rule)
    assert sel.face is not None
    fine = refine(models.detector, bgr, sel.face, EmbedOptions())
    crops = []
    for det in (fine, sel.face):
        c = align_face(bgr, det.landmarks)
        crops += [c, np.asarray(cv2.flip(c, 1), dtype=np.uint8)]
    return fuse_rows(models.embedder.embed(np.stack(crops)))


def test_enrolment_fuses_both_scales_and_both_views(models: LoadedModels) -> None:
    photo = face_bgr("obama.jpg")
    def enrol(multiscale: bool) -> np.ndarray:
        cfg = RecognitionSection(fusion=FusionSettings(multiscale=multiscale))
        return RecognitionEngine(cfg, models).embed_image_sync(_png(photo)).embedding

    ms, flip = enrol(True), enrol(False)
    want = _four_views(models, photo, ENROL_RULE)
    assert float(ms @ want) > 0.999
    assert abs(float(np.linalg.norm(ms)) - 1.0) < 1e-4
    assert float(ms @ flip) < 0.99999  # the coarse views really joined the mean


def test_gate_spends_the_coarse_views_only_in_the_band(models: LoadedModels) -> None:
    frame = place_in_frame(face_bgr("obama2.jpg"), models)
    eng = _engine(models, threshold=0.40, multiscale=True)
    clear = eng.pipeline.analyse(frame)
    assert clear.usable and clear.search is not None and clear.search.best is not None
    assert clear.search.best.subject_id == "s-obama" and clear.search.best.score > 0.48
    assert not clear.mirrored and eng.pipeline.mirror_passes == 0  # one recogniser row
    border = _engine(models, threshold=clear.search.best.score, multiscale=True).pipeline
    out = border.analyse(frame)
    assert out.mirrored and border.mirror_passes == 1
    assert out.embedding is not None
    assert float(out.embedding @ _four_views(models, frame, GATE_RULE)) > 0.999
    assert out.search is not None and out.search.best is not None
    assert out.search.best.subject_id == "s-obama"


def test_extra_views_follow_the_options(models: LoadedModels) -> None:
    frame = place_in_frame(face_bgr("obama2.jpg"), models)
    face = models.detector.detect(frame)[0]
    crop = align_face(frame, face.landmarks)
    assert extra_views(frame, crop, face.landmarks, EmbedOptions(flip=False)).shape[0] == 0
    one = EmbedOptions()  # the default: mirror only
    assert extra_views(frame, crop, face.landmarks, one).shape[0] == 1
    assert one.label == "refine160+flip"
    ms = EmbedOptions(multiscale=True)
    assert extra_views(frame, crop, face.landmarks, ms).shape == (3, *crop.shape)
    assert extra_views(frame, crop, None, ms).shape[0] == 1  # no coarse pass: mirror only
    assert ms.label == "refine160+flip+ms"


def test_calibration_measures_the_two_scale_configuration(models: LoadedModels) -> None:
    photo = face_bgr("obama.jpg")
    per = analyse_image(models, photo, 0, rule=GATE_RULE, enrol_rule=ENROL_RULE,
                        limits=QualityLimits(), face_px=160.0)
    multi, refined = per["multi+flip"], per["refine+flip"]
    assert multi.embedding is not None and refined.embedding is not None
    assert multi.plain is not None and refined.plain is not None
    assert np.array_equal(multi.plain, refined.plain)  # the gate's first row is the same
    assert multi.gate is refined.gate
    assert 0.98 < float(multi.embedding @ refined.embedding) < 0.99999
    on, off = (RecognitionSection(fusion=FusionSettings(multiscale=v)) for v in (True, False))
    for int8 in (False, True):
        assert device_config_name(on, int8=int8) == "multi+flip@gate"
        assert device_config_name(off, int8=int8) == "refine+flip@gate"
    # Unset: two scales with the fp32 build, not with int8 (it granted a stranger on the devset).
    assert device_config_name(RecognitionSection(), int8=False) == "multi+flip@gate"
    assert device_config_name(RecognitionSection(), int8=True) == "refine+flip@gate"


def test_the_default_engine_fuses_two_scales_only_with_the_fp32_build() -> None:
    assert embed_options(RecognitionSection(), int8=False).multiscale
    assert not embed_options(RecognitionSection(), int8=True).multiscale
    assert int8_build("sface-2021dec@fb143eea:int8r1-5491754f")
    assert not int8_build("sface-2021dec@fb143eea")


def _u(*v: float) -> np.ndarray:
    a = np.asarray(v, np.float32)
    return a / np.linalg.norm(a)


def test_study_counts_templates_thresholds_and_k_of_n() -> None:
    ok = Reason.OK
    e = np.eye(8, dtype=np.float32)
    s: list[Sample] = []
    # Identities 0..5; 2 and 5 are strangers. Members: photos 0 and 1 enrol, 2.. are probes.
    # Identity 0: first photo off-axis (0.6 to its probes), second on-axis.
    for emb in (_u(1, 0, 0, 0, 0, 0, 0, 1.333), e[0], e[0], e[0]):
        s.append(Sample(0, ok, ok, embedding=emb))
    # Identity 1: three images, one probe (at 0.8), too few for a 2-frame approach.
    for emb in (e[1], e[1], _u(0, 1, 0.75, 0, 0, 0, 0, 0)):
        s.append(Sample(1, ok, ok, embedding=emb))
    # Stranger 2: two images that look like identity 1 (0.7), one unlike anyone.
    for emb in (_u(0, 0.7, 0, 0, 0, 0, 0.714, 0), _u(0, 0.7, 0, 0, 0, 0, 0.714, 0), e[6]):
        s.append(Sample(2, ok, ok, embedding=emb))
    for emb in (e[3], e[3], e[3], e[3]):  # identity 3: probes refused by the gate
        s.append(Sample(3, ok, ok, embedding=emb, gate=Reason.QUALITY_BLUR))
    s[-4].gate = s[-3].gate = ok
    s.append(Sample(4, ok, ok, embedding=e[4]))  # identity 4: one image, not in the study
    s.append(Sample(5, ok, ok, embedding=e[5]))  # stranger 5: one image
    table = CalibrationTable("m", ((1e-1, 0.65), (1e-2, 0.75), (1e-3, 0.9)))
    rows = run_study(s, table, 3e-1, k=2, fmrs=(1e-1, 1e-2))
    # Per rule: the device row (3e-1 / 3 subjects = 1e-1), then the sweep.
    assert [r.rule for r in rows] == [r for r in ("1 photo", "2 photos, max", "2 photos, mean")
                                      for _ in range(3)]
    by = {(r.rule, i % 3): r for i, r in enumerate(rows)}
    dev = by[("1 photo", 0)]
    assert dev.per_comparison_fmr == pytest.approx(1e-1)
    assert dev.subjects == 3 and dev.templates == 3 and dev.threshold == 0.65
    assert dev.mated_probes == 5  # 0: 2, 1: 1, 3: 2
    # Identity 0 (0.6 < 0.65) misses both, identity 3's two are refused; identity 1 matches.
    assert dev.mated_not_granted == 4
    assert dev.stranger_probes == 4 and dev.strangers_granted == 2  # 0.7 >= 0.65
    assert dev.approaches == 2 and dev.approaches_not_granted == 2  # ids 0 and 3 (1: 1 probe)
    assert dev.stranger_approaches == 1 and dev.stranger_approaches_granted == 1  # 2 of 3
    two = by[("2 photos, max", 1)]
    assert two.templates == 6 and two.mated_not_granted == 2  # identity 0 now matches
    assert two.approaches_not_granted == 1
    strict = by[("2 photos, max", 2)]  # threshold 0.75: the stranger's 0.7 is refused
    assert strict.strangers_granted == 0 and strict.stranger_approaches_granted == 0
    mean = by[("2 photos, mean", 0)]
    assert mean.templates == 3
    assert all(0 <= r.fnir <= 1 and 0 <= r.approach_fnir <= 1 for r in rows)


@pytest.mark.parametrize("k", [1, 3])
def test_study_k_changes_only_the_approach_figures(k: int) -> None:
    ok = Reason.OK
    e = np.eye(4, dtype=np.float32)
    s = [Sample(lab, ok, ok, embedding=e[lab]) for lab in (0, 0, 0, 0, 1, 1, 1, 2, 2, 2)]
    table = CalibrationTable("m", ((1e-1, 0.5), (1e-3, 0.5)))
    base = run_study(s, table, 1e-1, k=2, fmrs=())
    other = run_study(s, table, 1e-1, k=k, fmrs=())
    for a, b in zip(base, other, strict=True):
        assert (a.mated_probes, a.mated_not_granted) == (b.mated_probes, b.mated_not_granted)
    # Identity 0 has 2 probes, identity 1 one: with k=3 no member has enough frames.
    assert other[0].approaches == {1: 2, 3: 0}[k]
