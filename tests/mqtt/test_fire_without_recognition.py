"""Whole device (real ``Device`` from the config, recognition configured, real Mosquitto):
the fire input releases the lock with recognition stopped and the event loop stalled, and
``event/door fire_release`` / ``event/security fire_release`` are published once the loop runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from facegate.drivers.gpio import SimulatedGpio
from facegate.runtime.app.device import Device
from facegate.runtime.config import load_config

from ..fixtures.brokers import MosquittoBroker
from .device_util import KEK_ENV, device_config, fresh_kek
from .util import observe

pytestmark = pytest.mark.mosquitto
RELAY, FIRE = 17, 24


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.mark.asyncio
@pytest.mark.timeout(180)
async def test_fire_releases_the_lock_with_recognition_stopped_and_the_loop_stalled(
    tmp_path: Path, mosquitto: MosquittoBroker, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEK_ENV, fresh_kek())
    cfg = device_config(tmp_path, mosquitto, operators={}, cache_dir=model_cache)
    text = cfg.read_text().replace("[gpio]\n", f'[gpio]\nfire_line = {FIRE}\nfire_contact = "no"\n', 1)
    cfg.write_text(text)
    device = Device(load_config(cfg), handle_signals=False)
    async with (
        observe(mosquitto, "facegate/v1/gate-1/event/#", client_id="fire-obs") as obs,
        device,
    ):
        await device.started.wait()
        assert device.parts.recognition is not None
        await asyncio.wait_for(device.parts.recognition.wait_ready(), 120)
        gpio = device.parts.gpio
        assert isinstance(gpio, SimulatedGpio)
        assert gpio.level(RELAY) is False  # fail-secure strike, locked

        # Recognition stopped: its frame task is cancelled (it is configured and was running).
        stopped = [t for t in asyncio.all_tasks() if t.get_name().startswith("recognition.")]
        assert stopped, "recognition is configured and running"
        for task in stopped:
            task.cancel()
        await asyncio.sleep(0.1)

        # The loop stalled (a blocking handler) while the fire panel trips the input.
        seen_in_stall: list[bool] = []

        def fire_panel() -> None:
            time.sleep(0.3)
            gpio.drive_input(FIRE, True)
            time.sleep(0.2)
            seen_in_stall.append(gpio.level(RELAY))  # read while the loop is still blocked

        panel = threading.Thread(target=fire_panel, name="fire-panel")
        panel.start()
        time.sleep(2.0)  # noqa: ASYNC251  # deliberately blocks the event loop: the stall under test
        panel.join()
        assert seen_in_stall == [True]  # released (energised strike) without the loop

        door = await obs.wait_for(
            lambda s: s.topic.endswith("/event/door") and s.json().get("kind") == "fire_release",
            within=60,
        )
        security = await obs.wait_for(
            lambda s: s.topic.endswith("/event/security") and s.json().get("kind") == "fire_release",
            within=60,
        )
        assert door.json()["kind"] == security.json()["kind"] == "fire_release"
        assert gpio.level(RELAY) is True  # still released after the loop resumed
        device.request_shutdown("test over")
