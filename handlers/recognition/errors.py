"""Typed errors of the recognition pipeline (``facegate.handlers.recognition``)."""

from __future__ import annotations

from ...drivers.models.registry import TemplateModelMismatch
from ...runtime.errors import FacegateError

__all__ = [
    "GalleryError",
    "ImageRejected",
    "RecognitionError",
    "TemplateModelMismatch",
]


class RecognitionError(FacegateError):
    """Base of the recognition pipeline's own errors."""


class ImageRejected(RecognitionError):
    """An image cannot be used (unreadable, too big, no usable face, failed quality).

    ``reason_code`` is a stable :class:`~facegate.handlers.recognition.reasons.Reason`
    value (e.g. ``image_corrupt``, ``no_face``, ``quality_blur``); ``message``
    is operator text without personal data.
    """

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


class GalleryError(RecognitionError):
    """A matcher operation was given inconsistent data (shapes, ids, non-finite values)."""
