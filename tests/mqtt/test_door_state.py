"""The retained door/state topic and the Home Assistant door and fire binary sensors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from facegate.drivers.gpio import SimulatedGpio
from facegate.handlers.commands import first_error
from facegate.runtime.app.device import Device
from facegate.runtime.clock import SystemClock
from facegate.runtime.config import load_config

from ..fixtures.brokers import MosquittoBroker
from .util import Seen, observe, until, write_config

pytestmark = pytest.mark.mosquitto
STATE = "facegate/v1/gate-1/door/state"
FIRE = 24


def state_is(**want: object) -> Callable[[Seen], bool]:
    def check(seen: Seen) -> bool:
        return bool(seen.topic == STATE and all(seen.json().get(k) == v for k, v in want.items()))

    return check


@pytest.mark.asyncio
async def test_door_state_is_retained_and_ha_sees_door_and_fire(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    path = write_config(tmp_path, mosquitto)
    path.write_text(
        path.read_text()
        + "\n[lifecycle]\nwatchdog = false\n"
        + f"\n[gpio]\ndoor_sensor_line = 22\nfire_line = {FIRE}\ninput_min_pulse_ms = 0\n"
        + "\n[homeassistant]\ndiscovery = true\n"
    )
    device = Device(load_config(path), clock=SystemClock(), handle_signals=False)
    async with observe(mosquitto, "facegate/v1/gate-1/door/#", client_id="ds") as obs, device:
        gpio = device.parts.gpio
        assert isinstance(gpio, SimulatedGpio)
        door = device.parts.door
        await obs.wait_for(state_is(lock="locked", door="closed", fire="normal"), within=30)
        await door.open("test")
        await obs.wait_for(state_is(lock="unlocked"), within=30)
        gpio.drive_input(22, True)
        await obs.wait_for(state_is(door="open"), within=30)
        gpio.drive_input(FIRE, True)
        await obs.wait_for(state_is(fire="active", lock="unlocked"), within=30)
        assert device.parts.mqtt is not None and device.parts.mqtt.homeassistant is not None
        ha_service = device.parts.mqtt.homeassistant
        await until(lambda: ha_service.published_for > 0, within=30)
    for seen in obs.messages:
        assert seen.retain or seen.topic == STATE
        assert set(seen.json()) == {"lock", "door", "fire", "lockdown"}  # no identifiers
        assert first_error("door_state", seen.json()) is None
    # A subscriber that starts later (Home Assistant after its restart) gets the last state.
    async with observe(mosquitto, STATE, client_id="ha-late") as late:
        last = await late.wait_for(lambda s: s.topic == STATE, within=10)
    assert last.retain and last.json()["fire"] == "active" and last.json()["door"] == "open"
    async with observe(mosquitto, "homeassistant/binary_sensor/#", client_id="ha-bs") as ha:
        await until(lambda: len(ha.messages) >= 2, within=60)
        await ha.settle()
    configs = {json.loads(m.payload)["device_class"]: json.loads(m.payload) for m in ha.messages}
    assert configs["door"]["state_topic"] == STATE
    assert configs["safety"]["state_topic"] == STATE
