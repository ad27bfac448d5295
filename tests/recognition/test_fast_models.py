"""The fast recogniser builds: the exact fp32 rewrite and the int8 recipe.

Speed itself is measured by ``facegate bench``, never here; these tests prove
the builds compute what the plain fp32 fold computes (exactly, or within the
fidelity bound of the issue for int8) and that their artefacts are stable.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from facegate.drivers.models import (
    BUILTIN_RECOGNIZER,
    LoadedModels,
    ModelFamily,
    ModelFormatError,
    ModelOptions,
    ModelSpec,
    TemplateModelMismatch,
    check_same_model,
    load_models,
)
from facegate.drivers.models.convert import optimized_cached
from facegate.drivers.models.optimize import optimize_model
from facegate.drivers.models.quantize import (
    BUILTIN_RANGES,
    build_ranges,
    quantize_cached,
    quantized_path,
)
from facegate.drivers.models.session import make_session
from facegate.handlers.recognition import RecognitionEngine
from facegate.handlers.recognition.engine import model_options
from facegate.handlers.recognition.int8_ranges import sample_crops
from facegate.handlers.recognition.thresholds import builtin_table
from facegate.runtime.config._convert import build_section
from facegate.runtime.config.recognition import RecognitionSection
from facegate.storage.enrolment import check_id
from onnx import TensorProto, helper, numpy_helper

from tests.recognition.conftest import FACES


@pytest.fixture(scope="module")
def crops(fp32_models: LoadedModels) -> np.ndarray:
    """Every adult sample face, aligned, plus a mirrored and a darker copy of each."""
    base = np.stack(sample_crops(fp32_models, FACES))
    assert len(base) >= 30
    darker = (base.astype(np.float32) * 0.7).astype(np.uint8)
    return np.concatenate([base, base[:, :, ::-1], darker])


@pytest.fixture(scope="module")
def int8_models(model_cache: Path) -> LoadedModels:
    """Explicitly int8 (the default on VNNI CPUs: ``models`` is then the same build)."""
    return load_models(ModelOptions(cache_dir=model_cache, recognizer_precision="int8"))


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _plain_embeddings(fp32_models: LoadedModels, crops: np.ndarray) -> np.ndarray:
    assert fp32_models.reference_recognizer_path is not None
    sess = _session(fp32_models.reference_recognizer_path)
    rows = [sess.run(None, {"data": np.ascontiguousarray(
        c[..., ::-1].astype(np.float32).transpose(2, 0, 1)[None])})[0][0] for c in crops]
    out = np.stack(rows)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_fp32_rewrite_is_exact_and_keeps_the_model_id(
    fp32_models: LoadedModels, crops: np.ndarray
) -> None:
    assert fp32_models.model_id == BUILTIN_RECOGNIZER.model_id  # enrolled templates stay valid
    assert fp32_models.reference_recognizer_path is not None
    assert fp32_models.recognizer_path != fp32_models.reference_recognizer_path
    ops = {n.op_type for n in onnx.load(str(fp32_models.recognizer_path)).graph.node}
    assert "PRelu" not in ops and "Max" in ops
    ours = fp32_models.embedder.embed(crops)
    cos = (ours * _plain_embeddings(fp32_models, crops)).sum(axis=1)
    assert float(cos.min()) >= 0.99999


def _prelu_net(slopes: np.ndarray, *, tail: str) -> onnx.ModelProto:
    """Conv -> BN -> PRelu(slopes) -> (depthwise Conv | pointwise Conv | Sigmoid)."""
    rng = np.random.default_rng(3)
    c = slopes.size
    inits = [
        numpy_helper.from_array(rng.standard_normal((c, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.uniform(0.5, 2, c).astype(np.float32), "g"),
        numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "b"),
        numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "m"),
        numpy_helper.from_array(rng.uniform(0.5, 2, c).astype(np.float32), "v"),
        numpy_helper.from_array(slopes.reshape(c, 1, 1).astype(np.float32), "s"),
        numpy_helper.from_array(rng.standard_normal((c, 1, 3, 3)).astype(np.float32), "wd"),
        numpy_helper.from_array(rng.standard_normal((4, c, 1, 1)).astype(np.float32), "wp"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["y0"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["y0", "g", "b", "m", "v"], ["y1"], name="bn"),
        helper.make_node("PRelu", ["y1", "s"], ["p"], name="pr"),
    ]
    if tail == "dw":
        nodes.append(helper.make_node("Conv", ["p", "wd"], ["out"], name="dw", group=c))
    elif tail == "pw":
        nodes.append(helper.make_node("Conv", ["p", "wp"], ["out"], name="pw"))
    else:
        nodes.append(helper.make_node("Sigmoid", ["p"], ["out"], name="sig"))
    graph = helper.make_graph(
        nodes, "prelu_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", "c", "h", "w"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0])


@pytest.mark.parametrize("tail", ["dw", "pw", "other"])
def test_prelu_rewrite_is_exact_for_any_slope(tail: str) -> None:
    slopes = np.array([-0.6, -0.1, 0.0, 0.25, 0.9, 1.0, 1.12, 2.5], np.float32)
    x = np.random.default_rng(5).standard_normal((1, 3, 12, 12)).astype(np.float32) * 3
    ref = _run(_prelu_net(slopes, tail=tail), x)
    fast = optimize_model(_prelu_net(slopes, tail=tail))
    onnx.checker.check_model(fast)
    ops = [n.op_type for n in fast.graph.node]
    assert "BatchNormalization" not in ops
    if tail == "other":
        # Slopes > 1 need the sign flip, which needs Conv consumers: left as PRelu.
        assert "PRelu" in ops
    else:
        assert "PRelu" not in ops and "Max" in ops
    np.testing.assert_allclose(_run(fast, x), ref, rtol=1e-4, atol=1e-4)


def test_a_rewrite_that_changes_the_output_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "net.onnx"
    onnx.save(_prelu_net(np.array([0.1, 0.5], np.float32), tail="pw"), plain)

    def broken(model: onnx.ModelProto) -> onnx.ModelProto:
        for init in model.graph.initializer:
            if init.name == "s":
                init.CopyFrom(numpy_helper.from_array(np.full((2, 1, 1), 0.9, np.float32), "s"))
        return model

    monkeypatch.setattr("facegate.drivers.models.convert.optimize_model", broken)
    assert optimized_cached(plain) == plain  # the plain fold, nothing cached
    assert [p.name for p in tmp_path.iterdir()] == ["net.onnx"]


def test_int8_embeddings_stay_faithful(
    fp32_models: LoadedModels, int8_models: LoadedModels, crops: np.ndarray
) -> None:
    """The issue's fidelity rule: cosine >= 0.99 against the fp32 fold on the sample faces."""
    cos = (int8_models.embedder.embed(crops) * _plain_embeddings(fp32_models, crops)).sum(axis=1)
    assert float(cos.min()) >= 0.99, float(cos.min())
    assert float(cos.mean()) >= 0.995


def test_int8_has_its_own_model_id(fp32_models: LoadedModels, int8_models: LoadedModels) -> None:
    assert int8_models.model_id.startswith(BUILTIN_RECOGNIZER.model_id + ":int8r1-")
    # Every template is stored with its model id: the id must pass the gallery's id rule.
    assert check_id(int8_models.model_id, "model id") == int8_models.model_id
    with pytest.raises(TemplateModelMismatch):
        check_same_model(fp32_models.model_id, int8_models.model_id)
    ops = {n.op_type for n in onnx.load(str(int8_models.recognizer_path)).graph.node}
    assert "QuantizeLinear" in ops and "PRelu" not in ops


def test_int8_build_is_deterministic(int8_models: LoadedModels, tmp_path: Path) -> None:
    """Same optimised graph + same shipped ranges -> the same bytes, with no images at hand."""
    opt = tmp_path / int8_models.recognizer_path.name.split("-int8r")[0]
    shutil.copy(int8_models.recognizer_path.with_name(opt.name + ".onnx"), opt.with_suffix(".onnx"))
    again = quantize_cached(opt.with_suffix(".onnx"), BUILTIN_RANGES)
    assert again == quantized_path(opt.with_suffix(".onnx"), BUILTIN_RANGES)
    assert again.read_bytes() == int8_models.recognizer_path.read_bytes()


@pytest.mark.timeout(600)  # calibrates int8 ranges over every sample crop: ~20 s idle, 120 s on loaded CI
def test_shipped_ranges_are_reproducible_from_the_repo_samples(
    fp32_models: LoadedModels, tmp_path: Path
) -> None:
    out = tmp_path / "ranges.json"
    build_ranges(fp32_models.recognizer_path, sample_crops(fp32_models, FACES), out)
    ours = json.loads(out.read_text())["data"]
    shipped = json.loads(BUILTIN_RANGES.read_text())["data"]
    assert ours.keys() == shipped.keys()

    def value(v: object) -> float:
        return float(v["data"] if isinstance(v, dict) else v)  # type: ignore[arg-type,index]  # json

    for name, r in shipped.items():
        for key in ("lowest", "highest"):
            assert value(ours[name][key]) == pytest.approx(value(r[key]), rel=1e-3, abs=1e-3)


def test_int8_is_refused_for_models_without_a_recipe(tmp_path: Path) -> None:
    copy = tmp_path / "sface-copy.onnx"
    shutil.copy(BUILTIN_RECOGNIZER.path, copy)
    spec = ModelSpec("my-sface", ModelFamily.SFACE, copy, BUILTIN_RECOGNIZER.sha256)
    with pytest.raises(ModelFormatError, match="built-in SFace only"):
        load_models(ModelOptions(recognizer=spec, cache_dir=tmp_path / "c",
                                 recognizer_precision="int8"))
    with pytest.raises(ModelFormatError, match="precision"):
        load_models(ModelOptions(cache_dir=tmp_path / "c", recognizer_precision="fp16"))


def test_int8_engine_uses_the_shipped_int8_calibration(
    int8_models: LoadedModels, model_cache: Path
) -> None:
    """The device config selects int8; thresholds come from the int8 devset table."""
    cfg = build_section(
        RecognitionSection,
        {"models": {"recognizer_precision": "int8", "cache_dir": str(model_cache)}},
        "recognition", Path("/"),
    )
    assert model_options(cfg).recognizer_precision == "int8"
    engine = RecognitionEngine(cfg, int8_models)
    assert engine.thresholds.table.model_id == int8_models.model_id
    assert builtin_table(int8_models.model_id).model_id == int8_models.model_id
    assert 0.3 < engine.thresholds.threshold(1) < 0.45
    assert builtin_table(BUILTIN_RECOGNIZER.model_id).model_id == BUILTIN_RECOGNIZER.model_id


def test_each_build_gets_its_own_table(
    models: LoadedModels, int8_models: LoadedModels, fp32_models: LoadedModels,
    model_cache: Path, tmp_path: Path,
) -> None:
    """The default config resolves the build per device (``auto``: test_precision.py); each
    build gets its own table."""
    cfg = RecognitionSection()
    assert cfg.models.recognizer_precision == "auto"
    assert int8_models.model_id != fp32_models.model_id
    engine = RecognitionEngine(cfg, models)
    assert engine.thresholds.table.model_id == engine.model_id
    fp32_cfg = build_section(RecognitionSection, {"models": {"recognizer_precision": "fp32"}},
                             "recognition", Path("/"))
    assert model_options(fp32_cfg).recognizer_precision == "fp32"
    fp32_engine = RecognitionEngine(fp32_cfg, fp32_models)
    assert fp32_engine.thresholds.table.model_id == BUILTIN_RECOGNIZER.model_id
    # The two devset tables differ (measured per build), and an unknown id gets none.
    int8_cfg = build_section(RecognitionSection, {"models": {"recognizer_precision": "int8"}},
                             "recognition", Path("/"))
    int8_engine = RecognitionEngine(int8_cfg, int8_models)
    assert int8_engine.thresholds.threshold(1000) != fp32_engine.thresholds.threshold(1000)
    assert builtin_table("arcface-r100@deadbeef").model_id != "arcface-r100@deadbeef"
    # A user recogniser runs fp32 under the default config (the recipe is SFace's own).
    user = build_section(
        RecognitionSection,
        {"models": {"recognizer_path": str(tmp_path / "r.onnx"), "recognizer_sha256": "0" * 64}},
        "recognition", Path("/"),
    )
    assert model_options(user).recognizer_precision == "fp32"


def test_fp32_templates_in_an_int8_gallery_need_re_enrolment(
    int8_models: LoadedModels, fp32_models: LoadedModels, crops: np.ndarray
) -> None:
    """Templates of the other build are refused with a clear message."""
    models = int8_models
    engine = RecognitionEngine(RecognitionSection(), models)
    old = fp32_models.embedder.embed(crops[:1])[0]
    with pytest.raises(TemplateModelMismatch, match="re-enrolment is required") as err:
        engine.matcher.add("S-1", "S-1-t1", old, fp32_models.model_id)
    assert err.value.stored == BUILTIN_RECOGNIZER.model_id
    assert err.value.current == models.model_id
    assert engine.matcher.subject_count == 0


def test_target_fmr_doc_states_the_gallery_division() -> None:
    doc = next(f for f in fields(RecognitionSection) if f.name == "target_fmr").metadata
    text = " ".join(str(v) for v in doc.values())
    assert "target_fmr / gallery size" in text and "1:N search" in text


def test_spinning_is_bounded_to_one_run(fp32_models: LoadedModels) -> None:
    """``spin=True`` spins only within a run (force_spinning_stop); the default never spins."""
    quiet = make_session(fp32_models.recognizer_path, intra_threads=2).get_session_options()
    assert quiet.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    busy = make_session(fp32_models.recognizer_path, intra_threads=2, spin=True).get_session_options()
    assert busy.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert busy.get_session_config_entry("session.force_spinning_stop") == "1"
