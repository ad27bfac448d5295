"""Shared fixtures of the recognition tests: real models, real face photos, real frames."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import structlog
from facegate.drivers.models import BUILTIN_RECOGNIZER, LoadedModels, ModelOptions, load_models
from facegate.drivers.models.precision import BuildPin, PrecisionChoice
from facegate.handlers.recognition import RecognitionEngine, RecognitionService
from facegate.runtime.bus import EventBus, Subscription
from facegate.runtime.clock import ManualClock
from facegate.runtime.config.recognition import RecognitionSection
from facegate.runtime.events import AccessDecision, FrameCaptured

FACES = Path(__file__).resolve().parents[1] / "data" / "faces"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """CLI commands and the privacy test configure structlog; undo it after each test."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's model cache, with the fp32 build pinned for ``auto``.

    Without the pin, a CLI test run with ``auto`` would take the build a timing probe picks,
    or (once any test has built the int8 file here) the "cache from an earlier start" rule's
    int8: the build would depend on test order and load (test_precision.py covers the rule).
    """
    cache = tmp_path_factory.mktemp("model-cache")
    # CLI tests set XDG_CACHE_HOME to the parent: their default cache is <parent>/facegate/models.
    for folder in (cache, cache.parent / "facegate" / "models"):
        BuildPin(folder).put(BUILTIN_RECOGNIZER.model_id, PrecisionChoice("fp32", "config"))
    return cache


@pytest.fixture(scope="session")
def models(model_cache: Path) -> LoadedModels:
    """The built-in pinned YuNet + SFace with the fp32 SFace: what ``auto`` picks on the
    development CPUs idle (docs/performance.md). Not ``auto`` itself: its first start is a
    timing probe, and tests must not depend on a timing (test_precision.py covers it)."""
    return load_models(ModelOptions(cache_dir=model_cache, recognizer_precision="fp32"))


@pytest.fixture(scope="session")
def fp32_models(model_cache: Path) -> LoadedModels:
    """The same models with the exact fp32 recogniser (``recognizer_precision = "fp32"``)."""
    return load_models(ModelOptions(cache_dir=model_cache, recognizer_precision="fp32"))


def face_bytes(name: str) -> bytes:
    return (FACES / name).read_bytes()


def face_bgr(name: str) -> np.ndarray:
    img = cv2.imread(str(FACES / name))
    assert img is not None, name
    return img


def place_in_frame(photo: np.ndarray, models: LoadedModels, *, face_px: int = 170) -> np.ndarray:
    """A 640x480 frame of ``photo`` scaled so its face is ``face_px`` high, face centred."""
    det = max(models.detector.detect(photo), key=lambda d: d.area)
    s = face_px / det.box[3]
    big = cv2.resize(photo, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    cx, cy = (det.center[0] * s, det.center[1] * s)
    pad = 640
    canvas = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    x0, y0 = round(cx + pad - 320), round(cy + pad - 240)
    return np.ascontiguousarray(canvas[y0 : y0 + 480, x0 : x0 + 640])


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


# ---- the recognition service on a bus, for end-to-end tests ------------------------------

# A condition that normally holds within milliseconds; generous for a loaded CI machine.
WAIT_S = 60.0


async def until(condition: Callable[[], bool], within: float = WAIT_S) -> None:
    """Wait (polling) until ``condition()`` holds; fail after ``within`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {within} s")
        await asyncio.sleep(0.005)


ENROL = {"S-001": "obama.jpg", "S-002": "Family1-Dad1.jpg", "S-003": "Family1-Mom1.jpg",
         "S-004": "Family2-Lady1.jpg"}


@dataclass
class Rig:
    engine: RecognitionEngine
    service: RecognitionService
    bus: EventBus
    clock: ManualClock
    decisions: Subscription[AccessDecision]
    seq: int = 0

    async def show(self, frames: Iterator[np.ndarray], n: int, *,
                   ir: Callable[[np.ndarray], np.ndarray | None] = lambda f: None,
                   dt: float = 0.1) -> list[AccessDecision]:
        """Publish n frames one at a time (waiting for each), 100 ms apart."""
        for _ in range(n):
            img = next(frames)
            want = self.service.frames_analysed + 1
            self.seq += 1
            self.bus.publish(frame_event(img, self.seq, self.clock.monotonic(),
                                         self.clock.wall(), ir=ir(img)))
            await self.analysed(want)
            await self.clock.advance(dt)
        return self.drain()

    async def analysed(self, n: int) -> None:
        """Wait until the service (its worker thread) has analysed ``n`` frames in all."""
        await until(lambda: self.service.frames_analysed >= n)

    def drain(self) -> list[AccessDecision]:
        out = []
        while (d := self.decisions.get_nowait()) is not None:
            out.append(d)
        return out


async def enrolled_engine(models: LoadedModels, cfg: RecognitionSection) -> RecognitionEngine:
    """An engine whose matcher holds one template of each ENROL photo."""
    engine = RecognitionEngine(cfg, models)
    for sid, photo in ENROL.items():
        emb = await engine.embed_image(face_bytes(photo))
        engine.matcher.add(sid, f"{sid}-t1", emb.embedding, emb.model_id)
    return engine


async def service_rig(
    models: LoadedModels, cfg: RecognitionSection | None = None, **service_kw: Any
) -> AsyncIterator[Rig]:
    """Yields once: a running RecognitionService (ManualClock) over ``enrolled_engine``.

    ``service_kw`` go to RecognitionService. The service task is cancelled on exit
    and must end cancelled (not with an error of its own).
    """
    engine = await enrolled_engine(models, cfg or RecognitionSection())
    bus, clock = EventBus(), ManualClock()
    service = RecognitionService(engine, bus, clock, **service_kw)
    async with bus.subscribe(AccessDecision, name="test") as decisions:
        task = asyncio.create_task(service.run(), name="recognition")
        await asyncio.wait_for(service.wait_ready(), WAIT_S)
        try:
            yield Rig(engine, service, bus, clock, decisions)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
