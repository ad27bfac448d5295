"""The [camera] config section: types, bounds and cross-field rules through the real loader."""

from __future__ import annotations

from pathlib import Path

import pytest
from facegate.runtime.config.loader import ConfigError, load_config


def _load(tmp_path: Path, camera: str) -> object:
    path = tmp_path / "device.toml"
    path.write_text(f'[device]\nid = "gate-1"\n\n{camera}\n')
    return load_config(path).config.camera


def _error(tmp_path: Path, camera: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, camera)
    return info.value


def test_defaults_are_a_simulated_camera(tmp_path: Path) -> None:
    cam = _load(tmp_path, "")
    assert cam.driver == "simulated"
    assert cam.ir is None


def test_opencv_with_every_source_kind(tmp_path: Path) -> None:
    for raw, expected in [("0", 0), ('"/dev/video2"', "/dev/video2"),
                          ('"rtsp://cam.local/s"', "rtsp://cam.local/s"), ('"clip.avi"', "clip.avi")]:
        cam = _load(tmp_path, f'[camera]\ndriver = "opencv"\nsource = {raw}\nfps = 30\nwidth = 1280\n'
                              'height = 720\nreconnect_base_s = 0.2\nreconnect_cap_s = 5\n')
        assert cam.source == expected
        assert (cam.fps, cam.width, cam.height) == (30.0, 1280, 720)


def test_ir_subsection(tmp_path: Path) -> None:
    cam = _load(tmp_path, '[camera]\ndriver = "opencv"\nsource = 0\n\n[camera.ir]\nsource = 1\n'
                          "pair_tolerance_s = 0.02\n")
    assert cam.ir.source == 1
    assert cam.ir.pair_tolerance_s == 0.02


@pytest.mark.parametrize(
    ("camera", "key"),
    [
        ('[camera]\ndriver = "opencv"\n', "camera.source"),
        ('[camera]\ndriver = "opencv"\nsource = 0\nimages = ["a.jpg"]\n', "camera.images"),
        ('[camera]\nsource = 0\n', "camera.source"),
        ('[camera]\nimages = ["a.jpg"]\nvideo = "b.avi"\n', "camera.video"),
        ('[camera]\ndriver = "opencv"\nsource = 0\n[camera.ir]\nfps = 10\n', "camera.ir.source"),
        ('[camera]\n[camera.ir]\nsource = 1\n', "camera.ir.source"),
        ('[camera]\ndriver = "opencv"\nsource = -1\n', "camera.source"),
        ('[camera]\ndriver = "opencv"\nsource = "  "\n', "camera.source"),
        ('[camera]\nread_timeout_s = 5\nstall_timeout_s = 1\n', "camera.stall_timeout_s"),
        ('[camera]\nreconnect_base_s = 5\nreconnect_cap_s = 1\n', "camera.reconnect_cap_s"),
        ('[camera]\ndriver = "usb"\n', "camera.driver"),
        ('[camera]\nfps = 0\n', "camera.fps"),
        ('[camera]\ndriver = "opencv"\nsource = 0\n[camera.ir]\nsource = 1\npair_tolerance_s = 9\n',
         "camera.ir.pair_tolerance_s"),
    ],
)
def test_invalid_sections_name_the_key(tmp_path: Path, camera: str, key: str) -> None:
    err = _error(tmp_path, camera)
    assert err.key == key, err


def test_relative_media_paths_follow_the_config_file(tmp_path: Path) -> None:
    cam = _load(tmp_path, '[camera]\nimages = ["faces/a.jpg"]\n')
    assert cam.images == (tmp_path.resolve() / "faces" / "a.jpg",)
