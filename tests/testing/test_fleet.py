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
