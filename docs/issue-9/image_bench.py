"""Part 4's image module against the code it replaced (0cfda3e), per call; prints the numbers.

    .venv/bin/python docs/issue-9/image_bench.py

The old ``handlers/recognition/image.py`` is read from git history into a
temporary module, so both run in the same process on the same inputs.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
from facegate.handlers.recognition import image as new_image
from facegate.runtime.machine import cpu_model

BASE = "0cfda3e"


def old_module() -> ModuleType:
    src = subprocess.run(  # noqa: S603  # fixed argv: git reading this repository's own history
        ["git", "show", f"{BASE}:handlers/recognition/image.py"],  # noqa: S607  # git from PATH, a dev tool
        check=True, capture_output=True, text=True,
    ).stdout
    src = src.replace("from .errors import", "from facegate.handlers.recognition.errors import")
    src = src.replace("from .reasons import", "from facegate.handlers.recognition.reasons import")
    path = Path(tempfile.mkdtemp()) / "old_image.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_image", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_us(call: Callable[[], object], n: int) -> float:
    return min(timeit.repeat(call, number=n, repeat=5)) / n * 1e6


def main() -> None:
    old = old_module()
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    frame.setflags(write=False)
    ok, jpg = cv2.imencode(".jpg", frame)
    assert ok
    data = jpg.tobytes()
    print(f"CPU: {cpu_model()}")
    for label, mod in (("before", old), ("after", new_image)):
        frame_us = best_us(lambda m=mod: m.to_bgr8(frame), 20000)
        decode_us = best_us(
            lambda m=mod: m.decode_image(data, max_bytes=20_000_000, max_pixels=40_000_000), 300
        )
        print(f"{label:6s} to_bgr8 640x480 BGR frame {frame_us:7.2f} us   "
              f"decode_image 640x480 JPEG {decode_us / 1000:6.2f} ms")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
