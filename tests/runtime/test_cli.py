"""The CLI: --help everywhere, exit codes 0/1/2, `facegate run` and `facegate demo` as processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from facegate.runtime.app.cli import main
from facegate.runtime.app.cli.demo_cmd import default_config

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


def _demo_config(tmp_path: Path) -> Path:
    demo = (REPO / "firmware-config" / "demo.toml").read_text()
    demo = demo.replace("port = 18830", f"port = {free_port()}")
    # The demo converts models into the user cache (shared with real demo runs).
    return write_config(tmp_path, demo, name="demo.toml")


def test_demo_prints_online_and_offline(tmp_path: Path) -> None:
    proc = subprocess.run(
        [FACEGATE, "demo", "--seconds", "3", "--no-story", "--config", str(_demo_config(tmp_path))],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    status = [line for line in out.splitlines() if line.startswith("[mqtt] status")]
    assert any(": online (version" in line for line in status), out
    assert status[-1].endswith(": offline"), out  # the clean shutdown, seen by the separate client
    assert "stopped (exit 0)" in out
    # The licence a demo vendor key issued on the fly, as the outside subscriber sees it.
    licence = [line for line in out.splitlines() if line.startswith("[mqtt] licence")]
    assert licence and ": VALID licence_id=lic-" in licence[-1] and "max_subjects:100" in licence[-1], out


def test_demo_tells_the_whole_story_through_mqtt(tmp_path: Path) -> None:
    """The README's demo: every outcome is printed as the outside MQTT subscriber got it."""
    proc = subprocess.run(
        [FACEGATE, "demo", "--seconds", "40", "--config", str(_demo_config(tmp_path))],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()

    def after(marker: str) -> list[str]:
        i = next(n for n, line in enumerate(lines) if marker in line)
        return lines[i + 1 :]

    def first_access(marker: str) -> str:
        return next(line for line in after(marker) if line.startswith("[mqtt] event/access:"))

    out = proc.stdout
    assert "[demo] enrolled emp-1001 from an image file" in out
    assert "enrolment of kid-2001 refused" in out and "guardian" in out
    assert "[demo] enrolled kid-2001 from an image file" in out  # after the guardian consented
    assert "enrolment of emp-1003 refused" in out
    assert "GRANTED reason=match subject=emp-1001" in first_access("a known face, live")
    assert "UNKNOWN" in first_access("a face nobody enrolled")
    replay = first_access("a frozen replay")
    assert "DENIED reason=liveness_still subject=-" in replay
    assert "GRANTED reason=match subject=kid-2001" in first_access("the enrolled child")
    assert "kind=erasure subject_id=emp-1001" in out
    assert "UNKNOWN" in first_access("the withdrawn person again")
    assert "[mqtt] event/door: kind=unlocked" in out
    assert "[mqtt] event/security: kind=door_forced" in out
    assert "stopped (exit 0)" in out
    # Privacy: names, photo file names and embeddings never reach MQTT.
    mqtt = "\n".join(line for line in lines if line.startswith("[mqtt]"))
    assert "obama" not in mqtt.lower() and "Family" not in mqtt and "embedding" not in mqtt


def test_demo_default_config_is_the_packaged_copy_of_the_repo_file() -> None:
    assert default_config() == REPO / "runtime" / "demo" / "demo.toml"
    assert default_config().read_bytes() == (REPO / "firmware-config" / "demo.toml").read_bytes()
