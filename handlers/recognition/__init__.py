"""The recognition pipeline: frames in, explainable identity decisions out.

Public surface:

- :class:`RecognitionEngine` (``await RecognitionEngine.create(cfg, bus=, clock=)``):
  models + :class:`Matcher` + pipeline; ``await engine.embed_image(data)`` ->
  :class:`ImageEmbedding` for enrolment (raises :class:`ImageRejected`).
- :class:`RecognitionService`: the supervised service publishing ``AccessDecision``.
- :class:`Matcher`: the 1:N gallery (``add``, ``add_batch``, ``remove_subject``,
  ``search``).
- :class:`Reason`: the stable reason codes.
- Errors: :class:`RecognitionError`, :class:`ImageRejected`, :class:`GalleryError`,
  :class:`TemplateModelMismatch`, :class:`CalibrationError`.
"""

from .engine import RecognitionEngine
from .enrol import ImageEmbedding
from .errors import GalleryError, ImageRejected, RecognitionError, TemplateModelMismatch
from .matcher import Match, Matcher, SearchResult
from .reasons import Reason
from .service import RecognitionService
from .thresholds import CalibrationError, CalibrationTable, ThresholdPolicy

__all__ = [
    "CalibrationError",
    "CalibrationTable",
    "GalleryError",
    "ImageEmbedding",
    "ImageRejected",
    "Match",
    "Matcher",
    "Reason",
    "RecognitionEngine",
    "RecognitionError",
    "RecognitionService",
    "SearchResult",
    "TemplateModelMismatch",
    "ThresholdPolicy",
]
