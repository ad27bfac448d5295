"""Classifying sources, masking URL credentials, and normalising frames."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from facegate.drivers.camera import (
    CameraSourceError,
    FrameFormatError,
    IrPairer,
    SourceKind,
    parse_source,
    redact_url,
    to_bgr8,
)
from facegate.drivers.camera.bench import main as bench_main
from facegate.drivers.camera.frames import CapturedFrame, decode_image_file, letterbox


def test_parse_device_file_and_url() -> None:
    assert parse_source(0).kind is SourceKind.DEVICE
    assert parse_source("3").location == 3
    dev = parse_source("/dev/video4")
    assert (dev.kind, dev.location, dev.api) == (SourceKind.DEVICE, 4, cv2.CAP_V4L2)
    f = parse_source("/data/clip.avi")
    assert (f.kind, f.api, f.paced) == (SourceKind.FILE, cv2.CAP_FFMPEG, True)
    u = parse_source("rtsp://admin:hunter22@10.0.0.9:554/live?token=abc123")
    assert (u.kind, u.api, u.paced) == (SourceKind.URL, cv2.CAP_FFMPEG, False)
    assert "hunter22" not in u.label and "abc123" not in u.label
    assert u.location == "rtsp://admin:hunter22@10.0.0.9:554/live?token=abc123"


@pytest.mark.parametrize("bad", [None, -1, "", "   ", "/dev/sda", True])
def test_unusable_sources_are_typed_errors(bad: object) -> None:
    with pytest.raises(CameraSourceError):
        parse_source(bad)


def test_redact_url() -> None:
    assert redact_url("http://u:p@h:81/a?x=1") == "http://***@h:81/a"
    assert redact_url("http://h/a") == "http://h/a"


def test_to_bgr8_converts_grey_bgra_and_16_bit() -> None:
    grey = np.full((20, 30), 7, np.uint8)
    out = to_bgr8(grey)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8 and not out.flags.writeable
    assert to_bgr8(np.zeros((20, 30, 4), np.uint8)).shape == (20, 30, 3)
    deep = to_bgr8(np.full((20, 30, 3), 0xABCD, np.uint16))
    assert deep.dtype == np.uint8 and int(deep[0, 0, 0]) == 0xAB
    src = np.zeros((20, 30, 3), np.uint8)
    copy = to_bgr8(src)
    src[:] = 255
    assert int(copy.max()) == 0 and src.flags.writeable  # a copy; the caller's array untouched


@pytest.mark.parametrize(
    "bad",
    [np.zeros((20, 30, 2), np.uint8), np.zeros((20, 30, 3), np.float32), np.zeros((4, 4, 3), np.uint8),
     np.zeros((2, 20, 30, 3), np.uint8), [[1, 2], [3, 4]]],
)
def test_to_bgr8_rejects_unusable_arrays(bad: object) -> None:
    with pytest.raises(FrameFormatError):
        to_bgr8(bad)


def test_decode_image_file_errors(tmp_path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all" * 50)
    for name in ["missing.jpg", "empty.jpg", "junk.jpg"]:
        with pytest.raises(CameraSourceError) as info:
            decode_image_file(tmp_path / name)
        assert info.value.path == tmp_path / name
        assert name not in str(info.value)  # file names may be people's names: kept out of messages


def test_letterbox_keeps_aspect() -> None:
    tall = np.full((1000, 500, 3), 200, np.uint8)
    out = letterbox(tall, 640, 480)
    assert out.shape == (480, 640, 3)
    assert int(out[240, 320, 0]) == 200 and int(out[240, 0, 0]) == 114  # centred, grey bars


def _frame(t: float, seq: int = 0) -> CapturedFrame:
    return CapturedFrame(image=np.full((8, 8, 3), seq, np.uint8), seq=seq, monotonic=t, wall=t)


def test_ir_pairer_takes_nearest_within_tolerance() -> None:
    pairer = IrPairer(0.03)
    for i, t in enumerate([10.00, 10.04, 10.08]):
        pairer.add(_frame(t, i))
    got = pairer.match(10.05)
    assert got is not None and int(got[0, 0, 0]) == 1
    assert pairer.match(10.20) is None  # 0.12 s from the nearest
    assert (pairer.paired, pairer.unpaired) == (1, 1)
    pairer.clear()
    assert pairer.match(10.04) is None


def test_bench_runs_and_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--seconds", "0.3", "--json"]) == 0
    # the last line is the JSON object (log lines may precede it: logging is not configured here)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"published_fps", "handoff_ms_p50", "dropped", "jitter_warp_ms_p50"} <= set(out)
