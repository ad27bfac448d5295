"""The device-path stream bench (issue 16 round 3): what it measures is what the device does.

Numbers are printed by ``facegate bench``, never asserted. This test proves the
stream plays approaches through the real service frame step and DecisionEngine:
an enrolled face is granted (the right subject), a stranger is unknown, decided
tracks stop being embedded, and every figure carries its label.
"""

from __future__ import annotations

import pytest
from facegate.drivers.models import LoadedModels
from facegate.handlers.recognition.stream_bench import WHAT, bench_stream


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
    assert set(r["ratios"]) == {f"{q}_vs_{p}" for q in ("p50", "p99", "mean")
                                for p in ("opencv_320", "opencv_640")}
    assert r["model_id"] == models.model_id and r["engine"] == models.engine.engine
