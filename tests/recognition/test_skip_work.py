"""Work that cannot change a decision is skipped: decided tracks and unchanged frames.

The real service on real photos (ManualClock, frames 100 ms apart as in
test_service.py); the work counters are the pipeline's embeddings and the
service's skip counters, and each test compares the decisions with the same
frames analysed in full.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from facegate.drivers.models import LoadedModels
from facegate.runtime.events import AccessDecision, Decision

from .conftest import Rig, face_bgr, jittered, place_in_frame, service_rig


async def _rig(models: LoadedModels, **kw: float) -> AsyncIterator[Rig]:
    async for r in service_rig(models, **kw):
        yield r


def _live(models: LoadedModels) -> Iterator[np.ndarray]:
    return jittered(place_in_frame(face_bgr("obama3.jpg"), models), 5)


def _frozen(models: LoadedModels) -> Iterator[np.ndarray]:
    frame = place_in_frame(face_bgr("obama3.jpg"), models)
    while True:
        yield frame.copy()


def _summary(ds: list[AccessDecision]) -> list[tuple[Decision, str, str | None, int]]:
    return [(d.decision, d.reason, d.subject_id, d.frames) for d in ds]


@pytest.mark.asyncio
async def test_a_decided_track_is_not_embedded_again_until_its_cooldown_ends(
    models: LoadedModels,
) -> None:
    async for rig in _rig(models):
        pipe, svc = rig.engine.pipeline, rig.service
        k = rig.engine.cfg.decision.fast_k  # strong evidence: the adaptive rule's 2 frames
        first = await rig.show(_live(models), 3)
        assert _summary(first) == [(Decision.GRANTED, "match", "S-001", k)]
        assert pipe.embedded == k and svc.frames_skipped_decided == 3 - k
        assert svc.frames_unchanged == 0  # a live face is never taken for an unchanged frame
        during = await rig.show(_live(models), 10)  # 1 s, inside the 2 s cool-down
        assert during == [] and pipe.embedded == k and svc.frames_skipped_decided == 13 - k
        after = await rig.show(_live(models), 14)  # the cool-down ends: decided again, in full
        assert _summary(after) == [(Decision.GRANTED, "match", "S-001", k)]
        assert pipe.embedded > k


@pytest.mark.asyncio
async def test_unchanged_frames_reuse_the_analysis_and_decide_the_same(
    models: LoadedModels,
) -> None:
    results = {}
    for threshold in (0.0, 0.15):  # 0 = every frame analysed in full
        async for rig in _rig(models, unchanged_threshold=threshold):
            got = await rig.show(_frozen(models), 4)
            blank = await rig.show(iter([np.full((480, 640, 3), 90, np.uint8)] * 4), 4)
            results[threshold] = (_summary(got), _summary(blank), rig.engine.pipeline.embedded,
                                  rig.service.frames_unchanged)
    full, skipping = results[0.0], results[0.15]
    # A frozen face scores strongly, so the adaptive rule decides on fast_k = 2 frames: the
    # stillness check over those 2 denies it.
    assert full[0] == skipping[0] == [(Decision.DENIED, "liveness_still", None, 2)]
    assert full[1] == skipping[1]
    assert (full[2], full[3]) == (2, 0)
    # one frozen frame embedded, the next one (before the decision) reused; blank frames: 3 of 4
    assert skipping[2] == 1 and skipping[3] >= 1 + 3
