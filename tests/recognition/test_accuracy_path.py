"""Issue 15: face selection, landmark refinement, view fusion and the yaw estimate.

Real models and real photos; detections are built by hand only for the pure
selection rule.
"""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest
from facegate.drivers.models import LoadedModels
from facegate.drivers.models.detector import Detection, refine_detection
from facegate.handlers.recognition import ImageRejected, Reason, RecognitionEngine
from facegate.handlers.recognition.evaluation import Sample, gate_report
from facegate.handlers.recognition.fusion import EmbedOptions, embed_face
from facegate.handlers.recognition.openset import run_open_set
from facegate.handlers.recognition.quality import estimate_pose
from facegate.handlers.recognition.selection import (
    ENROL_RULE,
    FULL_FRAME,
    GATE_RULE,
    SelectionRule,
    select_face,
)
from facegate.handlers.recognition.thresholds import CalibrationTable, ThresholdPolicy
from facegate.runtime.config.recognition import RecognitionSection

from .conftest import face_bgr

WHOLE = SelectionRule(roi=FULL_FRAME, central=FULL_FRAME)  # no centre preference


def _det(cx: float, cy: float, side: float) -> Detection:
    lm = np.zeros((5, 2), np.float32)
    return Detection(box=(cx - side / 2, cy - side / 2, side, side), landmarks=lm, score=0.9)


# ---- selection rule (pure) ---------------------------------------------------------

def test_selection_takes_the_largest_face_in_the_roi_and_ignores_a_bigger_bystander() -> None:
    central = SelectionRule(roi=(0.25, 0.0, 0.5, 1.0))
    subject, bystander = _det(320, 240, 120), _det(600, 240, 200)
    sel = select_face([bystander, subject], 640, 480, central)
    assert sel.reason is Reason.OK and sel.face is subject
    assert select_face([bystander, subject], 640, 480, GATE_RULE).face is subject
    # Without a central ROI the larger bystander would be the target.
    assert select_face([bystander, subject], 640, 480, WHOLE).face is bystander


def test_selection_refuses_two_faces_of_similar_size_but_not_a_small_background_face() -> None:
    a, b, small = _det(250, 240, 120), _det(400, 240, 110), _det(500, 100, 60)
    assert select_face([a, b], 640, 480, GATE_RULE).reason is Reason.MANY_FACES
    sel = select_face([a, small], 640, 480, WHOLE)
    assert sel.face is a and sel.candidates == 2
    # Enrolment tolerates a larger background face than the gate does.
    c = _det(450, 240, 90)  # area ratio 0.56
    assert select_face([a, c], 640, 480, GATE_RULE).reason is Reason.MANY_FACES
    assert select_face([a, c], 640, 480, ENROL_RULE).face is a


def test_selection_reasons_for_no_face_outside_roi_and_too_small() -> None:
    assert select_face([], 640, 480, GATE_RULE).reason is Reason.NO_FACE
    roi = SelectionRule(roi=(0.0, 0.0, 0.3, 0.3))
    assert select_face([_det(500, 400, 100)], 640, 480, roi).reason is Reason.OUTSIDE_ROI
    big_only = SelectionRule(min_face_px=80)
    assert select_face([_det(320, 240, 50)], 640, 480, big_only).reason is Reason.QUALITY_SMALL
    # A face below the minimum never makes the frame ambiguous.
    sel = select_face([_det(320, 240, 100), _det(100, 100, 79)], 640, 480, big_only)
    assert sel.reason is Reason.OK and sel.candidates == 1
    with pytest.raises(ValueError):
        SelectionRule(ambiguous_area=0.0)
    # Nobody in the central region: an off-centre face is still served.
    off = _det(80, 80, 100)
    assert select_face([off], 640, 480, GATE_RULE).face is off
    assert select_face([off], 640, 480, ENROL_RULE).face is off


# ---- yaw estimate agrees with the pose of a 3-D face --------------------------------

# Mean adult face (mm): eye centres, nose tip, mouth corners; x right, y down, z to camera.
_FACE_3D = np.array([[-32, -35, -26], [32, -35, -26], [0, 0, 0], [-25, 30, -22], [25, 30, -22]],
                    dtype=np.float64)


def _project(yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    pts = _FACE_3D @ (rx @ ry).T
    # Perspective from 600 mm (a door terminal), 3 px/mm.
    z = 600.0 - pts[:, 2]
    return np.stack([320 + 3 * 600 * pts[:, 0] / z, 240 + 3 * 600 * pts[:, 1] / z],
                    axis=1).astype(np.float32)


@pytest.mark.parametrize("yaw", [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, -25.0, -45.0])
def test_yaw_estimate_tracks_the_true_yaw_of_a_projected_face(yaw: float) -> None:
    est, _ = estimate_pose(_project(yaw))
    assert est == pytest.approx(yaw, abs=6.0)


def test_yaw_estimate_does_not_saturate_and_frontal_samples_read_frontal(
    models: LoadedModels,
) -> None:
    # The old asin form read 45 deg as ~90 deg; the estimate is monotonic to 70 deg.
    ests = [estimate_pose(_project(y))[0] for y in range(0, 75, 5)]
    assert all(b > a for a, b in itertools.pairwise(ests))
    assert ests[-1] < 85.0
    for name in ("obama.jpg", "biden.jpg", "Family1-Mom1.jpg"):
        bgr = face_bgr(name)
        det = max(models.detector.detect(bgr), key=lambda d: d.area)
        fine = refine_detection(models.detector, bgr, det)
        assert abs(estimate_pose(fine.landmarks)[0]) < 20.0, name


# ---- refinement and fusion on real photos ---------------------------------------------

def _small_in_frame(photo: np.ndarray, models: LoadedModels, face_px: int) -> tuple[
        np.ndarray, np.ndarray]:
    """A 640x480 frame with ``photo``'s face ``face_px`` high, and its landmarks
    measured on the full-resolution photo (the reference), mapped into the frame."""
    ref = max(models.detector.detect(photo, input_width=photo.shape[1]), key=lambda d: d.area)
    s = face_px / ref.box[3]
    small = cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 90, np.uint8)
    ox = 320 - round(ref.center[0] * s)
    oy = 240 - round(ref.center[1] * s)
    h, w = small.shape[:2]
    x0, y0 = max(0, ox), max(0, oy)
    x1, y1 = min(640, ox + w), min(480, oy + h)
    frame[y0:y1, x0:x1] = small[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return frame, ref.landmarks * s + np.array([ox, oy], np.float32)


def test_refinement_brings_landmarks_closer_to_the_full_resolution_ones(
    models: LoadedModels,
) -> None:
    coarse_err, fine_err = [], []
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "Family1-Dad1.jpg", "Family2-Lady1.jpg"):
        frame, truth = _small_in_frame(face_bgr(name), models, 120)
        det = max(models.detector.detect(frame), key=lambda d: d.area)
        fine = refine_detection(models.detector, frame, det)
        iod = float(np.linalg.norm(truth[1] - truth[0]))
        coarse_err.append(float(np.linalg.norm(det.landmarks - truth, axis=1).mean()) / iod)
        fine_err.append(float(np.linalg.norm(fine.landmarks - truth, axis=1).mean()) / iod)
    assert np.mean(fine_err) < np.mean(coarse_err)


def test_refinement_keeps_the_coarse_face_when_the_fine_pass_finds_nothing(
    models: LoadedModels,
) -> None:
    blank = np.full((480, 640, 3), 90, np.uint8)
    fake = _det(320, 240, 100)
    assert refine_detection(models.detector, blank, fake) is fake


def test_flip_fusion_is_mirror_invariant_and_normalised(models: LoadedModels) -> None:
    bgr = face_bgr("obama.jpg")
    opts = EmbedOptions()
    det = max(models.detector.detect(bgr), key=lambda d: d.area)
    emb, crop = embed_face(models.embedder, bgr, det.landmarks, opts)
    assert crop.shape == (112, 112, 3)
    assert float(np.linalg.norm(emb)) == pytest.approx(1.0, abs=1e-5)
    mirror = np.ascontiguousarray(cv2.flip(bgr, 1))
    mdet = max(models.detector.detect(mirror), key=lambda d: d.area)
    memb, _ = embed_face(models.embedder, mirror, mdet.landmarks, opts)
    single, _ = embed_face(models.embedder, bgr, det.landmarks, EmbedOptions.legacy())
    msingle, _ = embed_face(models.embedder, mirror, mdet.landmarks, EmbedOptions.legacy())
    # The fused template of the mirror photo is (nearly) the same; single views differ more.
    assert float(emb @ memb) > 0.9
    assert float(emb @ memb) > float(single @ msingle)


# ---- enrolment and the gate use the rule ----------------------------------------------

def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _two_faces(main_px: int, other_px: int, *, width: int = 900) -> np.ndarray:
    canvas = np.full((600, width, 3), 120, np.uint8)
    a = cv2.resize(face_bgr("obama.jpg"), (main_px, round(main_px * 1.25)))
    b = cv2.resize(face_bgr("biden.jpg"), (other_px, round(other_px * 1.25)))
    canvas[50 : 50 + a.shape[0], 80 : 80 + a.shape[1]] = a
    x = width - 20 - b.shape[1]
    canvas[80 : 80 + b.shape[0], x : x + b.shape[1]] = b
    return canvas


def test_enrolment_accepts_a_smaller_background_face_and_enrols_the_main_one(
    models: LoadedModels,
) -> None:
    eng = RecognitionEngine(RecognitionSection(), models)
    ref = eng.embed_image_sync(_png(face_bgr("obama.jpg"))).embedding
    got = eng.embed_image_sync(_png(_two_faces(400, 220)))  # second face ~0.3 of the area
    assert float(got.embedding @ ref) > 0.7
    with pytest.raises(ImageRejected) as err:
        eng.embed_image_sync(_png(_two_faces(300, 290)))
    assert err.value.reason_code == Reason.MANY_FACES


def test_gate_picks_the_subject_in_the_central_roi_not_the_larger_bystander(
    models: LoadedModels,
) -> None:
    eng = RecognitionEngine(RecognitionSection(roi=(0.0, 0.0, 0.5, 1.0)), models)
    frame = _two_faces(300, 400, width=1000)
    out = eng.pipeline.analyse(frame, search=False)
    assert out.reason is Reason.OK and out.target is not None
    assert out.target.center[0] < 500  # the subject on the left, not the bigger face
    whole_cfg = RecognitionSection(roi=(0.0, 0.0, 1.0, 1.0))
    whole = RecognitionEngine(whole_cfg, models).pipeline.analyse(frame, search=False)
    # Over the whole frame the two faces are too close in size: refused, never guessed.
    assert whole.reason is Reason.MANY_FACES and whole.target is None
    assert "refine" in out.latency_ms


# ---- open-set protocol and gate report (pure, on hand-made samples) -------------------

def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, np.float32)
    return a / np.linalg.norm(a)


def test_open_set_counts_fte_fnir_and_strangers_at_the_device_threshold() -> None:
    ok = Reason.OK
    # Identities 0..5 (labels sorted); 2 and 5 are strangers (every third).
    axes = [np.eye(8, dtype=np.float32)[i] for i in range(6)]
    s: list[Sample] = []
    for lab in range(6):
        s.append(Sample(lab, ok, ok, embedding=axes[lab]))  # first image: enrolment
        s.append(Sample(lab, ok, ok, embedding=_unit([*axes[lab][:6] * 3, 1, 0])))  # mate
    s[2].gate = s[2].enrol_gate = Reason.QUALITY_BLUR  # identity 1 fails to enrol
    s[0].gate = Reason.QUALITY_POSE_YAW  # identity 0: too turned for the gate, not to enrol
    s[7].gate = Reason.QUALITY_POSE_YAW  # identity 3's probe is refused
    s[1].embedding = _unit([0, 1, 0, 0, 0, 0, 0, 0])  # identity 0's probe looks like 1
    s[5].embedding = _unit([1, 0, 0, 0, 0, 0, 0, 0])  # stranger 2 looks like identity 0
    table = CalibrationTable("m", ((1e-1, 0.5), (1e-2, 0.6)))
    r = run_open_set(s, ThresholdPolicy(table, 1e-1))
    assert r.enrolled == 3 and r.failed_to_enrol == 1 and r.fte_reasons == {"quality_blur": 1}
    assert r.mated_probes == 3 and r.mated_refused == 1
    # Identity 0's probe resembles identity 1, which is not enrolled: below the threshold.
    assert r.mated_missed == 1 and r.mated_wrong == 0
    assert r.fnir == pytest.approx(2 / 3)
    assert r.stranger_probes == 4 and r.strangers_granted == 1
    g = gate_report(s, threshold=0.5)
    assert g.refused == 3 and g.by_reason == {"quality_blur": 1, "quality_pose_yaw": 2}
    # Identity 0's refused first image does not resemble its (odd) probe: would not match.
    assert g.refused_with_mates == 3 and g.would_match == 2
