"""Embedding an image file for enrolment: ``embed_image(data) -> ImageEmbedding``.

Enrolment is stricter than the live pipeline: exactly one dominant face
(another face at least a quarter of its area makes the photo ambiguous),
and every quality check must pass. Any refusal is an :class:`ImageRejected`
carrying a reason code; nothing is half-produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ...runtime.events import StageResult
from .align import align_face
from .errors import ImageRejected
from .image import decode_image
from .pipeline import FramePipeline
from .quality import assess, first_failure
from .reasons import Reason

# A second face this large relative to the largest makes the photo ambiguous.
_AMBIGUOUS_AREA = 0.25


@dataclass(frozen=True, slots=True)
class ImageEmbedding:
    """One enrolment template: the L2-normalised embedding and where it came from.

    ``embedding`` is biometric data: store it encrypted, never log it.
    """

    embedding: npt.NDArray[np.float32] = field(repr=False)
    model_id: str
    quality: tuple[StageResult, ...]
    face_box: tuple[float, float, float, float]
    detector_score: float


def embed_bgr(pipeline: FramePipeline, bgr: npt.NDArray[np.uint8]) -> ImageEmbedding:
    """Detect, check and embed the single face in a decoded image. Blocking."""
    faces = pipeline.models.detector.detect(bgr)
    if not faces:
        raise ImageRejected(Reason.NO_FACE, "no face found in the image")
    faces.sort(key=lambda d: -d.area)
    if len(faces) > 1 and faces[1].area >= _AMBIGUOUS_AREA * faces[0].area:
        raise ImageRejected(
            Reason.MANY_FACES, f"{len(faces)} faces found; enrolment needs exactly one"
        )
    target = faces[0]
    quality = assess(bgr, target, pipeline.quality)
    failed = first_failure(quality)
    if failed is not None:
        raise ImageRejected(
            failed.reason, f"face failed the {failed.name} check (value {failed.value})"
        )
    emb = pipeline.models.embedder.embed(align_face(bgr, target.landmarks))[0]
    return ImageEmbedding(
        embedding=emb,
        model_id=pipeline.models.model_id,
        quality=quality,
        face_box=target.box,
        detector_score=target.score,
    )


def embed_image_bytes(
    pipeline: FramePipeline, data: bytes, *, max_bytes: int, max_pixels: int
) -> ImageEmbedding:
    """Decode (within the caps) and embed an image file's bytes. Blocking."""
    bgr = decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    return embed_bgr(pipeline, bgr)
