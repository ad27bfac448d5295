"""ONNX face models in one place: pinned files, conversion cache, tuned sessions.

Public surface: :func:`load_models` / :func:`load_models_async` with
:class:`ModelOptions`, returning :class:`LoadedModels` (a :class:`FaceDetector`
and a :class:`FaceEmbedder`); :class:`ModelSpec` / :class:`ModelFamily` for
user-supplied models; :func:`check_same_model`; the error tree rooted at
:class:`ModelError`. The built-in SFace runs the int8 recipe of
``quantize.py`` by default (own model id, ``...:int8r1-<hash>``), or with
``ModelOptions(recognizer_precision="fp32")`` the exact fp32 rewrite of the
fold (``optimize.py``); user recognisers always run that fp32 rewrite.
"""

import os

# onnxruntime reads this at import: no usage telemetry from a device (set before any import).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .detector import Detection, FaceDetector
from .embedder import FaceEmbedder
from .errors import (
    InferenceError,
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
