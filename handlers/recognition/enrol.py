"""Embedding an image file for enrolment: ``embed_image(data) -> ImageEmbedding``.

Enrolment takes the dominant face of an ordinary photograph: a smaller
background face is accepted (the selection rule ``ENROL_RULE`` in
``selection.py``: refused only when a second face has at least 0.6 of the
main face's area), the landmarks are refined and the embedding is
flip-fused (always: enrolment is offline; the gate spends the mirror view only
on uncertain faces, ``fusion.py``), and every quality check must pass, with a
wider yaw limit than the gate's (``fusion.enrol_max_yaw_deg``, default 85 deg:
on the devset every enrolment refusal at 50 deg was yaw; 65 deg left 2 of 176,
85 deg none, with no stranger granted). Any refusal is an :class:`ImageRejected`
carrying a reason code; nothing is half-produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ...runtime.events import StageResult
from .errors import ImageRejected
from .facepath import locate
from .fusion import embed_face
from .image import decode_image
from .pipeline import FramePipeline
from .reasons import Reason
from .selection import ENROL_RULE


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
    found = locate(pipeline.models.detector, bgr, ENROL_RULE, pipeline.enrol_quality,
                   pipeline.embed_opts)
    if found.selection.face is None:
        if found.reason is Reason.MANY_FACES:
            raise ImageRejected(
                Reason.MANY_FACES,
                f"{found.faces} faces found and two of similar size; enrolment needs one main face",
            )
        raise ImageRejected(Reason.NO_FACE, "no face found in the image")
    target = found.target
    assert target is not None  # set whenever a face was selected
    failed = next((r for r in found.quality if not r.passed), None)
    if failed is not None:
        raise ImageRejected(
            failed.reason, f"face failed the {failed.name} check (value {failed.value})"
        )
    coarse = found.selection.face
    emb, _ = embed_face(pipeline.models.embedder, bgr, target.landmarks, pipeline.embed_opts,
                        coarse=coarse.landmarks if coarse is not None else None)
    quality = found.quality
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
