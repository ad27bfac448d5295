"""Decision deadlines, thresholds, config rules, the PAD slot and the CLI tools."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from facegate.drivers.models import BUILTIN_RECOGNIZER, LoadedModels, ModelHashMismatch
from facegate.drivers.models.convert import sha256_file
from facegate.handlers.recognition import (
    CalibrationError,
    CalibrationTable,
    Reason,
    RecognitionEngine,
    ThresholdPolicy,
)
from facegate.handlers.recognition.decision import DecisionEngine
from facegate.handlers.recognition.engine import int8_build
from facegate.handlers.recognition.liveness import OnnxPadCheck, StillnessCheck
from facegate.handlers.recognition.pipeline import FramePipeline
from facegate.handlers.recognition.thresholds import builtin_table
from facegate.runtime.app.cli import main
from facegate.runtime.config._convert import ConversionError, build_section
from facegate.runtime.config.recognition import DecisionSettings, RecognitionSection
from facegate.runtime.events import Decision
from onnx import TensorProto, helper

from .conftest import FACES, face_bgr, place_in_frame


def test_threshold_rises_with_gallery_size(models: LoadedModels) -> None:
    table = builtin_table(models.model_id)
    assert table.model_id == models.model_id
    policy = ThresholdPolicy(table, 1e-3)
    t1, t1k, t1m = (policy.threshold(n) for n in (1, 1_000, 1_000_000))
    assert 0.2 < t1 < t1k < t1m <= 0.95
    assert policy.per_comparison_fmr(1_000) == pytest.approx(1e-6)
    assert ThresholdPolicy(table, 1e-3, fixed=0.5).threshold(10**6) == 0.5


def test_calibration_for_another_model_is_refused(models: LoadedModels, tmp_path: Path) -> None:
    other = CalibrationTable("arcface-r100@deadbeef", ((0.1, 0.2), (0.01, 0.3)))
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(other.to_json()))
    with pytest.raises(CalibrationError, match="arcface-r100@deadbeef"):
        RecognitionEngine(RecognitionSection(calibration=path), models)
    path.write_text("{not json")
    with pytest.raises(CalibrationError):
        RecognitionEngine(RecognitionSection(calibration=path), models)


def test_config_rules() -> None:
    cfg = build_section(RecognitionSection, {"roi": [0.1, 0.1, 0.5, 0.5],
                                             "decision": {"k": 2}}, "recognition", Path("/etc"))
    assert cfg.roi == (0.1, 0.1, 0.5, 0.5) and cfg.decision.k == 2
    with pytest.raises(ConversionError, match="roi"):
        build_section(RecognitionSection, {"roi": [0.6, 0, 0.6, 1]}, "recognition", Path("/"))
    with pytest.raises(ConversionError, match="recognizer_sha256"):
        build_section(RecognitionSection, {"models": {"recognizer_path": "r.onnx"}},
                      "recognition", Path("/"))
    with pytest.raises(ConversionError, match="pad_model_sha256"):
        build_section(RecognitionSection, {"liveness": {"pad_model": "p.onnx"}},
                      "recognition", Path("/"))


def test_track_lost_before_a_decision_is_undecided(models: LoadedModels) -> None:
    engine = RecognitionEngine(RecognitionSection(), models)
    dec = DecisionEngine(DecisionSettings(), engine.thresholds, StillnessCheck(),
                         model_id=engine.model_id)
    frame = place_in_frame(face_bgr("obama.jpg"), models)
    a = engine.pipeline.analyse(frame)
    assert a.reason is Reason.OK and a.search is not None and a.search.subjects == 0
    assert dec.observe(a, 10.0, 1.0) == []
    assert dec.tick(10.5, 1.5) == []
    out = dec.tick(11.2, 2.2)  # no frame for > track_lost_s
    assert [d.decision for d in out] == [Decision.UNDECIDED]
    assert out[0].reason == "track_lost" and not dec.tracking


def _pad_model(path: Path, bias: float) -> str:
    """A real (tiny) ONNX PAD-format model: live probability = mean(pixels) + bias."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0),
        helper.make_node("Add", ["m", "b"], ["s"]),
        helper.make_node("Reshape", ["s", "shape"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "pad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 80, 80])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        initializer=[helper.make_tensor("b", TensorProto.FLOAT, [], [bias]),
                     helper.make_tensor("shape", TensorProto.INT64, [2], [1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return sha256_file(path)


def test_pad_model_slot(models: LoadedModels, tmp_path: Path) -> None:
    frame = place_in_frame(face_bgr("obama.jpg"), models)
    engine = RecognitionEngine(RecognitionSection(), models)
    for bias, reason in ((0.6, Reason.OK), (-0.6, Reason.LIVENESS_PAD)):
        path = tmp_path / f"pad{bias}.onnx"
        check = OnnxPadCheck(path, _pad_model(path, bias), threshold=0.5)
        pipe = FramePipeline(models, engine.matcher, frame_checks=[check])
        a = pipe.analyse(frame)
        assert a.reason is reason
        assert a.liveness[0].name == "pad_model"
        assert (a.embedding is None) == (reason is Reason.LIVENESS_PAD)
    with pytest.raises(ModelHashMismatch):
        OnnxPadCheck(path, "0" * 64)


def test_calibrate_cli_writes_a_usable_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model_cache: Path,
    monkeypatch: pytest.MonkeyPatch, models: LoadedModels,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(model_cache.parent))
    people = {
        "p1": ["obama.jpg", "obama2.jpg", "obama3.jpg"],
        "p2": ["Family1-Dad1.jpg", "Family1-Dad2.jpg", "Family1-Dad3.jpg"],
        "p3": ["Family1-Mom1.jpg", "Family1-Mom2.jpg"],
        "p4": ["Family2-Man1.jpg", "Family2-Man2.jpg"],
        "p5": ["Family2-Lady1.jpg", "Family2-Lady2.jpg"],
        "p6": ["Family3-Man1.jpg", "biden.jpg"],  # deliberately mislabelled: a low genuine
    }
    root = tmp_path / "set"
    for person, files in people.items():
        (root / person).mkdir(parents=True)
        for f in files:
            shutil.copy(FACES / f, root / person / f)
    (root / "p1" / "notes.txt").write_text("ignored")
    out = tmp_path / "cal.json"
    assert main(["calibrate", str(root), "-o", str(out), "--json", "--open-set"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["identities"] == 6 and summary["images"] == 14
    # Every configuration reports failures to enrol and gate refusals next to FNMR.
    rows = {r["config"]: r for r in summary["configurations"]}
    # The device fuses templates always and probes only when uncertain (fusion.flip_band);
    # two detection scales by default with the fp32 build, one with int8.
    device = "refine+flip@gate" if int8_build(summary["model_id"]) else "multi+flip@gate"
    assert summary["device_config"] == device
    assert set(rows) >= {"legacy", "refine+flip", "refine+flip@gate", "multi+flip@gate"}
    assert {"failed_to_enrol", "gate_refused", "gate_would_match", "fnmr@0.0001"} <= set(
        rows["refine+flip"])
    assert 0 <= rows[device]["mirrored_pair_share"] <= 1
    o = summary["open_set"]
    assert 0 <= o["probes_mirrored"] <= o["probes_searched"]
    assert summary["open_set"]["enrolled"] + summary["open_set"]["failed_to_enrol"] == 4
    assert summary["genuine_pairs"] == 10 and summary["impostor_pairs"] == 81
    assert 0 < summary["eer"] < 0.2  # only the mislabelled pair is a genuine miss
    table = CalibrationTable.load(out)
    # Without a config, calibrate runs the device's default build.
    assert table.model_id == models.model_id and len(table.points) >= 2
    assert main(["calibrate", str(tmp_path / "missing")]) == 2


def test_bench_cli_json(
    capsys: pytest.CaptureFixture[str], model_cache: Path, monkeypatch: pytest.MonkeyPatch,
    models: LoadedModels,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(model_cache.parent))
    args = ["bench", "--json", "--frames", "12", "--sizes", "10k", "--queries", "5",
            "--skip-stream", "--skip-engines", "--unlock-trials", "0"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("pipeline_p50_ms", "pipeline_p99_ms", "sustained_fps", "opencv_p50_ms",
                "ratio_to_opencv", "search_10k_p50_ms", "search_10k_recall_at_1"):
        assert isinstance(r[key], int | float), key
    assert set(r["stages"]) == {"decode", "detect", "quality", "align", "embed", "search",
                                "total"}
    assert r["search_10k_recall_at_1"] == 1.0
    assert np.isfinite(r["pipeline_p50_ms"])
    # The comparison is documented: which build ran, and both thread budgets.
    assert r["model_id"] == models.model_id and r["detector_id"] == models.detector_id
    assert r["threads"]["recognizer"] == 2 and r["threads"]["opencv"] >= 1
    # Like for like: both totals start from the JPEG bytes, decode included.
    assert r["compared"]["ours"][0] == r["compared"]["opencv"][0] == "decode"
    assert set(r["opencv_stages"]) == {"decode", "detect", "align", "embed", "total"}
    assert r["opencv_stages"]["total"]["p50"] == r["opencv_p50_ms"]
    assert r["opencv_stages"]["decode"]["p50"] > 0
    # Issue 16: the CPU features, the kernel that ran, runner-up agreement with exact search.
    assert isinstance(r["cpu"]["features"], list) and isinstance(r["cpu"]["vnni"], bool)
    assert r["cpu"]["model"] and r["matcher_kernel"]
    assert r["search_10k_runner_up_agreement"] == 1.0
    assert r["matcher_realistic"]["10k"]["recall_at_1"] == 1.0
    assert r["matcher_realistic"]["10k"]["pack_s"] >= 0.0  # start-up cost of the packed scan
    # Like for like: p50/p99 ratios also against OpenCV detecting at our detector input width.
    assert r["opencv_at_detector_input"]["width"] == models.detector.input_width
    assert set(r["ratios_to_opencv"]) == {"p50_vs_opencv_640", "p99_vs_opencv_640",
                                          "p50_vs_opencv_input", "p99_vs_opencv_input"}
    assert all(v > 0 for v in r["ratios_to_opencv"].values())
    # Round 3: which engine runs the recogniser, and why (its own cache folder: it measured
    # the engines itself, or reused its earlier measurement).
    eng = r["recognizer_engine"]
    assert eng["engine"] in ("onnxruntime", "opencv")
    if ":int8r" in models.model_id:  # a VNNI CPU: int8 runs on onnxruntime only
        assert eng["source"] == "only"
    else:
        assert eng["source"] in ("probe", "cache")
        assert set(eng["probe_ms"]) == {"onnxruntime", "opencv"}


@pytest.mark.timeout(900)  # engines, the device stream and the relay path, on a loaded CI
def test_bench_cli_fp32_build(
    capsys: pytest.CaptureFixture[str], model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(model_cache.parent))
    args = ["bench", "--json", "--frames", "10", "--skip-matcher", "--precision", "fp32",
            "--spin", "on", "--engine", "onnxruntime", "--engine-rounds", "2",
            "--stream-stay", "4", "--stream-gap", "31", "--unlock-trials", "1"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["model_id"] == BUILTIN_RECOGNIZER.model_id
    assert r["recognizer_engine"] == {"engine": "onnxruntime", "source": "config",
                                      "probe_ms": {}, "dropped": []}
    # The engine comparison (fp32 engines faithful, int8 within its bound) and the stream.
    eng = r["recognizer_engines"]
    assert eng["opencv dnn fp32"]["cos_min_to_fp32"] >= 0.9999
    assert eng["onnxruntime int8, 2 threads"]["cos_min_to_fp32"] >= 0.99
    stream = r["device_stream"]
    assert stream["engine"] == "onnxruntime" and len(stream["approaches"]) == 5
    assert set(stream["per_frame_ms"]) == {"ours", "opencv_320", "opencv_640"}
    # The target figure is the stream's; per analysed frame is context, with its cost split.
    assert r["pipeline_target"]["p50_ms"] == stream["per_frame_ms"]["ours"]["p50"]
    assert r["compared"]["role"].startswith("context")
    split = r["analysed_frame_split"]
    assert set(split["per_analysed_frame_ms"]) == {"bare", "refine", "refine_flip", "device"}
    assert {"p50", "p99"} <= set(split["refine_cost_ms"]) and "p50" in split["flip_cost_ms"]
    # Camera to relay on the real services: every trial ended with the relay written.
    relay = r["camera_to_relay"]["rules"]
    assert {k: v["no_grant_in_3s"] for k, v in relay.items()} == {"fixed_k3": 0,
                                                                  "adaptive_fast_k2": 0}
    assert all(v["trials"] == 1 and v["p50"] > 0 for v in relay.values())
    assert r["threads"]["recognizer_spin"] == "on"
    assert np.isfinite(r["ratio_to_opencv"])
