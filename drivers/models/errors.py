"""Typed errors of the model layer (``facegate.drivers.models``)."""

from __future__ import annotations

from ...runtime.errors import FacegateError


class ModelError(FacegateError):
    """Base of every model-loading or inference failure."""


class ModelFileMissing(ModelError):
    """The configured model file does not exist or cannot be read."""


class ModelHashMismatch(ModelError):
    """A model file's sha256 differs from its pin: the file is refused, never loaded.

    ``expected`` and ``actual`` are hex digests; ``path`` is the refused file.
    """

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(
            f"model file {path} has sha256 {actual[:16]}..., expected {expected[:16]}...: "
            "refusing to load it (replace it with the pinned file or update the pin in config)"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


class ModelFormatError(ModelError):
    """The file is not an ONNX graph of the expected kind (inputs, outputs, shapes)."""


class ModelCacheError(ModelError):
    """The model cache folder cannot be created or written (``recognition.models.cache_dir``)."""


class InferenceError(ModelError):
    """onnxruntime failed while running a loaded model."""
