"""The device-path stream bench (issue 16 round 3): what it measures is what the device does.

Numbers are printed by ``facegate bench``, never asserted. This test proves the
stream plays approaches through the real service frame step and DecisionEngine:
an enrolled face is granted (the right subject), a stranger is unknown, decided
tracks stop being embedded, and every figure carries its label.
"""

from __future__ import annotations

import pytest
from facegate.drivers.models import LoadedModels
from facegate.handlers.recognition.stream_bench import WHAT, bench_stream, pipeline_target


@pytest.mark.timeout(600)
def test_stream_bench_runs_the_device_path(models: LoadedModels) -> None:
    r = bench_stream(models, stay=8, gap=31, approaches=2, warmup=2)
    assert r["frames"] == 31 + 2 * (8 + 31) and r["face_frames"] == 16
    got = [(d["approach"], d["decision"]) for d in r["decisions"]]
    assert got == [(0, "granted"), (1, "unknown")], got
    assert r["decisions"][0]["subject_is_expected"] is True
    assert r["decisions"][1]["subject_is_expected"] is None  # an unknown face names nobody
    # Work that cannot change a decision is skipped: the grant takes fast_k = 2 frames (strong
    # evidence), the stranger unknown_k = 3; the rest of each stay stops after detection.
    assert [d["frames"] for d in r["decisions"]] == [2, 3]
    assert r["work"]["embedded"] == 5 and r["work"]["skipped_decided"] == 16 - 5
    assert r["ours_embedding_frames"]["count"] == 5
    for path in ("ours", "opencv_320", "opencv_640"):
        assert r["per_frame_ms"][path]["p50"] > 0 and r["what"][path] == WHAT[path]
    assert set(r["ratios"]) == set(r["face_frames_ratios"]) == {
        f"{q}_vs_{p}" for q in ("p50", "p99", "mean") for p in ("opencv_320", "opencv_640")}
    # Which figure answers the target: the device path per frame over the stream.
    t = pipeline_target(r)
    assert t["p50_ms"] == r["per_frame_ms"]["ours"]["p50"]
    assert t["p99_ms"] == r["per_frame_ms"]["ours"]["p99"]
    assert t["ratios"]["p50_vs_opencv_320"] == r["ratios"]["p50_vs_opencv_320"]
    assert t["met"]["p99_ms"] == (t["p99_ms"] <= 40.0)
    assert r["model_id"] == models.model_id and r["engine"] == models.engine.engine


@pytest.mark.timeout(900)
def test_skipped_work_does_not_change_any_decision(models: LoadedModels) -> None:
    """The stream's saving is honest only if it is decision-neutral: the same stream with
    every face analysed in full on every frame (no decided-track skip, no unchanged-frame
    reuse) gives exactly the same decisions, on the same frames. The stays outlast the
    2 s cool-down, so each track is decided again after frames were skipped, and one
    approach has a bystander (a second track, decided too)."""
    kw = {"stay": 66, "gap": 31, "approaches": (0, 1, 4), "warmup": 2, "opencv": False}
    skipping = bench_stream(models, skip=True, **kw)  # type: ignore[arg-type]  # kwargs of mixed types
    full = bench_stream(models, skip=False, **kw)  # type: ignore[arg-type]  # kwargs of mixed types
    assert skipping["work"]["skipped_decided"] > 100 and full["work"]["skipped_decided"] == 0
    assert full["work"]["embedded"] > 5 * skipping["work"]["embedded"]
    keys = ("frame", "approach", "decision", "reason", "frames", "at_door", "subject_is_expected")
    got = [tuple(d[k] for k in keys) for d in skipping["decisions"]]
    assert got == [tuple(d[k] for k in keys) for d in full["decisions"]]
    # What was decided: each approach twice (before and after the cool-down), the right way.
    summary = [(d["approach"], d["decision"], d["at_door"]) for d in skipping["decisions"]]
    assert summary == [(0, "granted", True)] * 2 + [(1, "unknown", True)] * 2 + [
        (4, "granted", True), (4, "unknown", False)] * 2, summary
    assert all(d["subject_is_expected"] in (True, None) for d in skipping["decisions"])
