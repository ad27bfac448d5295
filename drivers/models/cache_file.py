"""One JSON object in a file of the model cache, read leniently and written atomically.

The engine probe (``engine-probe.json``) and the build pin (``recognizer-build.json``) are
both small maps that a device must be able to lose: an unreadable file reads as empty (the
caller measures again), and a write goes to a temporary file in the same folder first, so a
power cut never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``{}`` when absent, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_object(path: Path, data: dict[str, Any], place: Callable[[str], None] | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path``, then ``place(tmp)`` it.

    ``place`` defaults to ``os.replace(tmp, path)``; a caller that must not overwrite
    another writer's file passes its own (e.g. ``os.link`` for create-if-absent). The
    temporary file is always removed. Raises OSError (the caller logs and carries on).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        (place or (lambda t: os.replace(t, path)))(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
