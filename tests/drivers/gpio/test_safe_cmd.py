"""``facegate gpio safe`` (the unit's ExecStopPost=): exit codes and what it does to the line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from facegate.drivers.gpio.simchip import physical_level
from facegate.runtime.app.cli import main


def config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "device.toml"
    chip = tmp_path / "chip.json"
    # Secrets and other sections are not read: an unresolvable KEK must not matter here.
    path.write_text(
        '[device]\nid = "gate-1"\n[storage]\nkek_source = "env"\nkek_env = "FACEGATE_NO_SUCH_VAR"\n'
        f'[gpio]\nrelay_line = 17\nsim_chip = "{chip}"\nsim_release = "keep"\n{extra}'
    )
    return path


def test_drives_a_kept_energised_line_safe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chip = tmp_path / "chip.json"
    chip.write_text(json.dumps({"owner": None, "release": "keep", "levels": {"17": True}}))
    assert physical_level(chip, 17) is True
    assert main(["gpio", "safe", "-c", str(config(tmp_path))]) == 0
    assert physical_level(chip, 17) is False
    assert "safe state" in capsys.readouterr().out


def test_old_keys_are_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpio", "safe", "-c", str(config(tmp_path, 'safe_state = "locked"\n'))]) == 2
    err = capsys.readouterr().err
    assert "device.toml: gpio.safe_state" in err and "lock_type" in err
    assert "Traceback" not in err


def test_refuses_while_a_live_device_holds_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = subprocess.Popen(["sleep", "30"])
    try:
        chip = tmp_path / "chip.json"
        chip.write_text(json.dumps({"owner": holder.pid, "release": "keep", "levels": {"17": True}}))
        assert main(["gpio", "safe", "-c", str(config(tmp_path))]) == 1
        assert f"held by process {holder.pid}" in capsys.readouterr().err
        assert physical_level(chip, 17) is True  # untouched: the live device owns it
    finally:
        holder.kill()
        holder.wait()


def test_gate_controller_mode_has_no_relay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpio", "safe", "-c", str(config(tmp_path, 'relay = "none"\n'))]) == 0
    assert "no relay" in capsys.readouterr().out
