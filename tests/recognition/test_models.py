"""Model files: sha256 pins, conversion cache, the refusal path, OpenCV agreement."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from facegate.drivers.models import (
    BUILTIN_DETECTOR,
    BUILTIN_RECOGNIZER,
    LoadedModels,
    ModelFamily,
    ModelFormatError,
    ModelHashMismatch,
    ModelOptions,
    ModelSpec,
    TemplateModelMismatch,
    check_same_model,
    load_models,
    load_models_async,
)
from facegate.drivers.models.convert import converted_path, sha256_file
from facegate.handlers.recognition import Matcher
from facegate.handlers.recognition.align import align_face
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import ManualClock
from facegate.runtime.events import SecurityEvent, SecurityKind
from onnx import TensorProto, helper, numpy_helper

from .conftest import face_bgr


def test_shipped_files_match_their_pins() -> None:
    for spec in (BUILTIN_DETECTOR, BUILTIN_RECOGNIZER):
        assert sha256_file(spec.path) == spec.sha256
    assert BUILTIN_RECOGNIZER.model_id == "sface-2021dec@fb143eea"


def test_conversion_is_cached_by_source_hash(models: LoadedModels, model_cache: Path) -> None:
    det = converted_path(BUILTIN_DETECTOR.path, BUILTIN_DETECTOR.sha256, model_cache)
    assert models.detector_path == det and det.is_file()
    assert BUILTIN_DETECTOR.sha256[:16] in det.name
    mtime = det.stat().st_mtime_ns
    again = load_models(ModelOptions(cache_dir=model_cache))
    assert again.detector_path.stat().st_mtime_ns == mtime  # reused, not rebuilt


def _tampered(tmp_path: Path) -> ModelSpec:
    bad = tmp_path / "sface.onnx"
    shutil.copy(BUILTIN_RECOGNIZER.path, bad)
    with bad.open("r+b") as fh:
        fh.seek(5000)
        byte = fh.read(1)
        fh.seek(5000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    return ModelSpec("sface-2021dec", ModelFamily.SFACE, bad, BUILTIN_RECOGNIZER.sha256)


def test_wrong_hash_is_refused_before_loading(tmp_path: Path) -> None:
    spec = _tampered(tmp_path)
    with pytest.raises(ModelHashMismatch) as err:
        load_models(ModelOptions(recognizer=spec, cache_dir=tmp_path / "cache"))
    assert err.value.expected == BUILTIN_RECOGNIZER.sha256
    assert "refusing" in str(err.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@pytest.mark.asyncio
async def test_wrong_hash_publishes_model_rejected(tmp_path: Path) -> None:
    bus, clock = EventBus(), ManualClock()
    spec = _tampered(tmp_path)
    async with bus.subscribe(SecurityEvent, name="t") as sub:
        with pytest.raises(ModelHashMismatch):
            await load_models_async(
                ModelOptions(recognizer=spec, cache_dir=tmp_path / "c"), bus=bus, clock=clock
            )
        ev = sub.get_nowait()
    assert ev is not None and ev.kind is SecurityKind.MODEL_REJECTED
    assert "sface.onnx" in ev.detail


def test_not_onnx_is_a_format_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"definitely not a protobuf" * 10)
    spec = ModelSpec("junk", ModelFamily.ARCFACE, junk, sha256_file(junk))
    with pytest.raises(ModelFormatError):
        load_models(ModelOptions(recognizer=spec, cache_dir=tmp_path / "c"))


def test_model_mismatch_names_reenrolment() -> None:
    check_same_model("sface-2021dec@fb143eea", "sface-2021dec@fb143eea")
    with pytest.raises(TemplateModelMismatch, match="re-enrolment is required"):
        check_same_model("arcface-r50@12345678", "sface-2021dec@fb143eea")


def test_embeddings_agree_with_opencv_on_the_same_model(fp32_models: LoadedModels) -> None:
    """Our preprocessing equals cv2.FaceRecognizerSF's, and so does our alignment.

    (Faces touching the image border differ slightly: OpenCV pads black, we replicate.)
    Run on the exact fp32 build, so the only difference can be preprocessing.
    """
    models = fp32_models
    rec = cv2.FaceRecognizerSF.create(str(models.recognizer_path), "")
    for name in ("obama.jpg", "Family2-Lady1.jpg", "detection1.jpg"):
        img = face_bgr(name)
        det = models.detector.detect(img)[0]
        crop = align_face(img, det.landmarks)
        ours = models.embedder.embed(crop)[0]
        same_crop = rec.feature(crop).ravel()
        assert float(ours @ same_crop) / float(np.linalg.norm(same_crop)) >= 0.9999, name
        face_row = np.array([[*det.box, *det.landmarks.ravel(), det.score]], np.float32)
        theirs = rec.feature(rec.alignCrop(img, face_row)).ravel()
        assert float(ours @ theirs) / float(np.linalg.norm(theirs)) >= 0.99, name
        assert abs(float(np.linalg.norm(ours)) - 1.0) < 1e-5


def test_detector_runs_at_any_frame_size(models: LoadedModels) -> None:
    img = face_bgr("obama.jpg")  # 910x1137, scaled to the 320 px detector input
    faces = models.detector.detect(img)
    assert len(faces) == 1
    x, _, w, _ = faces[0].box
    assert 200 < w < 450 and 0 < x < img.shape[1]


def _arcface_like(path: Path) -> np.ndarray:
    """A real (tiny) ArcFace-format ONNX model: 1x3x112x112 in, 512-d out."""
    w = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input.1"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("MatMul", ["f", "w"], ["683"])],
        "arcface_like",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return w


def test_user_arcface_model_by_path(tmp_path: Path, model_cache: Path) -> None:
    path = tmp_path / "my-arcface.onnx"
    w = _arcface_like(path)
    spec = ModelSpec("my-arcface", ModelFamily.ARCFACE, path, sha256_file(path))
    loaded = load_models(ModelOptions(recognizer=spec, cache_dir=model_cache))
    assert loaded.embedder.dim == 512
    assert loaded.model_id == f"my-arcface@{spec.sha256[:8]}"
    crop = np.zeros((112, 112, 3), np.uint8)
    crop[..., 0], crop[..., 1], crop[..., 2] = 10, 128, 250  # B, G, R
    got = loaded.embedder.embed(crop)[0]
    rgb = (np.array([250, 128, 10], np.float32) - 127.5) / 127.5  # InsightFace preprocessing
    want = rgb @ w
    assert np.allclose(got, want / np.linalg.norm(want), atol=1e-5)
    sface_gallery = Matcher(BUILTIN_RECOGNIZER.model_id, 128)
    with pytest.raises(TemplateModelMismatch):
        sface_gallery.search(np.ones(512, np.float32), model_id=loaded.model_id)
