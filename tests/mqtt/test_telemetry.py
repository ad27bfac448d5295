"""Telemetry: periodic on the injected clock, redacted, resilient to provider bugs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from facegate.runtime.clock import ManualClock
from facegate.runtime.logs import register_secret
from facegate.runtime.mqtt import MqttLink

from ..fixtures.brokers import BrokerHandle
from .util import load, observe

TOPIC = "facegate/v1/gate-1/telemetry"


@pytest.mark.asyncio
async def test_telemetry_ticks_on_the_clock_and_never_leaks_personal_data(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    register_secret("hunter2-telemetry")
    clock = ManualClock()
    calls = 0

    def snapshot() -> dict[str, object]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("health bug")
        return {
            "uptime_s": clock.monotonic() - 1000.0,
            "queues": {"door": {"depth": 0}},
            "display_name": "Alice Example",
            "embedding": np.ones(128, dtype=np.float32),
            "last_error": "auth failed with hunter2-telemetry",
            "fps": float("nan"),
        }

    loaded = load(tmp_path, broker, telemetry_interval_s=30.0)
    link = MqttLink.from_config(loaded, clock=clock, telemetry=snapshot)
    async with observe(broker, TOPIC) as obs, link:
        await asyncio.wait_for(link.wait_connected(), 10)
        first = await obs.wait_for(lambda s: s.topic == TOPIC)
        await clock.advance(30.0)  # tick 2: the provider raises, nothing is sent
        await clock.advance(30.0)  # tick 3: sent again
        third = await obs.wait_for(lambda s: s.json()["seq"] == 3)
        assert link.state.value == "connected"
    body = first.json()
    assert body["seq"] == 1 and body["device_id"] == "gate-1"
    assert body["uptime_s"] == 0.0 and body["queues"] == {"door": {"depth": 0}}
    assert body["fps"] is None, "non-finite floats become null, keeping the JSON valid"
    assert third.json()["uptime_s"] == 60.0
    assert [s.json()["seq"] for s in obs.messages] == [1, 3]
    for seen in obs.messages:
        assert not seen.retain
        text = seen.payload.decode()
        assert "Alice" not in text and "hunter2-telemetry" not in text
        assert seen.json()["embedding"] == "[redacted]"
        assert seen.json()["display_name"] == "[redacted]"
