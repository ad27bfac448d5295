"""Config section of the recognition pipeline (owned by handlers/recognition).

``[recognition]`` holds the operating point and input limits; the sub-tables
``[recognition.models]``, ``[recognition.quality]``, ``[recognition.liveness]``
and ``[recognition.decision]`` hold the per-stage settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ._fields import FieldError, setting

_HEX = frozenset("0123456789abcdef")


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and set(value.lower()) <= _HEX


@dataclass(frozen=True)
class ModelSettings:
    """Detector and recogniser models (built-in YuNet 2023mar + SFace 2021dec by default)."""

    cache_dir: Path | None = setting(
        None,
        doc="Where converted models are cached (keyed by source sha256); "
        "absent: 'model-cache' beside the config file.",
    )
    detector_path: Path | None = setting(
        None, doc="User YuNet-format detector ONNX file; absent uses the built-in YuNet."
    )
    detector_sha256: str = setting("", doc="sha256 pin of detector_path (required with it).")
    recognizer_path: Path | None = setting(
        None, doc="User recogniser ONNX file; absent uses the built-in SFace."
    )
    recognizer_sha256: str = setting("", doc="sha256 pin of recognizer_path (required with it).")
    recognizer_family: Literal["sface", "arcface"] = setting(
        "arcface",
        doc="User recogniser preprocessing: 'arcface' = InsightFace RGB (x-127.5)/127.5 "
        "(112x112, usually 512-d); 'sface' = RGB 0-255.",
    )
    recognizer_name: str = setting(
        "user-recognizer", doc="Model name recorded with every template (with the hash)."
    )
    detector_input_width: int = setting(
        320, doc="Detector input width in px (frames are scaled down to it).", ge=64, le=1920
    )
    detector_score: float = setting(0.6, doc="Minimum detector confidence.", gt=0, le=1)
    detector_threads: int = setting(1, doc="onnxruntime intra-op threads, detector.", ge=1, le=16)
    recognizer_threads: int = setting(
        2, doc="onnxruntime intra-op threads, recogniser.", ge=1, le=16
    )
    recognizer_spin: Literal["auto", "on", "off"] = setting(
        "auto",
        doc="Let the recogniser's onnxruntime threads busy-wait during one inference "
        "(allow_spinning=1, stopped when it returns): ~1 ms faster per embedding when the "
        "cores are free, slower when other processes compete for them. 'auto' keeps both "
        "kinds of session and routes each run to the one with the lower recent latency.",
    )
    recognizer_precision: Literal["auto", "fp32", "int8"] = setting(
        "auto",
        doc="Built-in SFace build. 'auto' (default): decided once per device and pinned in "
        "cache_dir/recognizer-build.json: 'fp32' unless the int8 build is measured at least "
        "15% faster than the fastest fp32 engine on this CPU at the first start (int8 is the "
        "less accurate build; on an AMD Zen 4 with AVX-512 VNNI it was slower than fp32 on "
        "OpenCV's engine). The pin is never re-measured, so stored templates keep their "
        "build; a device upgraded from before the pin keeps the build its model cache shows "
        "it ran (int8 file present: int8). 'int8': static int8 build (cosine >= 0.99 to fp32), model "
        "id 'sface-2021dec@fb143eea:int8r1-<hash>'. 'fp32': exact fp32 function, model id "
        "'sface-2021dec@fb143eea'. Templates of one build are never compared with the other: "
        "switching means re-enrolment (set the build that made the stored templates to keep "
        "them). A user recogniser (recognizer_path) always runs fp32.",
    )
    recognizer_engine: Literal["auto", "onnxruntime", "opencv"] = setting(
        "auto",
        doc="Who runs an fp32 recogniser: 'onnxruntime', 'opencv' (OpenCV's dnn, on OpenCV's "
        "thread pool), or 'auto' (default): the faster of the two, measured once on this CPU "
        "at first start and cached in cache_dir/engine-probe.json. Both compute the same "
        "function (same model id, same templates); int8 always runs on onnxruntime.",
    )

    def check(self) -> None:
        for kind, path, pin in (
            ("detector", self.detector_path, self.detector_sha256),
            ("recognizer", self.recognizer_path, self.recognizer_sha256),
        ):
            if path is not None and not _is_sha256(pin):
                raise FieldError(f"{kind}_sha256", f"a user {kind} needs its 64-hex sha256 pin")


@dataclass(frozen=True)
class QualitySettings:
    """Quality gate applied to the target face before embedding."""

    min_face_px: int = setting(60, doc="Minimum face box side (shorter side) in px.", ge=8)
    min_sharpness: float = setting(
        12.0,
        doc="Minimum variance of the Laplacian on the face crop (blur check). Calibrated on "
        "the devset: 12 refuses ~1% of its images (25 refused ~3.5%, most of which would "
        "have matched); a sample photo blurred with sigma 8 px reads ~8.",
        ge=0,
    )
    max_yaw_deg: float = setting(
        80.0,
        doc="Maximum estimated head yaw (atan model of the nose offset, see quality.py): "
        "refuses near-profile views only. Calibrated on the devset (every 4th identity, fp32, "
        "two scales): at 50 the gate refused 17 images for yaw, 16 of which would have "
        "matched, and open-set FNIR was 8.3%; at 80 it refuses none there, FNIR 6.2%, still "
        "0 of 345 strangers granted (docs/performance.md, issue 15 round 4).",
        gt=0,
        le=90,
    )
    max_pitch_deg: float = setting(30.0, doc="Maximum estimated head pitch.", gt=0, le=90)
    min_brightness: float = setting(40.0, doc="Minimum mean grey level of the face.", ge=0)
    max_brightness: float = setting(225.0, doc="Maximum mean grey level of the face.", le=255)


@dataclass(frozen=True)
class LivenessSettings:
    """Model-free liveness checks. This is NOT certified presentation-attack detection."""

    stillness: bool = setting(True, doc="Refuse a face that is perfectly still over the window.")
    min_motion_px: float = setting(
        0.35,
        doc="Minimum landmark movement (px, at detector scale) plus pixel change that counts "
        "as a live face across the window.",
        ge=0,
    )
    min_pixel_change: float = setting(
        0.4, doc="Minimum mean absolute grey-level change of the face crop between frames.", ge=0
    )
    ir_required: bool = setting(
        True, doc="When frames carry an IR image, the face must appear in it (IoU >= ir_iou)."
    )
    ir_iou: float = setting(0.3, doc="Minimum overlap of colour and IR face boxes.", gt=0, le=1)
    pad_model: Path | None = setting(
        None, doc="Optional ONNX presentation-attack model (input 1x3xHxW RGB 0-1, output live prob)."
    )
    pad_model_sha256: str = setting("", doc="sha256 pin of pad_model (required with it).")
    pad_threshold: float = setting(0.5, doc="Minimum live probability of the PAD model.", ge=0, le=1)

    def check(self) -> None:
        if self.pad_model is not None and not _is_sha256(self.pad_model_sha256):
            raise FieldError("pad_model_sha256", "a PAD model needs its 64-hex sha256 pin")


@dataclass(frozen=True)
class DecisionSettings:
    """The multi-frame decision rule."""

    k: int = setting(3, doc="Frames that must agree on the same subject to grant.", ge=1, le=30)
    window_s: float = setting(1.5, doc="Window in which the k frames must fall.", gt=0, le=30)
    deadline_s: float = setting(
        3.0, doc="A tracked face not decided by then gives 'undecided'.", gt=0, le=60
    )
    unknown_k: int = setting(
        3, doc="Frames below threshold (quality and liveness passed) that give 'unknown'.", ge=1
    )
    track_iou: float = setting(
        0.3, doc="Minimum box overlap to treat a face as the same track.", gt=0, le=1
    )
    track_lost_s: float = setting(
        1.0, doc="A track with no face for this long ends (no decision if none was due).", gt=0
    )
    min_margin: float = setting(
        0.0, doc="Minimum score margin over the runner-up subject to count a frame.", ge=0, le=1
    )
    cooldown_s: float = setting(
        2.0, doc="After a decision, the same track is not decided again for this long.", ge=0
    )
    fast_k: int = setting(
        2,
        doc="Adaptive rule (handlers/recognition/adaptive.py): grant on this many frames (>= 2) "
        "when each scores >= fast_score with margin >= fast_margin and liveness passed; "
        "0 = off (always k). Default 2: on the devset (every 3rd identity, 446 impostor "
        "approaches, 1.57M impostor pairs) it granted no impostor, fp32 and int8 alike, and no "
        "impostor pair reached fast_score (docs/performance.md, issue 16 round 3).",
        ge=0,
        le=30,
    )
    fast_score: float = setting(
        0.55, doc="Per-frame score a fast_k grant needs (devset FMR: docs/performance.md).",
        ge=0, le=1,
    )
    fast_margin: float = setting(
        0.15, doc="Per-frame margin over the runner-up subject a fast_k grant needs.", ge=0, le=1
    )
    weak_k: int = setting(
        0, doc="Frames a grant needs when evidence is weak (see weak_band, weak_margin); "
        "0 = off (k).", ge=0, le=30,
    )
    weak_band: float = setting(
        0.05, doc="A vote within this of the threshold is weak evidence.", ge=0, le=1
    )
    weak_margin: float = setting(
        0.05, doc="A vote with a margin under this is weak evidence.", ge=0, le=1
    )
    max_faces: int = setting(
        6,
        doc="Faces identified per frame (issue 16): the gate's target, then the other faces in "
        "the ROI at least quality.min_face_px in size, largest first; each has its own track "
        "and decision, and only the target can open the door. 1 = the target only.",
        ge=1,
        le=16,
    )
    bystanders: Literal["count", "report"] = setting(
        "count",
        doc="Decisions about faces that are not the gate's target: 'count' = health counters "
        "only (every event/access is about the face at the door, as before); 'report' = also "
        "published on event/access with at_door = false (never 'undecided'; docs/mqtt.md).",
    )

    def check(self) -> None:
        if self.fast_k == 1:
            raise FieldError("fast_k", "must be 0 (off) or >= 2: the stillness check needs 2 frames")


@dataclass(frozen=True)
class FusionSettings:
    """Landmark refinement, view fusion and face selection (handlers/recognition/fusion.py)."""

    refine: bool = setting(
        True,
        doc="Second detector pass on a crop around the selected face, scaled so the face is "
        "refine_face_px wide: landmarks as precise as a large full-frame pass at a fraction "
        "of its cost. Off: the coarse pass's landmarks are used.",
    )
    refine_face_px: float = setting(
        160.0, doc="Face width (px) at the detector in the refinement pass.", ge=48, le=320
    )
    flip: bool = setting(
        True,
        doc="Embed the aligned face and its mirror image in one batch and average the two "
        "(enrolment and gate alike); costs one more recogniser row per frame.  At the gate "
        "only uncertain faces get the mirror row (flip_band, flip_margin).",
    )
    flip_band: float = setting(
        0.08,
        doc="At the gate the mirror view is embedded only when the plain view is uncertain: "
        "its best score within this distance of the decision threshold (1.0: every frame; "
        "0: only by flip_margin). Enrolment always fuses when flip is on.",
        ge=0,
        le=1,
    )
    flip_margin: float = setting(
        0.03,
        doc="At the gate the mirror view is also embedded when the plain view's best score "
        "is above the flip_band and leads the runner-up subject by less than this.",
        ge=0,
        le=1,
    )
    enrol_max_yaw_deg: float = setting(
        85.0,
        doc="Largest yaw (deg) accepted in an enrolment photo (the live gate uses "
        "quality.max_yaw_deg): a photo is enrolled offline with both views fused, so a wider "
        "pose is still a usable template.",
        gt=0,
        le=90,
    )
    central_roi: tuple[float, float, float, float] = setting(
        (0.25, 0.25, 0.5, 0.5),
        doc="Preferred central region [x, y, w, h] (fractions of the frame) inside roi: when "
        "a face centre lies in it, only such faces compete, so a larger bystander at the side "
        "is never the target; otherwise every face in roi does. [0, 0, 1, 1] turns it off.",
    )
    ambiguous_area: float = setting(
        0.5,
        doc="At the gate, a second face in the ROI with at least this fraction of the target "
        "face's area makes the frame ambiguous (refused as many_faces) instead of guessed.",
        gt=0,
        le=1,
    )
    multiscale: bool | None = setting(
        None,
        doc="With refine and flip: the face aligned from the coarse pass's landmarks (and its "
        "mirror) joins the mean, four recogniser rows. Always at enrolment; at the gate only "
        "when the mirror view is embedded (flip_band, flip_margin), so a clear face costs "
        "nothing more. Unset (default): on, except with the int8 build. Devset every 4th, "
        "fp32: FNMR@1e-4 3.69% vs 4.28%, open-set FNIR 8.3% vs 9.6%, 0 of 345 strangers "
        "granted; int8: 3.70% vs 4.44% but 1 stranger of 345 granted, so int8 keeps it off "
        "(docs/performance.md, issue 15).",
    )


@dataclass(frozen=True)
class RecognitionSection:
    """Face detection, quality, liveness, matching and the decision rule."""

    enabled: bool = setting(True, doc="Run the recognition pipeline on camera frames.")
    target_fmr: float = setting(
        1e-3,
        doc="Operating point: target false-match rate of one 1:N search (false-positive "
        "identification rate). The cosine threshold is looked up in the calibration table at "
        "the per-comparison rate target_fmr / gallery size, so it rises as the gallery grows.",
        gt=0,
        le=0.1,
    )
    calibration: Path | None = setting(
        None, doc="Calibration table written by 'facegate calibrate'; absent uses built-in defaults."
    )
    threshold: float | None = setting(
        None, doc="Fixed cosine threshold; overrides the calibrated, gallery-size-aware one."
    )
    roi: tuple[float, float, float, float] = setting(
        (0.0, 0.0, 1.0, 1.0),
        doc="Region of interest as fractions [x, y, w, h] of the frame; the target face is the "
        "largest whose centre lies inside it.",
    )
    max_image_bytes: int = setting(
        20_000_000, doc="Largest encoded image accepted for enrolment.", ge=1024
    )
    max_image_pixels: int = setting(
        40_000_000, doc="Largest decoded image (width x height) accepted.", ge=4096
    )
    models: ModelSettings = setting(factory=ModelSettings, doc="Detector and recogniser.")
    quality: QualitySettings = setting(factory=QualitySettings, doc="Quality gate.")
    liveness: LivenessSettings = setting(factory=LivenessSettings, doc="Liveness checks.")
    decision: DecisionSettings = setting(factory=DecisionSettings, doc="Multi-frame decision.")
    fusion: FusionSettings = setting(
        factory=FusionSettings, doc="Landmark refinement, view fusion, face selection."
    )

    def check(self) -> None:
        x, y, w, h = self.roi
        if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1):
            raise FieldError("roi", "x, y must be in [0, 1) and w, h in (0, 1]")
        if x + w > 1.0 + 1e-9 or y + h > 1.0 + 1e-9:
            raise FieldError("roi", "the region must lie inside the frame")
        cx, cy, cw, ch = self.fusion.central_roi
        if not (0 <= cx < 1 and 0 <= cy < 1 and 0 < cw <= 1 and 0 < ch <= 1) or (
            cx + cw > 1.0 + 1e-9 or cy + ch > 1.0 + 1e-9
        ):
            raise FieldError("fusion.central_roi", "the region must lie inside the frame")
        if self.threshold is not None and not -1.0 <= self.threshold <= 1.0:
            raise FieldError("threshold", "a cosine threshold lies in [-1, 1]")
