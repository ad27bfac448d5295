"""Recogniser engines (issue 16 round 3): the same fp32 function on onnxruntime or OpenCV's dnn.

Speed is measured by ``facegate bench`` (``recognizer_engines``), never here. These
tests prove the OpenCV engine computes the fp32 fold's function (so the model id and
templates do not depend on the engine), that the probe refuses an engine computing
something else, that its choice is cached per machine, and how the precision
setting resolves (the auto probe and its pin: test_precision.py).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from facegate.drivers.models import (
    BUILTIN_RECOGNIZER,
    LoadedModels,
    ModelFamily,
    ModelFormatError,
    ModelOptions,
    ModelSpec,
    load_models,
)
from facegate.drivers.models.engines import (
    FAITHFUL_COS,
    OPENCV,
    OpenCvSession,
    ProbeCache,
    choose_engine,
)
from facegate.drivers.models.loader import resolve_precision
from facegate.drivers.models.precision import BuildPin, PrecisionChoice
from facegate.drivers.models.session import make_session
from facegate.handlers.recognition.engine import model_options
from facegate.handlers.recognition.int8_ranges import sample_crops
from facegate.runtime.config.recognition import RecognitionSection

from tests.recognition.conftest import FACES


@pytest.fixture(scope="module")
def ort_fp32(model_cache: Path) -> LoadedModels:
    return load_models(ModelOptions(cache_dir=model_cache, recognizer_precision="fp32",
                                    recognizer_engine="onnxruntime"))


@pytest.fixture(scope="module")
def ocv_fp32(model_cache: Path) -> LoadedModels:
    return load_models(ModelOptions(cache_dir=model_cache, recognizer_precision="fp32",
                                    recognizer_engine="opencv"))


def test_opencv_engine_computes_the_fp32_function(
    ort_fp32: LoadedModels, ocv_fp32: LoadedModels
) -> None:
    """Same model id, same embeddings (cosine >= 0.9999) on every adult sample face."""
    assert ocv_fp32.engine.engine == OPENCV and ort_fp32.engine.engine == "onnxruntime"
    assert ocv_fp32.model_id == ort_fp32.model_id == BUILTIN_RECOGNIZER.model_id
    crops = np.stack(sample_crops(ort_fp32, FACES))
    assert len(crops) >= 30
    a = ort_fp32.embedder.embed(crops)
    b = ocv_fp32.embedder.embed(crops)
    assert b.shape == a.shape == (len(crops), 128)
    cos = (a * b).sum(axis=1)
    assert float(cos.min()) >= FAITHFUL_COS
    # And the mirror batch of two (the gate's flip fusion) goes through the row loop.
    two = ocv_fp32.embedder.embed(crops[:2])
    assert np.allclose(two, b[:2], atol=1e-5)


def test_probe_refuses_an_engine_that_computes_something_else(
    ort_fp32: LoadedModels, model_cache: Path
) -> None:
    """int8 is a different function (cosine ~0.99): never a candidate for the fp32 id."""
    assert ort_fp32.reference_recognizer_path is not None
    ref = make_session(ort_fp32.recognizer_path, intra_threads=1)
    int8 = load_models(ModelOptions(cache_dir=model_cache, recognizer_precision="int8",
                                    recognizer_engine="onnxruntime"))
    other = make_session(int8.recognizer_path, intra_threads=1)
    cv = OpenCvSession(ort_fp32.reference_recognizer_path)
    # An injected clock: every onnxruntime run "takes" 10 ms, every OpenCV run 4 ms.
    ticks = itertools.count()
    durations = itertools.cycle([10.0, 4.0])  # live candidates alternate: reference, opencv
    now = [0.0]

    def timer() -> float:
        if next(ticks) % 2 == 0:
            return now[0]
        now[0] += next(durations) / 1e3
        return now[0]

    choice = choose_engine({"onnxruntime": ref, "int8": other, OPENCV: cv}, rounds=3,
                           timer=timer)
    assert choice.dropped == ("int8",)
    assert choice.engine == OPENCV and choice.source == "probe"
    assert choice.probe_ms == {"onnxruntime": 10.0, OPENCV: 4.0}
    # With the real clock the choice is one of the faithful engines, both measured.
    real = choose_engine({"onnxruntime": ref, OPENCV: cv}, rounds=2)
    assert real.engine in ("onnxruntime", OPENCV) and set(real.probe_ms) == {"onnxruntime", OPENCV}


def test_engine_choice_is_measured_once_and_cached(model_cache: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    for f in model_cache.glob("*.onnx"):  # reuse the converted files, not the probe
        (cache / f.name).symlink_to(f)
    opts = ModelOptions(cache_dir=cache, recognizer_precision="fp32")
    first = load_models(opts)
    assert first.engine.source == "probe" and set(first.engine.probe_ms) == {"onnxruntime", OPENCV}
    again = load_models(opts)
    assert again.engine.source == "cache" and again.engine.engine == first.engine.engine
    assert again.model_id == first.model_id == BUILTIN_RECOGNIZER.model_id
    # A damaged cache file is not trusted and not fatal: the probe runs again.
    probe_file = ProbeCache(cache).path
    probe_file.write_text("{not json")
    third = load_models(opts)
    assert third.engine.source == "probe"
    assert ProbeCache(cache).path.read_text().startswith("{")


def test_int8_cannot_run_on_opencv(model_cache: Path) -> None:
    with pytest.raises(ModelFormatError, match="recognizer_precision"):
        load_models(ModelOptions(cache_dir=model_cache, recognizer_precision="int8",
                                 recognizer_engine="opencv"))


def test_precision_resolution(tmp_path: Path) -> None:
    """Forced builds as set; a user model fp32; auto: the pin, else None (measure first)."""
    assert resolve_precision(BUILTIN_RECOGNIZER, "fp32") == PrecisionChoice("fp32", "config")
    assert resolve_precision(BUILTIN_RECOGNIZER, "int8") == PrecisionChoice("int8", "config")
    user = ModelSpec("user", ModelFamily.ARCFACE, tmp_path / "u.onnx", "0" * 64)
    assert resolve_precision(user, "auto", tmp_path) == PrecisionChoice("fp32", "only")
    assert resolve_precision(BUILTIN_RECOGNIZER, "auto", tmp_path) is None
    assert resolve_precision(BUILTIN_RECOGNIZER, None) is None
    BuildPin(tmp_path).put(BUILTIN_RECOGNIZER.model_id, PrecisionChoice("int8", "probe", {"x": 1.0}))
    pinned = resolve_precision(BUILTIN_RECOGNIZER, "auto", tmp_path)
    assert pinned is not None and (pinned.precision, pinned.source) == ("int8", "pinned")
    cfg = RecognitionSection()
    assert cfg.models.recognizer_precision == "auto" and cfg.models.recognizer_engine == "auto"
    assert model_options(cfg).recognizer_engine == "auto"


def test_a_choice_made_under_contention_is_measured_again_when_quieter(tmp_path: Path) -> None:
    cache = ProbeCache(tmp_path)
    from facegate.drivers.models.engines import EngineChoice  # noqa: PLC0415 - local to this test

    cache.put("k", EngineChoice(OPENCV, "probe", {"onnxruntime": 9.0, OPENCV: 8.0}))
    data = cache.path.read_text()
    busy = data.replace('"load_avg": ', '"load_avg": 1000.0, "was": ')
    cache.path.write_text(busy)
    assert cache.get("k", load_now=999.0) is not None  # still as busy: keep the choice
    assert cache.get("k", load_now=1.0) is None  # quieter now: measure again
    cache.path.write_text(data.replace('"load_avg": ', '"load_avg": 0.5, "was": '))
    got = cache.get("k", load_now=0.1)
    assert got is not None and got.engine == OPENCV and got.source == "cache"
