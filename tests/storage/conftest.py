"""Fixtures for the storage tests: a real SQLite file pair in tmp_path and an env KEK."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ..fixtures.stores import KEK_ENV  # noqa: F401 -- re-exported for the storage tests


def raw(path: Path) -> bytes:
    """A file's bytes (sync helper so async tests do not call pathlib directly)."""
    return path.read_bytes()


def write_raw(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def embeddings(n: int, d: int = 128, seed: int = 0) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class RecordingSink:
    """A TemplateSink that keeps what it was given (a stand-in for the matcher's index)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], npt.NDArray[np.float32]] = {}
        self.models: set[str] = set()
        self.removed: list[str] = []

    def add_batch(
        self,
        subject_ids: Sequence[str],
        template_ids: Sequence[str],
        embeddings: npt.NDArray[np.float32],
        model_id: str,
    ) -> None:
        assert embeddings.shape[0] == len(subject_ids) == len(template_ids)
        self.models.add(model_id)
        for s, t, e in zip(subject_ids, template_ids, embeddings, strict=True):
            self.rows[(s, t)] = e

    def add(
        self, subject_id: str, template_id: str, embedding: npt.NDArray[np.float32], model_id: str
    ) -> None:
        self.add_batch([subject_id], [template_id], embedding.reshape(1, -1), model_id)

    def remove_subject(self, subject_id: str) -> int:
        self.removed.append(subject_id)
        gone = [k for k in self.rows if k[0] == subject_id]
        for k in gone:
            del self.rows[k]
        return len(gone)

    def subjects(self) -> set[str]:
        return {s for s, _ in self.rows}






@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "gallery.db"





