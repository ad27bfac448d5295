"""Shared fixtures of the recognition tests: real models, real face photos, real frames."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from facegate.drivers.models import LoadedModels, ModelOptions, load_models
from facegate.runtime.events import FrameCaptured

FACES = Path(__file__).resolve().parents[1] / "data" / "faces"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def models(model_cache: Path) -> LoadedModels:
    """The built-in pinned YuNet + SFace, converted into a per-session cache."""
    return load_models(ModelOptions(cache_dir=model_cache))


def face_bytes(name: str) -> bytes:
    return (FACES / name).read_bytes()


def face_bgr(name: str) -> np.ndarray:
    img = cv2.imread(str(FACES / name))
    assert img is not None, name
    return img


def place_in_frame(photo: np.ndarray, *, face_h: int = 300) -> np.ndarray:
    """A 640x480 grey-background frame with ``photo`` scaled to ``face_h`` px high, centred."""
    h, w = photo.shape[:2]
    s = face_h / h
    small = cv2.resize(photo, (max(1, round(w * s)), face_h), interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 90, np.uint8)
    sh, sw = small.shape[:2]
    sw = min(sw, 600)
    y0, x0 = (480 - sh) // 2, (640 - sw) // 2
    frame[y0 : y0 + sh, x0 : x0 + sw] = small[:, :sw]
    return frame


def jittered(frame: np.ndarray, seed: int = 0) -> Iterator[np.ndarray]:
    """Endless slightly moving copies (sub-pixel shifts, tiny rotation) like a live person."""
    rng = np.random.default_rng(seed)
    h, w = frame.shape[:2]
    for _ in itertools.count():
        dx, dy = rng.uniform(-2.5, 2.5, 2)
        ang = rng.uniform(-1.0, 1.0)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, 1.0 + rng.uniform(-0.01, 0.01))
        m[:, 2] += (dx, dy)
        yield cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def frame_event(
    image: np.ndarray, seq: int, mono: float, wall: float, ir: np.ndarray | None = None
) -> FrameCaptured:
    return FrameCaptured(at=wall, image=image, seq=seq, source="test", monotonic=mono, ir=ir)
