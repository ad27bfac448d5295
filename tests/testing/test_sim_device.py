"""Whole-device tests on the public facegate.testing plugin (the fixtures a gate-controller developer uses).

Real broker (Mosquitto when installed), real store, models and pipeline; only
camera frames and GPIO lines are simulated. Everything is observed by the
outside ``mqtt_probe``, whose payloads are schema-checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from facegate.policy.errors import ConsentRequiredError
from facegate.testing import MqttProbe, ProbeError, SimDevice
from facegate.testing.plugin import SimDeviceFactory

FACES = Path(__file__).resolve().parents[1] / "data" / "faces"


@pytest.mark.asyncio
async def test_enrolled_face_is_granted_and_the_relay_pulses(
    sim_device_factory: SimDeviceFactory, mqtt_probe: MqttProbe
) -> None:
    dev = await sim_device_factory(device_id="gate-1", unlock_s=30.0)
    await mqtt_probe.expect("status", state="online", timeout=60)
    assert await dev.enroll("emp-7", FACES / "obama.jpg") == 1
    await dev.show_face(FACES / "obama2.jpg")
    access = await mqtt_probe.expect("event/access", decision="granted", timeout=60)
    assert access["subject_id"] == "emp-7"
    door = await mqtt_probe.expect("event/door", kind="unlocked", timeout=30)
    assert door["cause"] == f"decision:{access['event_id']}"
    await dev.clear_view()
    assert dev.relay.released and len(dev.relay.pulses) == 1
    # The injected clock: jump past unlock_s (30 s) and the lock is back at once.
    await dev.clock.advance(30.5)
    await mqtt_probe.expect("event/door", kind="locked", timeout=10)
    assert not dev.relay.released
    (pulse,) = dev.relay.pulses
    assert pulse.seconds is not None and pulse.seconds >= 30.0
    assert mqtt_probe.schema_errors == []


@pytest.mark.asyncio
async def test_unknown_face_never_opens_the_door(sim_device: SimDevice, mqtt_probe: MqttProbe) -> None:
    await sim_device.enroll("emp-7", FACES / "obama.jpg")
    await sim_device.show_face(FACES / "biden.jpg")
    await sim_device.clear_view()
    access = await mqtt_probe.expect("event/access", decision="unknown", timeout=60)
    assert access["subject_id"] is None
    await mqtt_probe.never("event/door", kind="unlocked", within=1)
    assert sim_device.relay.pulses == []
    with pytest.raises(ProbeError):
        await mqtt_probe.expect("event/access", decision="granted", timeout=0.5)


@pytest.mark.asyncio
async def test_enrolment_without_consent_is_refused(sim_device: SimDevice) -> None:
    with pytest.raises(ConsentRequiredError):
        await sim_device.enroll("emp-9", FACES / "obama.jpg", consent=False)


@pytest.mark.asyncio
async def test_signed_command_and_forced_door(sim_device: SimDevice, mqtt_probe: MqttProbe) -> None:
    licence = await mqtt_probe.expect("licence", state="valid", timeout=30)  # the test licence
    assert licence["expires"]
    reply = await sim_device.command("ping")
    assert reply["ok"] is True, reply
    await sim_device.door.open()
    await mqtt_probe.expect("event/door", kind="forced", timeout=30)
    await mqtt_probe.expect("event/security", kind="door_forced", timeout=30)
    await sim_device.door.close()


@pytest.mark.asyncio
async def test_factory_runs_several_devices_on_one_broker(
    sim_device_factory: SimDeviceFactory, mqtt_probe: MqttProbe
) -> None:
    a = await sim_device_factory(device_id="gate-a", recognition=False)
    b = await sim_device_factory(device_id="gate-b", recognition=False)
    for dev in (a, b):
        await mqtt_probe.expect("status", device=dev.id, state="online", timeout=60)
    await b.door.open()
    await mqtt_probe.expect("event/door", device="gate-b", kind="forced", timeout=30)
    await mqtt_probe.never("event/door", device="gate-a", kind="forced", within=0.5)
