"""The adaptive decision rule on real frames: fewer frames on strong evidence, more on weak.

Analyses come from the real pipeline on jittered frames of a committed photo
(the enrolled subject's own face: score ~0.9, margin large); the decision
engine is fed them 1/30 s apart on explicit monotonic times, as the service
feeds it the camera's timestamps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from pathlib import Path

import pytest
from facegate.drivers.models import LoadedModels
from facegate.handlers.recognition import RecognitionEngine
from facegate.handlers.recognition.decision import DecisionEngine
from facegate.handlers.recognition.liveness import StillnessCheck
from facegate.handlers.recognition.pipeline import FrameAnalysis
from facegate.runtime.config._convert import ConversionError, build_section
from facegate.runtime.config.recognition import DecisionSettings, RecognitionSection
from facegate.runtime.events import AccessDecision, Decision

from .conftest import face_bgr, face_bytes, jittered, place_in_frame

DT = 1 / 30
Rig = tuple[RecognitionEngine, list[FrameAnalysis], FrameAnalysis]
FAST = DecisionSettings(fast_k=2, fast_score=0.55, fast_margin=0.15)


@pytest.fixture(scope="module")
def rig(models: LoadedModels) -> Rig:
    engine = RecognitionEngine(RecognitionSection(), models)
    for sid, photo in {"S-001": "obama.jpg", "S-002": "Family1-Dad1.jpg"}.items():
        e = asyncio.run(engine.embed_image(face_bytes(photo)))
        engine.matcher.add(sid, f"{sid}-t1", e.embedding, e.model_id)
    frame = place_in_frame(face_bgr("obama.jpg"), models)
    live = [engine.pipeline.analyse(f) for f in itertools.islice(jittered(frame, 3), 5)]
    assert all(a.usable and a.search and a.search.best for a in live)
    assert all(a.search.best.subject_id == "S-001" for a in live if a.search and a.search.best)
    still = engine.pipeline.analyse(frame)
    return engine, live, still


def _feed(engine: RecognitionEngine, s: DecisionSettings,
          frames: list[FrameAnalysis]) -> list[tuple[int, AccessDecision]]:
    dec = DecisionEngine(s, engine.thresholds, StillnessCheck(), model_id=engine.model_id)
    out: list[tuple[int, AccessDecision]] = []
    for i, a in enumerate(frames):
        out += [(i + 1, d) for d in dec.observe(a, 100.0 + i * DT, 1e9 + i * DT)]
    return out


def test_strong_evidence_grants_on_fast_k_frames(rig: Rig) -> None:
    engine, live, _ = rig
    fixed = _feed(engine, DecisionSettings(fast_k=0), live[:3])
    assert [(n, d.decision, d.frames) for n, d in fixed] == [(3, Decision.GRANTED, 3)]
    assert fixed[0][1].decision_ms == pytest.approx(2 * DT * 1e3, abs=0.2)
    fast = _feed(engine, FAST, live[:3])
    assert [(n, d.decision, d.frames) for n, d in fast] == [(2, Decision.GRANTED, 2)]
    assert fast[0][1].subject_id == "S-001"
    assert fast[0][1].decision_ms == pytest.approx(DT * 1e3, abs=0.2)


def test_fast_path_needs_the_score_and_margin(rig: Rig) -> None:
    engine, live, _ = rig
    best = min(a.search.best.score for a in live if a.search and a.search.best)
    slow = _feed(engine, dataclasses.replace(FAST, fast_score=min(1.0, best + 0.01)), live[:3])
    assert [(n, d.frames) for n, d in slow] == [(3, 3)]
    slow = _feed(engine, dataclasses.replace(FAST, fast_margin=1.0), live[:3])
    assert [(n, d.frames) for n, d in slow] == [(3, 3)]


def test_weak_evidence_needs_weak_k_frames(rig: Rig) -> None:
    engine, live, _ = rig
    weak = dataclasses.replace(FAST, fast_k=0, weak_k=5, weak_band=1.0)
    out = _feed(engine, weak, live[:5])
    assert [(n, d.decision, d.frames) for n, d in out] == [(5, Decision.GRANTED, 5)]
    weak = dataclasses.replace(FAST, fast_k=0, weak_k=5, weak_margin=1.0)
    assert [n for n, _ in _feed(engine, weak, live[:5])] == [5]


def test_fast_path_keeps_the_stillness_check(rig: Rig) -> None:
    engine, _, still = rig
    out = _feed(engine, FAST, [still, still])
    assert [(n, d.decision, d.reason) for n, d in out] == [(2, Decision.DENIED, "liveness_still")]


def test_fast_k_of_one_is_refused() -> None:
    with pytest.raises(ConversionError, match="fast_k"):
        build_section(RecognitionSection, {"decision": {"fast_k": 1}}, "recognition", Path("/"))
