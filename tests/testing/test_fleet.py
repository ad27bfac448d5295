"""The fleet simulator: several real devices on one broker, scripted scenes, schema-valid events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from facegate.testing import BrokerInfo, MqttProbe
from facegate.testing.broker import MosquittoProcess, mosquitto_binary
from facegate.testing.fleet import FleetOptions, run_fleet
from facegate.testing.probe import Received


def probe_ids(messages: list[Received]) -> set[str]:
    """Event ids of the access events the probe received (de-duplicated)."""
    return {m.json()["event_id"] for m in messages if m.suffix == "event/access"}


FACEGATE = str(Path(sys.executable).parent / "facegate")


@pytest.mark.asyncio
async def test_fleet_streams_schema_valid_events(
    mqtt_broker: BrokerInfo, mqtt_probe: MqttProbe, tmp_path: Path
) -> None:
    opts = FleetOptions(devices=4, rate=2.0, seconds=4.0, seed=7)
    stats = await run_fleet(mqtt_broker, tmp_path, opts)
    summary = stats.summary()
    assert summary["devices"] == 4 and summary["scenes"] > 0
    assert summary["by_topic"].get("event/access", 0) > 0
    assert summary["by_topic"].get("event/door", 0) > 0
    assert summary["e2e_ms_p95"] is not None
    seen = {m.device_id for m in mqtt_probe.messages if m.suffix == "event/access"}
    assert seen <= {f"sim-{i:04d}" for i in range(4)} and len(seen) >= 2
    assert mqtt_probe.schema_errors == []
    # Every device said online (retained status) and offline at the end.
    for i in range(4):
        await mqtt_probe.expect("status", device=f"sim-{i:04d}", state="online", timeout=5)


def test_simulate_cli_in_two_processes(tmp_path: Path) -> None:
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    broker = MosquittoProcess(binary, tmp_path / "broker")
    broker.start()
    try:
        proc = subprocess.run(
            [FACEGATE, "simulate", "--devices", "4", "--procs", "2", "--broker", f"127.0.0.1:{broker.port}",
             "--seconds", "4", "--rate", "2", "--json"],
            capture_output=True, text=True, timeout=240, check=False,
        )
    finally:
        broker.stop()
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["devices"] == 4 and summary["procs"] == 2 and summary["events"] > 0


def test_simulate_rejects_a_bad_endpoint() -> None:
    proc = subprocess.run([FACEGATE, "simulate", "--broker", "nohost"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2 and "HOST:PORT" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.asyncio
async def test_fleet_devices_ride_out_broker_losses(
    mqtt_broker: BrokerInfo, mqtt_probe: MqttProbe, tmp_path: Path
) -> None:
    """Each device's uplink dies now and then; the outbox delivers what it held, nothing is lost."""
    opts = FleetOptions(devices=3, rate=2.0, seconds=6.0, seed=3, broker_loss_every_s=1.5, broker_loss_s=1.0)
    stats = await run_fleet(mqtt_broker, tmp_path, opts)
    summary = stats.summary()
    assert summary["broker_losses"] >= 2, summary
    # The wills fired (connections died without DISCONNECT) and the devices came back online.
    statuses = [m.json() for m in mqtt_probe.messages if m.suffix == "status"]
    assert any(s.get("reason") == "connection_lost" for s in statuses), statuses
    # Every access decision the devices made arrived (ids de-duplicated: at least once). The run
    # ends once the fleet's own collector has them all (or its 60 s drain limit passed); the probe
    # is a second subscriber, so wait on the same condition for it, with a generous limit.
    assert stats.sent_access and summary["access_missing"] == 0, summary
    sent = set(stats.sent_access)

    await mqtt_probe.wait_until(lambda ms: sent <= probe_ids(ms), timeout=30)
    assert sent <= probe_ids(mqtt_probe.messages), sorted(sent - probe_ids(mqtt_probe.messages))
    assert mqtt_probe.schema_errors == []


@pytest.mark.asyncio
async def test_fleet_devices_ride_out_camera_losses(
    mqtt_broker: BrokerInfo, mqtt_probe: MqttProbe, tmp_path: Path
) -> None:
    """Each device's camera source fails now and then: it says so (reconnecting, then streaming),
    nobody is recognised meanwhile, and everything it did decide still arrives."""
    opts = FleetOptions(devices=3, rate=3.0, seconds=6.0, seed=5, camera_loss_every_s=1.0, camera_loss_s=1.0)
    stats = await run_fleet(mqtt_broker, tmp_path, opts)
    summary = stats.summary()
    assert summary["camera_losses"] >= 2 and summary["unseen"] >= 1, summary
    # Every completed loss cycle: the camera published reconnecting, then streaming, per device.
    for dev in {d for d, _ in stats.camera_states}:
        states = [s for d, s in stats.camera_states if d == dev]
        assert states and states == ["reconnecting", "streaming"] * (len(states) // 2), states
    assert len(stats.camera_states) >= 2, stats.camera_states
    # Decisions made while the camera worked all arrived; none were made while it was lost.
    assert stats.sent_access and summary["access_missing"] == 0, summary
    sent = set(stats.sent_access)
    await mqtt_probe.wait_until(lambda ms: sent <= probe_ids(ms), timeout=30)
    ids = probe_ids(mqtt_probe.messages)
    assert set(stats.sent_access) <= ids
    assert summary["scenes"] >= len(stats.sent_access) + summary["unseen"]
    assert mqtt_probe.schema_errors == []
