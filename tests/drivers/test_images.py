"""The one image module (drivers/images.py): one set of limits for every caller, clear refusals."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from facegate.drivers import images
from facegate.drivers.camera import decode_image_file
from facegate.drivers.camera.errors import CameraSourceError, FrameFormatError
from facegate.drivers.camera.frames import to_bgr8 as camera_to_bgr8
from facegate.drivers.images import MAX_ENCODED_BYTES, MAX_PIXELS, MIN_SIDE, ImageError, ImageProblem
from facegate.handlers.recognition import ImageRejected, Reason
from facegate.handlers.recognition.image import decode_image as recognition_decode
from facegate.handlers.recognition.image import to_bgr8 as recognition_to_bgr8


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height``: must be refused before any full decode."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00\x00\x00\x00IEND\xaeB`\x82"


def test_problem_codes_are_recognition_reason_codes() -> None:
    for problem in ImageProblem:
        assert Reason(problem.value).value == problem.value


def test_a_decompression_bomb_is_refused_by_the_header_everywhere(tmp_path: Path) -> None:
    bomb = _png_header_only(20_000, 20_000)  # 400 Mpx claimed in a few dozen bytes
    with pytest.raises(ImageError) as err:
        images.decode_image(bomb)
    assert err.value.problem is ImageProblem.TOO_LARGE and str(MAX_PIXELS) in err.value.message
    with pytest.raises(ImageRejected) as rejected:
        recognition_decode(bomb, max_bytes=10**9, max_pixels=10**12)  # a caller cannot raise the limit
    assert rejected.value.reason_code == Reason.IMAGE_TOO_LARGE
    path = tmp_path / "Jane Doe.png"
    path.write_bytes(bomb)
    with pytest.raises(FrameFormatError) as frame_err:
        decode_image_file(path)
    assert "Jane" not in str(frame_err.value)


def test_encoded_size_ceiling_cannot_be_raised_by_a_caller() -> None:
    with pytest.raises(ImageError) as err:
        images.decode_image(bytes(MAX_ENCODED_BYTES + 1), max_bytes=10 * MAX_ENCODED_BYTES)
    assert err.value.problem is ImageProblem.TOO_LARGE
    small = _png(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ImageError, match="limit 100"):
        images.decode_image(small, max_bytes=100)


def test_one_minimum_side_for_frames_files_and_photos(tmp_path: Path) -> None:
    too_small = np.zeros((MIN_SIDE - 1, 64, 3), np.uint8)
    just_right = np.zeros((MIN_SIDE, MIN_SIDE, 3), np.uint8)
    with pytest.raises(FrameFormatError, match="min 16x16"):
        camera_to_bgr8(too_small)
    with pytest.raises(ImageRejected) as err:
        recognition_to_bgr8(too_small)
    assert err.value.reason_code == Reason.IMAGE_TOO_SMALL
    with pytest.raises(ImageRejected) as err:
        recognition_decode(_png(too_small))
    assert err.value.reason_code == Reason.IMAGE_TOO_SMALL
    path = tmp_path / "small.png"
    path.write_bytes(_png(too_small))
    with pytest.raises(FrameFormatError):
        decode_image_file(path)
    assert camera_to_bgr8(just_right).shape == (16, 16, 3)
    assert recognition_decode(_png(just_right)).shape == (16, 16, 3)


def test_truncated_and_junk_files_are_corrupt_with_no_name_in_the_message(tmp_path: Path) -> None:
    ok, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))
    assert ok
    cut = buf.tobytes()[: len(buf) // 2]
    with pytest.raises(ImageError) as err:
        images.decode_image(cut)
    assert err.value.problem is ImageProblem.CORRUPT
    path = tmp_path / "John Smith.jpg"
    path.write_bytes(cut)
    with pytest.raises(CameraSourceError) as cam_err:
        decode_image_file(path)
    assert cam_err.value.path == path and "John" not in str(cam_err.value)


def test_camera_frames_are_read_only_copies_and_recognition_frames_are_not_copied() -> None:
    src = np.zeros((20, 30, 3), np.uint8)
    frame = camera_to_bgr8(src)
    assert not frame.flags.writeable and not np.shares_memory(frame, src)
    assert recognition_to_bgr8(src) is src  # the pipeline's hot path: usable frames pass as they are
    floats = recognition_to_bgr8(np.full((20, 30, 3), 0.5, np.float32))
    assert int(floats[0, 0, 0]) == 127
    with pytest.raises(FrameFormatError, match="pixel type"):
        camera_to_bgr8(np.zeros((20, 30, 3), np.float32))  # cameras deliver integers only
