"""RecognitionService end to end on real photos: granted, unknown, frozen replay, IR, deadline.

Frames are built from the committed sample photos: a "live" face is the photo
moved by a pixel or two and a fraction of a degree per frame; a frozen replay
is the identical frame repeated. Time is a ManualClock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import cv2
import numpy as np
import pytest
import pytest_asyncio
from facegate.drivers.models import LoadedModels
from facegate.handlers.recognition.pipeline import FrameFaces
from facegate.runtime.config.recognition import DecisionSettings, RecognitionSection
from facegate.runtime.events import Decision
from facegate.runtime.logs import configure_logging

from .conftest import (
    WAIT_S,
    Rig,
    face_bgr,
    face_bytes,
    frame_event,
    jittered,
    place_in_frame,
    service_rig,
    until,
)


async def _rig(models: LoadedModels, cfg: RecognitionSection) -> AsyncIterator[Rig]:
    _MODELS[:] = [models]
    async for r in service_rig(models, cfg):
        yield r


_MODELS: list[LoadedModels] = []


@pytest_asyncio.fixture
async def rig(models: LoadedModels) -> AsyncIterator[Rig]:
    async for r in _rig(models, RecognitionSection()):
        yield r


def live(photo: str, seed: int = 0) -> Iterator[np.ndarray]:
    return jittered(place_in_frame(face_bgr(photo), _MODELS[0]), seed)


def frozen(photo: str) -> Iterator[np.ndarray]:
    frame = place_in_frame(face_bgr(photo), _MODELS[0])
    while True:
        yield frame


@pytest.mark.asyncio
async def test_enrolled_face_is_granted(rig: Rig) -> None:
    got = await rig.show(live("obama3.jpg"), 4)  # another photo of the enrolled person
    assert [d.decision for d in got] == [Decision.GRANTED]
    d = got[0]
    assert d.subject_id == "S-001" and d.reason == "match"
    assert d.score is not None and d.score >= d.threshold
    assert d.runner_up is not None and d.margin == pytest.approx(d.score - d.runner_up, abs=1e-3)
    # Strong evidence: the adaptive rule's fast_k (2 by default) frames, not k = 3.
    assert d.frames == rig.engine.cfg.decision.fast_k == 2
    assert d.gallery_size == 4 and d.model_id == rig.engine.model_id
    assert {r.name for r in d.quality} >= {"size", "sharpness", "yaw", "pitch", "brightness"}
    assert any(r.name == "stillness" and r.passed for r in d.liveness)
    assert {k for k, _ in d.latency_ms} >= {"detect", "quality", "align", "embed", "search"}


@pytest.mark.asyncio
async def test_face_not_enrolled_is_unknown(rig: Rig) -> None:
    got = await rig.show(live("biden.jpg"), 4)
    assert [d.decision for d in got] == [Decision.UNKNOWN]
    assert got[0].subject_id is None and got[0].reason == "no_match"
    assert got[0].score is not None and got[0].score < got[0].threshold


@pytest.mark.asyncio
async def test_frozen_replay_of_an_enrolled_face_is_denied(rig: Rig) -> None:
    got = await rig.show(frozen("obama3.jpg"), 4)
    assert [d.decision for d in got] == [Decision.DENIED]
    assert got[0].reason == "liveness_still" and got[0].subject_id is None
    assert any(r.name == "stillness" and not r.passed for r in got[0].liveness)


@pytest.mark.asyncio
async def test_ir_frame_without_a_face_is_denied(rig: Rig) -> None:
    blank = np.zeros((480, 640), np.uint8)
    got = await rig.show(live("obama3.jpg", 1), 4, ir=lambda f: blank)
    assert [d.decision for d in got] == [Decision.DENIED]
    assert got[0].reason == "liveness_ir_missing"
    rig.clock.set_wall(rig.clock.wall())
    await rig.clock.advance(5.0)  # face gone, cooldown over
    rig.drain()
    got = await rig.show(live("obama3.jpg", 2), 4,
                         ir=lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
    assert [d.decision for d in got] == [Decision.GRANTED]
    assert any(r.name == "ir_presence" and r.passed for r in got[0].liveness)


@pytest.mark.asyncio
async def test_face_that_never_passes_quality_is_undecided_at_the_deadline(rig: Rig) -> None:
    blurred = (cv2.GaussianBlur(f, (0, 0), 6) for f in live("obama3.jpg"))
    got = await rig.show(blurred, 35)  # 3.5 s > deadline_s = 3
    assert [d.decision for d in got] == [Decision.UNDECIDED]
    assert got[0].reason == "quality_blur" and got[0].subject_id is None
    assert got[0].decision_ms >= 3000


@pytest.mark.asyncio
async def test_removed_subject_is_no_longer_granted(rig: Rig) -> None:
    assert rig.engine.matcher.remove_subject("S-001") == 1
    got = await rig.show(live("obama3.jpg"), 4)
    assert [d.decision for d in got] == [Decision.UNKNOWN]


@pytest.mark.asyncio
async def test_frames_are_latest_wins(rig: Rig) -> None:
    frames = live("obama3.jpg")
    for i in range(10):  # no await in between: the service cannot keep up
        rig.bus.publish(frame_event(next(frames), i, rig.clock.monotonic(), rig.clock.wall()))
    await until(lambda: rig.service.frames_analysed >= 1
                and rig.bus.snapshot()["recognition.frames"]["depth"] == 0)
    await asyncio.sleep(0.05)  # room for a (wrong) extra analysis to show up
    assert rig.service.frames_analysed <= 2
    assert rig.bus.snapshot()["recognition.frames"]["dropped"] >= 8


@pytest.mark.asyncio
async def test_decisions_and_logs_carry_no_biometric_data(models: LoadedModels) -> None:
    stream = io.StringIO()
    configure_logging(device_id="t", fmt="json", stream=stream)
    async for rig in _rig(models, RecognitionSection(
            decision=DecisionSettings(k=2, unknown_k=2))):
        got = await rig.show(live("obama3.jpg"), 3) + await rig.show(live("biden.jpg", 5), 25)
    assert {d.decision for d in got} >= {Decision.GRANTED, Decision.UNKNOWN}
    probe = rig.engine.embed_image_sync(face_bytes("obama3.jpg")).embedding
    for d in got:
        for f in dataclasses.fields(d):
            v = getattr(d, f.name)
            assert not isinstance(v, np.ndarray | bytes), f.name
            flat = json.dumps(dataclasses.asdict(d), default=str)
            assert len(flat) < 4000
        assert f"{probe[0]:.4f}" not in repr(d)
    text = stream.getvalue()
    assert "recognition.decision" in text
    for line in text.splitlines():
        rec = json.loads(line)
        numbers = [v for v in rec.values() if isinstance(v, list)]
        assert all(len(v) <= 16 for v in numbers), line
    for word in ("obama", "biden", "Dad", "Mom"):
        assert word not in text
    assert f"{probe[0]:.4f}" not in text and f"{probe[1]:.4f}" not in text


@pytest.mark.asyncio
async def test_subject_removed_while_its_frame_is_in_flight_is_not_granted(rig: Rig) -> None:
    """remove_subject returning means no later grant, even from a search that ran before it.

    The frame's search ran in the worker thread before the removal; its analysis
    (and the earlier vote) reached the decision engine after remove_subject returned.
    """
    frames = live("obama3.jpg")
    assert await rig.show(frames, 1) == []  # one vote for S-001, fast_k = 2 not reached yet
    real = rig.engine.pipeline.analyse_all
    searched, release = threading.Event(), threading.Event()

    def held(image: np.ndarray, ir: np.ndarray | None = None, **kw: Any) -> FrameFaces:
        out = real(image, ir, **kw)
        searched.set()  # the matcher was searched while S-001 was still enrolled
        release.wait(WAIT_S)
        return out

    rig.engine.pipeline.analyse_all = held  # type: ignore[method-assign]  # hold one frame in flight
    before = rig.service.frames_analysed
    rig.seq += 1
    rig.bus.publish(frame_event(next(frames), rig.seq, rig.clock.monotonic(), rig.clock.wall()))
    assert await asyncio.to_thread(searched.wait, WAIT_S)
    assert rig.engine.matcher.remove_subject("S-001") == 1  # erasure: unmatchable on return
    release.set()
    await until(lambda: rig.service.frames_analysed > before)
    got = rig.drain()
    assert not [d for d in got if d.decision is Decision.GRANTED], got
