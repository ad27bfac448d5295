"""Enrolment from image files: consent first, then faces.

Used by ``facegate subjects enrol --image`` and the MQTT enrol-by-photo
command. Policy does not import recognition: the caller passes the embedder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..storage import EnrolResult
from .collection import AttrValue
from .consent import ACCESS_CONTROL
from .core import Policy
from .errors import ConsentInputError


class EmbeddedImage(Protocol):
    """What an image embedder returns (recognition's ``ImageEmbedding``)."""

    @property
    def embedding(self) -> Any: ...

    @property
    def model_id(self) -> str: ...


async def enrol_images(
    policy: Policy,
    subject_id: str,
    images: Sequence[bytes],
    embed: Callable[[bytes], Awaitable[EmbeddedImage]],
    *,
    actor: str,
    purpose: str = ACCESS_CONTROL,
    display_name: str | None = None,
    attributes: Mapping[str, AttrValue] | None = None,
) -> EnrolResult:
    """Enrol from image files (CLI ``--image``, MQTT enrol-by-photo).

    Consent is checked *before* any face is processed: without consent no
    embedding is ever computed. Then every image is embedded (``embed``, e.g.
    ``RecognitionEngine.embed_image``) and all templates are enrolled through
    :meth:`Policy.enrol_subject` (which checks again).
    """
    await policy.require_enrolment_consent(subject_id, purpose)
    embedded = [await embed(data) for data in images]
    if not embedded:
        raise ConsentInputError("no image given")
    models = {e.model_id for e in embedded}
    if len(models) != 1:
        raise ConsentInputError("images were embedded by different models")
    return await policy.enrol_subject(
        subject_id,
        np.stack([np.asarray(e.embedding, dtype=np.float32).reshape(-1) for e in embedded]),
        models.pop(),
        actor=actor,
        purpose=purpose,
        display_name=display_name,
        attributes=attributes,
    )
