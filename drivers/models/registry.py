"""The model registry: which model files exist, their pins and their ids.

Every embedding records the id of the model that produced it
(``<name>@<sha256[:8]>``, e.g. ``sface-2021dec@fb143eea``). Two templates are
only ever compared when their model ids are equal; anything else needs
re-enrolment (see :func:`check_same_model`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from .cached import sha256_file
from .errors import ModelError, ModelHashMismatch

FILES = Path(__file__).parent / "files"


class ModelFamily(enum.StrEnum):
    """How a model's input is prepared and its output read."""

    YUNET = "yunet"
    """YuNet-format detector: BGR 0-255 NCHW, any multiple of 32, 12 stride heads."""
    SFACE = "sface"
    """SFace recogniser: 112x112 RGB 0-255 (normalisation inside the graph), 128-d."""
    ARCFACE = "arcface"
    """InsightFace ArcFace-style recogniser: 112x112 RGB, (x-127.5)/127.5, usually 512-d."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One pinned model file. ``sha256`` is the full hex digest of ``path``."""

    name: str
    family: ModelFamily
    path: Path
    sha256: str

    @property
    def model_id(self) -> str:
        """Stable id stored beside every template this model produces."""
        return f"{self.name}@{self.sha256[:8]}"



BUILTIN_DETECTOR = ModelSpec(
    name="yunet-2023mar",
    family=ModelFamily.YUNET,
    path=FILES / "face_detection_yunet_2023mar_int8bq.onnx",
    sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
)
BUILTIN_RECOGNIZER = ModelSpec(
    name="sface-2021dec",
    family=ModelFamily.SFACE,
    path=FILES / "face_recognition_sface_2021dec_int8bq.onnx",
    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
)


class TemplateModelMismatch(ModelError):
    """Templates from one model were about to be compared with another model's output."""

    def __init__(self, stored: str, current: str) -> None:
        super().__init__(
            f"templates were made by model {stored} but the device runs {current}: "
            "embeddings of different models are never compared; re-enrolment is required"
        )
        self.stored = stored
        self.current = current


def check_same_model(stored: str, current: str) -> None:
    """Raise :class:`TemplateModelMismatch` unless the two model ids are equal."""
    if stored != current:
        raise TemplateModelMismatch(stored, current)


def verify_pin(spec: ModelSpec) -> None:
    """Hash ``spec.path`` and compare with the pin. Raises ModelHashMismatch/ModelFileMissing.

    Blocking (reads the whole file): call it off the event loop.
    """
    actual = sha256_file(spec.path)
    if actual != spec.sha256.lower():
        raise ModelHashMismatch(str(spec.path), spec.sha256.lower(), actual)
