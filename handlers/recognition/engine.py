"""Building the recognition stack from config, and the enrolment entry point.

:class:`RecognitionEngine` owns the loaded models, the matcher, the frame
pipeline and the threshold policy. The STORAGE side fills ``engine.matcher``
at start-up (``add_batch``) and calls :meth:`RecognitionEngine.embed_image`
to enrol photos; :class:`~.service.RecognitionService` runs it on frames.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ...drivers.models.loader import LoadedModels, ModelOptions, default_cache_dir, load_models_async
from ...drivers.models.registry import (
    BUILTIN_DETECTOR,
    BUILTIN_RECOGNIZER,
    ModelFamily,
    ModelSpec,
    check_same_model,
)
from ...runtime.bus import EventBus
from ...runtime.clock import Clock
from ...runtime.config.recognition import RecognitionSection
from .enrol import ImageEmbedding, embed_bgr, embed_image_bytes
from .fusion import EmbedOptions, multiscale_default
from .image import decode_image
from .liveness import FrameCheck, IrPresenceCheck, OnnxPadCheck, StillnessCheck
from .matcher import Matcher
from .pipeline import FramePipeline, enrol_limits
from .quality import QualityLimits
from .selection import GATE_RULE, SelectionRule
from .thresholds import CalibrationError, CalibrationTable, ThresholdPolicy, builtin_table


def model_options(cfg: RecognitionSection, config_path: Path | None = None) -> ModelOptions:
    """Model specs and session settings from ``[recognition.models]``."""
    m = cfg.models
    detector = BUILTIN_DETECTOR
    if m.detector_path is not None:
        detector = ModelSpec("user-detector", ModelFamily.YUNET, m.detector_path,
                             m.detector_sha256.lower())
    recognizer = BUILTIN_RECOGNIZER
    if m.recognizer_path is not None:
        recognizer = ModelSpec(m.recognizer_name, ModelFamily(m.recognizer_family),
                               m.recognizer_path, m.recognizer_sha256.lower())
    return ModelOptions(
        detector=detector,
        recognizer=recognizer,
        cache_dir=m.cache_dir or default_cache_dir(config_path),
        detector_threads=m.detector_threads,
        recognizer_threads=m.recognizer_threads,
        detector_input_width=m.detector_input_width,
        detector_score=m.detector_score,
        # The int8 recipe exists for the built-in SFace only: a user model runs fp32.
        recognizer_precision=m.recognizer_precision if m.recognizer_path is None else "fp32",
        recognizer_spin=m.recognizer_spin,
        recognizer_engine=m.recognizer_engine,
    )


def quality_limits(cfg: RecognitionSection) -> QualityLimits:
    """The gate's thresholds: ``[recognition.quality]`` as configured (the same type)."""
    return cfg.quality


def int8_build(model_id: str) -> bool:
    """Whether ``model_id`` names the int8 build (``<fp32 id>:int8r<recipe>-<hash>``)."""
    return ":int8" in model_id


def embed_options(cfg: RecognitionSection, *, int8: bool) -> EmbedOptions:
    """Refinement and view fusion from ``[recognition.fusion]`` for the fp32 or int8 build."""
    f = cfg.fusion
    return EmbedOptions(refine=f.refine, refine_face_px=f.refine_face_px, flip=f.flip,
                        flip_band=f.flip_band, flip_margin=f.flip_margin,
                        multiscale=multiscale_default(f.multiscale, int8=int8))


def selection_rule(cfg: RecognitionSection) -> SelectionRule:
    """The gate's face selection rule from ``roi`` and ``[recognition.fusion]``."""
    return SelectionRule(roi=cfg.roi, central=cfg.fusion.central_roi,
                         min_face_px=GATE_RULE.min_face_px,
                         ambiguous_area=cfg.fusion.ambiguous_area)


def threshold_policy(cfg: RecognitionSection, model_id: str) -> ThresholdPolicy:
    """The calibrated policy; a table made for another model is refused."""
    table = CalibrationTable.load(cfg.calibration) if cfg.calibration else None
    if table is None:
        table = builtin_table(model_id)
        if table.model_id != model_id and cfg.threshold is None:
            raise CalibrationError(
                f"no calibration for model {model_id}: run 'facegate calibrate' and set "
                "recognition.calibration, or set recognition.threshold"
            )
    elif table.model_id != model_id:
        raise CalibrationError(
            f"calibration table is for {table.model_id}, the device runs {model_id}"
        )
    return ThresholdPolicy(table, cfg.target_fmr, fixed=cfg.threshold)


class RecognitionEngine:
    """Models + matcher + pipeline + thresholds for one device."""

    def __init__(
        self,
        cfg: RecognitionSection,
        models: LoadedModels,
        *,
        matcher: Matcher | None = None,
    ) -> None:
        self.cfg = cfg
        self.models = models
        self.model_id = models.model_id
        # "is None", not "or": an empty matcher is falsy (len 0) but must still be used.
        self.matcher = matcher if matcher is not None else Matcher(models.model_id, models.embedder.dim)
        # Templates of another model are never compared: refuse a matcher built for one.
        check_same_model(self.matcher.model_id, models.model_id)
        self.thresholds = threshold_policy(cfg, models.model_id)
        lv = cfg.liveness
        checks: list[FrameCheck] = []
        if lv.ir_required:
            checks.append(IrPresenceCheck(models.detector, min_iou=lv.ir_iou))
        if lv.pad_model is not None:
            checks.append(OnnxPadCheck(lv.pad_model, lv.pad_model_sha256,
                                       threshold=lv.pad_threshold))
        self.stillness = (
            StillnessCheck(min_motion_px=lv.min_motion_px, min_pixel_change=lv.min_pixel_change)
            if lv.stillness else None
        )
        self.pipeline = FramePipeline(
            models, self.matcher, roi=cfg.roi, quality=quality_limits(cfg), frame_checks=checks,
            rule=selection_rule(cfg), embed=embed_options(cfg, int8=int8_build(models.model_id)),
            threshold=self.thresholds.threshold,
            enrol_quality=enrol_limits(quality_limits(cfg), cfg.fusion.enrol_max_yaw_deg),
        )

    @classmethod
    async def create(
        cls,
        cfg: RecognitionSection,
        *,
        bus: EventBus | None = None,
        clock: Clock | None = None,
        config_path: Path | None = None,
    ) -> RecognitionEngine:
        """Load (verify, convert, open) the models off the loop and build the engine.

        Raises ModelHashMismatch (and publishes ``SecurityEvent(MODEL_REJECTED)``
        when ``bus`` and ``clock`` are given), ModelError, CalibrationError.
        """
        models = await load_models_async(model_options(cfg, config_path), bus=bus, clock=clock)
        return await asyncio.to_thread(cls, cfg, models)

    def embed_image_sync(self, data: bytes) -> ImageEmbedding:
        """Blocking form of :meth:`embed_image` (for CLI tools already off the loop)."""
        return embed_image_bytes(
            self.pipeline, data,
            max_bytes=self.cfg.max_image_bytes, max_pixels=self.cfg.max_image_pixels,
        )

    async def embed_image(self, data: bytes) -> ImageEmbedding:
        """Embed the single face of an image file (JPEG/PNG/...) for enrolment.

        Raises :class:`~.errors.ImageRejected` ``(reason_code, message)`` for
        empty, corrupt, truncated, oversized images, no face, several faces,
        or a failed quality check. Runs off the event loop.
        """
        return await asyncio.to_thread(self.embed_image_sync, data)

    async def decode_image(self, data: bytes) -> npt.NDArray[np.uint8]:
        """Decode an image file within the configured caps to BGR uint8, off the loop.

        The first half of :meth:`embed_image` (ImageRejected for empty, corrupt,
        truncated, oversized images), so a caller can look at the decoded pixels
        (enrolment's keyed image digest) before paying for detection and embedding.
        """
        return await asyncio.to_thread(
            decode_image, data, max_bytes=self.cfg.max_image_bytes, max_pixels=self.cfg.max_image_pixels
        )

    async def embed_decoded(self, bgr: npt.NDArray[np.uint8]) -> ImageEmbedding:
        """The second half of :meth:`embed_image`: embed the single face of decoded pixels, off the loop."""
        return await asyncio.to_thread(embed_bgr, self.pipeline, bgr)
