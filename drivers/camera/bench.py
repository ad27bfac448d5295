"""Camera driver benchmark: ``python -m facegate.drivers.camera.bench [--seconds S] [--fps F]``.

Prints (never asserts) numbers for the real OpenCV path on a synthetic
640x480 MJPG clip written with ``cv2.VideoWriter``:

* published frame rate against the requested fps (the file is paced);
* hand-off latency: capture-thread timestamp -> subscriber receives the event;
* frames dropped by the latest-wins slot (non-zero only when the loop lags);
* per-frame cost of the helpers SimulatedCamera uses (jitter warp, letterbox).

Numbers on a shared 2-core machine are noisy; compare runs on a quiet box.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ...runtime.bus import EventBus
from ...runtime.clock import SystemClock
from ...runtime.config.hardware import CameraSection
from ...runtime.events import FrameCaptured
from ...runtime.logs import configure_logging
from .frames import letterbox
from .jitter import Jitter, apply_pose
from .opencv import OpenCVCamera


def _synthetic_clip(path: Path, frames: int = 60) -> Path:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    # camera-like content (JPEG size ~ real footage), not incompressible noise
    base = np.asarray(cv2.GaussianBlur(base, (0, 0), 6), np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (640, 480))
    for i in range(frames):
        writer.write(np.roll(base, i * 4, axis=1))
    writer.release()
    return path


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _capture_bench(clip: Path, seconds: float, fps: float) -> dict[str, float]:
    section = CameraSection(driver="opencv", source=str(clip), fps=fps, width=640, height=480)
    bus = EventBus()
    clock = SystemClock()
    cam = OpenCVCamera(section, bus, clock)
    latencies: list[float] = []
    async with bus.subscribe(FrameCaptured, name="bench", maxsize=1) as sub, cam:
        await sub.get()  # first frame: the file is open
        start = time.monotonic()
        first_published = cam.stats().published
        while time.monotonic() - start < seconds:
            ev = await sub.get()
            latencies.append((clock.monotonic() - ev.monotonic) * 1000)
        elapsed = time.monotonic() - start
        stats = cam.stats()
    return {
        "requested_fps": fps,
        "published_fps": (stats.published - first_published) / elapsed,
        "handoff_ms_p50": _pct(latencies, 0.5),
        "handoff_ms_p99": _pct(latencies, 0.99),
        "dropped": float(stats.dropped),
    }


def _helper_bench(repeats: int = 200) -> dict[str, float]:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    photo = rng.integers(0, 255, (1137, 910, 3), dtype=np.uint8)
    jitter = Jitter(random.Random(1))
    warp, box = [], []
    for _ in range(repeats):
        pose = jitter.next_pose()
        t = time.perf_counter()
        apply_pose(frame, pose)
        warp.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        letterbox(photo, 640, 480)
        box.append((time.perf_counter() - t) * 1000)
    return {
        "jitter_warp_ms_p50": statistics.median(warp),
        "letterbox_910x1137_ms_p50": statistics.median(box),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measurement time (default 4)")
    parser.add_argument("--fps", type=float, default=60.0, help="requested fps of the file (default 60)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        clip = _synthetic_clip(Path(tmp) / "bench.avi")
        results = asyncio.run(_capture_bench(clip, args.seconds, args.fps))
    results.update(_helper_bench())
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in results.items()}))
    else:
        for key, value in results.items():
            print(f"{key:28s} {value:10.3f}")
    return 0


if __name__ == "__main__":
    configure_logging(device_id="bench", level="warning", stream=sys.stderr)  # stdout is for numbers
    raise SystemExit(main())
