"""Face recognisers (SFace, ArcFace-style) on onnxruntime.

Contract: :meth:`FaceEmbedder.embed` takes aligned 112x112 BGR uint8 crops
(see ``facegate.handlers.recognition.align``) and returns one L2-normalised
float32 row per crop. The family decides the preprocessing: SFace wants RGB
0-255 (it normalises inside the graph); ArcFace-style models want RGB scaled
by (x - 127.5) / 127.5.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from .errors import InferenceError, ModelFormatError
from .registry import ModelFamily, ModelSpec
from .spin import AdaptiveSpin

CROP = 112


class FaceEmbedder:
    """An embedding model with its id; thread-safe like its onnxruntime session."""

    def __init__(
        self, session: ort.InferenceSession | AdaptiveSpin, spec: ModelSpec, *, model_id: str | None = None
    ) -> None:
        """``model_id`` overrides ``spec.model_id`` for a derived build (e.g. the int8 recipe)."""
        if spec.family not in (ModelFamily.SFACE, ModelFamily.ARCFACE):
            raise ModelFormatError(f"{spec.name} is not a recogniser ({spec.family})")
        inp = session.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] != 3 or (isinstance(shape[2], int) and shape[2] != CROP):
            raise ModelFormatError(f"{spec.name}: expected NCHW 3x112x112 input, got {shape}")
        out = session.get_outputs()[0].shape
        dim = out[-1] if out and isinstance(out[-1], int) else None
        self._session = session
        self._input = inp.name
        self._batch_fixed = isinstance(shape[0], int) and shape[0] == 1
        self.spec = spec
        self.model_id = model_id or spec.model_id
        self.dim = int(dim) if dim else self._probe_dim()

    def _probe_dim(self) -> int:
        return int(self._run(np.zeros((1, CROP, CROP, 3), np.uint8)).shape[1])

    def _blob(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        rgb = crops[..., ::-1].astype(np.float32)
        if self.spec.family is ModelFamily.ARCFACE:
            rgb = (rgb - 127.5) / 127.5
        return np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))

    def _run(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        blob = self._blob(crops)
        try:
            if self._batch_fixed and blob.shape[0] != 1:
                rows = [self._session.run(None, {self._input: blob[i : i + 1]})[0]
                        for i in range(blob.shape[0])]
                out = np.concatenate(rows)
            else:
                out = self._session.run(None, {self._input: blob})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise InferenceError(f"recogniser failed: {exc}") from None
        return np.asarray(out, dtype=np.float32).reshape(blob.shape[0], -1)

    def embed(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Embeddings of ``crops`` (N x 112 x 112 x 3 BGR, or one 112x112x3), L2-normalised.

        Blocking: run off the event loop.
        """
        if crops.ndim == 3:
            crops = crops[None]
        if crops.shape[1:] != (CROP, CROP, 3):
            raise ValueError(f"aligned crops must be 112x112x3, got {crops.shape[1:]}")
        vec = self._run(crops)
        norm = np.linalg.norm(vec, axis=1, keepdims=True)
        return np.asarray(vec / np.maximum(norm, 1e-12), dtype=np.float32)
