"""SIGKILL of a whole device mid-pulse, for both kernel release models, then the stop hook.

The device is a real ``facegate run -c`` subprocess whose simulated GPIO chip
is a file (:mod:`facegate.drivers.gpio.simchip`) modelling the kernel: when
the holder dies the line either reverts to its default (low) or keeps its
level (Raspberry Pi). A signed ``open`` energises the fail-secure strike for
``unlock_s = 60``; the device is killed mid-pulse; then ``facegate gpio
safe`` runs exactly as the systemd unit's ``ExecStopPost=`` does.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from facegate.drivers.gpio.simchip import holder, physical_level

from ..fixtures.brokers import MosquittoBroker
from .device_util import KEK_ENV, device_config, fresh_kek, signed
from .test_device_kill import DeviceProcess, wait_commands_ready

pytestmark = pytest.mark.mosquitto
ALICE = Ed25519PrivateKey.generate()
BASE = "facegate/v1/gate-1"
RELAY = 17
UNIT = Path(__file__).resolve().parents[2] / "firmware-config" / "facegate.service"


def stop_hook_command(config: Path) -> list[str]:
    """The unit's ExecStopPost= line, pointed at this venv and this config."""
    line = next(x for x in UNIT.read_text().splitlines() if x.startswith("ExecStopPost="))
    args = line.removeprefix("ExecStopPost=").split()
    assert args[1:4] == ["gpio", "safe", "--config"], line
    return [sys.executable, "-m", "facegate.runtime.app.cli", "gpio", "safe", "--config", str(config)]


async def wait_for(cond: Callable[[], bool], within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while not cond():  # noqa: ASYNC110  # polling a file written by another process
            await asyncio.sleep(0.02)


@pytest.mark.asyncio
@pytest.mark.timeout(180)
@pytest.mark.parametrize("release", ["revert", "keep"])
async def test_sigkill_mid_pulse_then_stop_hook_leaves_the_strike_locked(
    tmp_path: Path, mosquitto: MosquittoBroker, release: str
) -> None:
    config = device_config(
        tmp_path, mosquitto, operators={"alice": ALICE}, cache_dir=None, recognition=False
    )
    chip = tmp_path / "gpiochip.json"
    text = config.read_text()
    text = text.replace(
        "[gpio]\n", f'[gpio]\nsim_chip = "{chip}"\nsim_release = "{release}"\n', 1
    )
    text = re.sub(r"unlock_s = [0-9.]+", "unlock_s = 60.0", text)
    config.write_text(text)
    env = dict(os.environ) | {KEK_ENV: fresh_kek()}
    device = DeviceProcess(config, env, tmp_path / "device.log")
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="gate-kill") as client:
            device.start()
            assert device.proc is not None
            await wait_commands_ready(client)
            assert holder(chip) == device.proc.pid
            assert physical_level(chip, RELAY) is False  # fail-secure strike: locked
            await client.publish(f"{BASE}/cmd/open", signed("open", {}, ALICE, "alice"), qos=1)
            await wait_for(lambda: physical_level(chip, RELAY) is True)  # energised: unlocked
            await asyncio.to_thread(device.kill)  # SIGKILL mid-pulse (59 s left)
    finally:
        await asyncio.to_thread(device.stop)

    assert holder(chip) is None
    after_kill = physical_level(chip, RELAY)
    # What the kernel did: revert -> the default (low: locked); keep -> still energised.
    assert after_kill is (release == "keep")

    hook = await asyncio.to_thread(
        subprocess.run, stop_hook_command(config), capture_output=True, text=True, timeout=60
    )
    assert hook.returncode == 0, hook.stderr
    assert physical_level(chip, RELAY) is False, "ExecStopPost must leave the strike locked"
    print(f"[gate-kill] release={release}: after SIGKILL relay energised={after_kill}, after hook=False")
