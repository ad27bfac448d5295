"""embed_image (the enrolment API) and the frame pipeline on bad and odd inputs."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import cv2
import numpy as np
import pytest
from facegate.drivers.models import LoadedModels
from facegate.handlers.recognition import ImageRejected, Reason, RecognitionEngine
from facegate.runtime.config.recognition import RecognitionSection

from .conftest import face_bgr, face_bytes


@pytest.fixture
def engine(models: LoadedModels) -> RecognitionEngine:
    return RecognitionEngine(RecognitionSection(), models)


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _reason(engine: RecognitionEngine, data: bytes) -> str:
    with pytest.raises(ImageRejected) as err:
        engine.embed_image_sync(data)
    return err.value.reason_code


@pytest.mark.asyncio
async def test_embed_image_returns_a_normalised_template(engine: RecognitionEngine) -> None:
    out = await engine.embed_image(face_bytes("obama.jpg"))
    assert out.model_id == engine.model_id
    assert out.embedding.shape == (128,) and out.embedding.dtype == np.float32
    assert float(np.linalg.norm(out.embedding)) == pytest.approx(1.0, abs=1e-5)
    assert all(r.passed for r in out.quality)
    assert "embedding" not in repr(out)  # repr never prints the template


def test_same_person_scores_high_other_person_low(engine: RecognitionEngine) -> None:
    a = engine.embed_image_sync(face_bytes("obama.jpg")).embedding
    b = engine.embed_image_sync(face_bytes("obama3.jpg")).embedding
    c = engine.embed_image_sync(face_bytes("biden.jpg")).embedding
    assert float(a @ b) > 0.6 > 0.35 > float(a @ c)


def test_broken_files_get_reason_codes(engine: RecognitionEngine) -> None:
    jpeg = face_bytes("obama.jpg")
    assert _reason(engine, b"") == Reason.IMAGE_EMPTY
    assert _reason(engine, b"\x00garbage" * 200) == Reason.IMAGE_CORRUPT
    assert _reason(engine, jpeg[: len(jpeg) // 2]) == Reason.IMAGE_CORRUPT  # truncated JPEG
    png = _png(face_bgr("Family1-Dad1.jpg"))
    assert _reason(engine, png[: len(png) - 200]) == Reason.IMAGE_CORRUPT  # truncated PNG
    assert _reason(engine, _png(np.zeros((8, 8, 3), np.uint8))) == Reason.IMAGE_TOO_SMALL


def test_huge_images_are_refused_before_decoding(models: LoadedModels) -> None:
    eng = RecognitionEngine(RecognitionSection(max_image_pixels=1_000_000), models)
    # A valid PNG header that claims 60000 x 60000 pixels: never decoded.
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + b"\x00" * 100 + b"IEND")
    assert _reason(eng, bomb) == Reason.IMAGE_TOO_LARGE
    big = face_bgr("obama3.jpg")  # 1434 x 2333 > 1 MP
    _, buf = cv2.imencode(".jpg", big)
    assert _reason(eng, buf.tobytes()) == Reason.IMAGE_TOO_LARGE
    small_bytes = RecognitionEngine(RecognitionSection(max_image_bytes=2048), models)
    assert _reason(small_bytes, face_bytes("obama.jpg")) == Reason.IMAGE_TOO_LARGE


def test_grey_rgba_and_16_bit_images_are_normalised(engine: RecognitionEngine) -> None:
    bgr = face_bgr("Family1-Mom1.jpg")
    ref = engine.embed_image_sync(_png(bgr)).embedding
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    rgba[..., 3] = 200
    deep = bgr.astype(np.uint16) * 257
    for variant in (grey, rgba, deep):
        emb = engine.embed_image_sync(_png(variant)).embedding
        assert float(emb @ ref) > 0.8


def test_face_count_and_quality_rejections(engine: RecognitionEngine) -> None:
    assert _reason(engine, _png(np.full((300, 300, 3), 128, np.uint8))) == Reason.NO_FACE
    assert _reason(engine, face_bytes("identification1.jpg")) == Reason.MANY_FACES
    strict = RecognitionEngine(
        dataclasses.replace(RecognitionSection(), quality=dataclasses.replace(
            RecognitionSection().quality, max_yaw_deg=30.0),
            # Enrolment has its own (wider) yaw limit: strict there too.
            fusion=dataclasses.replace(RecognitionSection().fusion, enrol_max_yaw_deg=30.0)),
        engine.models)
    assert _reason(strict, face_bytes("detection3.jpg")) == Reason.QUALITY_POSE_YAW
    blurred = cv2.GaussianBlur(face_bgr("obama.jpg"), (0, 0), 12)
    assert _reason(engine, _png(blurred)) in {Reason.QUALITY_BLUR, Reason.NO_FACE}
    dark = (face_bgr("obama.jpg") * 0.1).astype(np.uint8)
    assert _reason(engine, _png(dark)) == Reason.QUALITY_DARK
    with pytest.raises(ImageRejected) as err:
        strict.embed_image_sync(face_bytes("detection3.jpg"))
    assert "yaw" in err.value.message


def test_pipeline_never_raises_on_odd_frames(engine: RecognitionEngine) -> None:
    p = engine.pipeline
    odd = [
        np.zeros((480, 640, 3), np.uint8),
        np.zeros((4, 4, 3), np.uint8),
        cv2.cvtColor(face_bgr("obama.jpg"), cv2.COLOR_BGR2GRAY),
        face_bgr("obama.jpg").astype(np.uint16) * 257,
        face_bgr("obama.jpg").astype(np.float32) / 255.0,
        np.zeros((10, 10, 2), np.uint8),
        np.zeros((5, 5), np.int32),
    ]
    reasons = [p.analyse(f).reason for f in odd]
    assert reasons[0] == Reason.NO_FACE
    assert reasons[1] == Reason.IMAGE_TOO_SMALL
    assert reasons[2] == reasons[3] == reasons[4] == Reason.OK
    assert reasons[5] == reasons[6] == Reason.IMAGE_FORMAT


def test_roi_excludes_faces_outside_it(models: LoadedModels) -> None:
    eng = RecognitionEngine(RecognitionSection(roi=(0.0, 0.0, 0.3, 0.3)), models)
    frame = np.full((480, 640, 3), 90, np.uint8)
    face = cv2.resize(face_bgr("obama.jpg"), (240, 300))
    frame[150:450, 380:620] = face
    assert eng.pipeline.analyse(frame).reason == Reason.OUTSIDE_ROI
    assert dataclasses.replace(RecognitionSection(), roi=(0.0, 0.0, 1.0, 1.0)).roi[2] == 1.0
