"""The CLI: --help everywhere, exit codes 0/1/2, `facegate run` and `facegate demo` as processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from facegate.runtime.cli import main
from facegate.runtime.cli.demo_cmd import default_config

from tests.fixtures.brokers import free_port

from .util import MINIMAL, write_config

REPO = Path(__file__).resolve().parents[2]
FACEGATE = str(Path(sys.executable).parent / "facegate")


@pytest.mark.parametrize(
    "argv",
    [[], ["run"], ["demo"], ["config"], ["config", "check"], ["config", "example"], ["version"]],
)
def test_help_on_every_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    assert "usage: facegate" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run"])  # --config is required
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["demo", "--seconds", "-1"])
    assert info.value.code == 2
    capsys.readouterr()


def test_run_config_errors_exit_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml" in capsys.readouterr().err
    bad = write_config(tmp_path, MINIMAL + "[lifecycle]\nshutdown_grace = 3\n")
    assert main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "lifecycle.shutdown_grace" in err


def _device_config(port: int, extra: str = "") -> str:
    return (
        MINIMAL
        + f'[mqtt]\nbroker = "embedded"\nport = {port}\nprotocol = "3.1.1"\n'
        + '[logging]\nformat = "json"\n[lifecycle]\nshutdown_grace_s = 3.0\n'
        + '[gpio]\nrelay_line = 17\ndoor_sensor_line = 22\n'
        + extra
    )


def test_runtime_failure_exits_1(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        _device_config(free_port()).replace(
            "[gpio]\n", f'[gpio]\ndriver = "gpiod"\nchip = "{tmp_path / "gpiochip7"}"\n'
        ),
    )
    proc = subprocess.run(
        [FACEGATE, "run", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 1, proc.stderr
    # Without the optional gpiod package the error names the extra, with it the chip.
    assert "gpiochip7" in proc.stderr or "facegate[gpio]" in proc.stderr
    assert "Traceback" not in proc.stderr


def _wait_for(proc: subprocess.Popen[str], needle: str, deadline_s: float = 30.0) -> str:
    seen = ""
    end = time.monotonic() + deadline_s
    assert proc.stderr is not None
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not seen in:\n{seen}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_cleanly_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    cfg = write_config(tmp_path, _device_config(free_port()))
    proc = subprocess.Popen(
        [FACEGATE, "run", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(proc, '"device.started"')
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert '"forced": false' in err
    assert '"device.stopped"' in err


def test_demo_prints_online_and_offline(tmp_path: Path) -> None:
    demo = (REPO / "firmware-config" / "demo.toml").read_text()
    port = free_port()
    cfg = write_config(tmp_path, demo.replace("port = 18830", f"port = {port}"), name="demo.toml")
    proc = subprocess.run(
        [FACEGATE, "demo", "--seconds", "3", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "facegate/v1/demo-gate/status" in out
    assert '"state":"online"' in out
    assert '"state":"offline"' in out  # the clean shutdown, seen by the separate client
    assert "stopped (exit 0)" in out


def test_demo_default_config_is_the_repo_file() -> None:
    assert default_config() == REPO / "firmware-config" / "demo.toml"
