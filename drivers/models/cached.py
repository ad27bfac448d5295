"""Model cache names and the warm-start path, without importing the ``onnx`` package.

``import onnx`` costs ~27 MB of RSS (issue 16). A device with a warm model cache
only needs the cache file names and the source hash, so those live here, and
``loader.py`` imports the converters (``convert.py``, ``optimize.py``, which import
onnx) only on a cache miss. ``convert.py`` re-exports these names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import ModelFileMissing

CONVERTER_VERSION = "1"
"""Bumped when the conversion changes, so old cache files are not reused."""
OPTIMIZER_VERSION = "1"
"""Bumped when the exact rewrites of ``optimize.py`` change (names the cache file)."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks. Raises ModelFileMissing."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise ModelFileMissing(f"cannot read model file {path}: {exc.strerror}") from None
    return h.hexdigest()


def converted_path(source: Path, source_hash: str, cache_dir: Path) -> Path:
    """Where the converted copy of ``source`` lives in ``cache_dir``."""
    return cache_dir / f"{source.stem}-{source_hash[:16]}-v{CONVERTER_VERSION}-fp32.onnx"


def optimized_path(plain: Path) -> Path:
    """Where the optimised copy of the plain fold ``plain`` lives (same cache, same key)."""
    return plain.with_name(f"{plain.stem}-opt{OPTIMIZER_VERSION}.onnx")
