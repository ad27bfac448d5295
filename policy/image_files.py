"""Resumable, idempotent enrolment from image files (``subjects enrol --image``, ``enroll --from``).

Consent first: no image of a person without consent is decoded. Then each
image is decoded, its keyed digest taken (:mod:`facegate.storage.image_sources`:
HMAC of the decoded pixels under the vault's image-digest key) and looked up:

* already enrolled *for this subject* (or the same image twice in one call):
  skipped and reported ``already_enrolled``: no second template, no embedding work;
* enrolled *for another subject*: refused (``image_enrols_another_subject``),
  one photo cannot enrol two people; the other subject is not named;
* new: embedded, and enrolled with its digest in the subject's one durable
  transaction (:meth:`Policy.enrol_many`), where storage checks again, so two
  runs racing each other still leave one template per image.

A bulk run killed at any point and run again therefore ends with exactly one
template per (subject, image). Outcomes name the caller's label (a file
name), never a digest or a display name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from ..runtime.errors import CodedError, FacegateError
from ..storage import image_sources
from ..storage.errors import ImageEnrolsAnotherSubjectError
from ..storage.image_digest import image_digester
from .collection import AttrValue
from .consent import ACCESS_CONTROL
from .core import EnrolItem, Policy
from .errors import ConsentInputError
from .images import EmbeddedImage

ALREADY_ENROLLED_TEXT = "already enrolled from this image"
ANOTHER_SUBJECT_TEXT = (
    "refused: this image already enrols another subject (one photo cannot enrol two people)"
)


class ImageStatus(StrEnum):
    ENROLLED = "enrolled"
    ALREADY_ENROLLED = "already_enrolled"
    ENROLS_ANOTHER_SUBJECT = "image_enrols_another_subject"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ImageOutcome:
    """What happened to one image. ``label`` is the caller's (a file name); ``reason`` a code."""

    label: str
    status: ImageStatus
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class ImageEnrolReport:
    subject_id: str
    template_ids: tuple[str, ...]
    outcomes: tuple[ImageOutcome, ...]
    created_subject: bool = False

    def count(self, status: ImageStatus) -> int:
        return sum(o.status is status for o in self.outcomes)

    @property
    def refused(self) -> tuple[ImageOutcome, ...]:
        """Images that failed or enrol another subject."""
        return tuple(
            o for o in self.outcomes if o.status in (ImageStatus.FAILED, ImageStatus.ENROLS_ANOTHER_SUBJECT)
        )


class ImageFileEmbedder(Protocol):
    """Decode, then embed (recognition's ``RecognitionEngine`` is one)."""

    async def decode_image(self, data: bytes) -> Any: ...

    async def embed_decoded(self, bgr: Any) -> EmbeddedImage: ...


def _reason(exc: FacegateError) -> str:
    code = getattr(exc, "reason_code", None) or (exc.code if isinstance(exc, CodedError) else None)
    return str(code or type(exc).__name__)


async def enrol_image_files(  # the enrolment's own options, all keyword-only
    policy: Policy,
    subject_id: str,
    images: Sequence[tuple[str, bytes]],
    embedder: ImageFileEmbedder,
    *,
    actor: str,
    purpose: str = ACCESS_CONTROL,
    display_name: str | None = None,
    attributes: Mapping[str, AttrValue] | None = None,
    all_or_nothing: bool = False,
    raise_failures: bool = False,
    on_image: Callable[[], None] | None = None,
) -> ImageEnrolReport:
    """Enrol ``subject_id`` from ``(label, bytes)`` images, skipping those it is enrolled from.

    ``all_or_nothing``: when any image fails or enrols another subject,
    nothing is enrolled (the report says why). Raises ConsentRequiredError
    before any image is decoded; storage/policy refusals of the write propagate.
    ``raise_failures``: an image the pipeline refuses raises its error (the
    MQTT photo verb maps it to a reply code) instead of becoming an outcome.
    """
    if not images:
        raise ConsentInputError("no image given")
    await policy.require_enrolment_consent(subject_id, purpose)
    digester = await image_digester(policy.store)
    outcomes: list[ImageOutcome | None] = []
    pending: list[tuple[int, bytes, EmbeddedImage]] = []
    seen: set[bytes] = set()
    for label, data in images:
        try:
            pixels = await embedder.decode_image(data)
            digest = await asyncio.to_thread(digester.of_pixels, pixels)
            owner = (await image_sources.owners(policy.store.db, [digest])).get(digest)
            if owner is not None and owner != subject_id:
                code = ImageEnrolsAnotherSubjectError.code
                outcomes.append(ImageOutcome(label, ImageStatus.ENROLS_ANOTHER_SUBJECT, code))
            elif owner == subject_id or digest in seen:
                outcomes.append(ImageOutcome(label, ImageStatus.ALREADY_ENROLLED, "already_enrolled"))
            else:
                embedded = await embedder.embed_decoded(pixels)
                pending.append((len(outcomes), digest, embedded))
                outcomes.append(None)
            seen.add(digest)
        except FacegateError as exc:  # an image the pipeline refuses: named, the rest go on
            if raise_failures:
                raise
            outcomes.append(ImageOutcome(label, ImageStatus.FAILED, _reason(exc), str(exc)))
        if on_image is not None:
            on_image()
    template_ids: tuple[str, ...] = ()
    created = False
    refused = any(o is not None and o.status is not ImageStatus.ALREADY_ENROLLED for o in outcomes)
    if pending and not (all_or_nothing and refused):
        template_ids, created = await _enrol(
            policy, subject_id, pending,
            actor=actor, purpose=purpose, display_name=display_name, attributes=attributes,
        )
    new = set(await _template_digests(policy, template_ids))
    for index, digest, _ in pending:
        label = images[index][0]
        if not template_ids and (all_or_nothing and refused):
            status, reason = ImageStatus.FAILED, "not_enrolled:another_image_failed"
        elif digest in new:
            status, reason = ImageStatus.ENROLLED, ""
        else:  # enrolled meanwhile by a concurrent run (storage's in-transaction check)
            status, reason = ImageStatus.ALREADY_ENROLLED, "already_enrolled"
        outcomes[index] = ImageOutcome(label, status, reason)
    return ImageEnrolReport(subject_id, template_ids, tuple(o for o in outcomes if o is not None), created)


async def _enrol(  # enrol_image_files' arguments, passed on
    policy: Policy,
    subject_id: str,
    pending: Sequence[tuple[int, bytes, EmbeddedImage]],
    *,
    actor: str,
    purpose: str,
    display_name: str | None,
    attributes: Mapping[str, AttrValue] | None,
) -> tuple[tuple[str, ...], bool]:
    models = {e.model_id for _, _, e in pending}
    if len(models) != 1:
        raise ConsentInputError("images were embedded by different models")
    vectors = np.stack([np.asarray(e.embedding, dtype=np.float32).reshape(-1) for _, _, e in pending])
    (res,) = await policy.enrol_many(
        [EnrolItem(subject_id, vectors, display_name, attributes, sources=[d for _, d, _ in pending])],
        models.pop(),
        actor=actor,
        purpose=purpose,
    )
    return res.template_ids, res.created_subject


async def _template_digests(policy: Policy, template_ids: Sequence[str]) -> list[bytes]:
    return await image_sources.digests_of(policy.store.db, template_ids)
