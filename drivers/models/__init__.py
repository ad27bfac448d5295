"""ONNX face models in one place: pinned files, conversion cache, tuned sessions.

Public surface: :func:`load_models` / :func:`load_models_async` with
:class:`ModelOptions`, returning :class:`LoadedModels` (a :class:`FaceDetector`
and a :class:`FaceEmbedder`); :class:`ModelSpec` / :class:`ModelFamily` for
user-supplied models; :func:`check_same_model`; the error tree rooted at
:class:`ModelError`. The built-in SFace runs the exact fp32 function of the
fold (``optimize.py``, or the fold itself on OpenCV's dnn) or the int8 recipe of
``quantize.py`` (own model id, ``...:int8r1-<hash>``): ``auto`` by default,
measured at the first start and pinned per device (``precision.py``); user
recognisers always run fp32.
"""

# No telemetry switch here: facegate.drivers imports facegate.runtime first, which turns
# onnxruntime's telemetry off before any module of this package can import it (RULES R28).
from .detector import Detection, FaceDetector
from .embedder import FaceEmbedder
from .errors import (
    InferenceError,
    ModelCacheError,
    ModelError,
    ModelFileMissing,
    ModelFormatError,
    ModelHashMismatch,
)
from .loader import (
    LoadedModels,
    ModelOptions,
    default_cache_dir,
    load_models,
    load_models_async,
)
from .registry import (
    BUILTIN_DETECTOR,
    BUILTIN_RECOGNIZER,
    ModelFamily,
    ModelSpec,
    TemplateModelMismatch,
    check_same_model,
)

__all__ = [
    "BUILTIN_DETECTOR",
    "BUILTIN_RECOGNIZER",
    "Detection",
    "FaceDetector",
    "FaceEmbedder",
    "InferenceError",
    "LoadedModels",
    "ModelCacheError",
    "ModelError",
    "ModelFamily",
    "ModelFileMissing",
    "ModelFormatError",
    "ModelHashMismatch",
    "ModelOptions",
    "ModelSpec",
    "TemplateModelMismatch",
    "check_same_model",
    "default_cache_dir",
    "load_models",
    "load_models_async",
]
