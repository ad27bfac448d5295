"""Health snapshots: JSON-ready, counts only, dropped frames from latest-wins queues and sources."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from facegate.runtime.app.supervisor import Supervisor
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import ManualClock
from facegate.runtime.events import FrameCaptured
from facegate.runtime.health import HealthMonitor


class Idle:
    name = "idle"

    async def run(self) -> None:
        await asyncio.Event().wait()


@pytest.mark.asyncio
async def test_snapshot_contents() -> None:
    clock = ManualClock()
    bus = EventBus()
    sup = Supervisor(clock=clock, bus=bus)
    sup.add(Idle())
    health = HealthMonitor(clock=clock, bus=bus, supervisor=sup, device_id="gate-1")
    health.register("camera", lambda: {"frames_dropped": 4, "fps": 14.5})
    health.register("broken", lambda: 1 / 0)
    async with sup, bus.subscribe(FrameCaptured, name="recognition", maxsize=1):
        for i in range(3):
            bus.publish(
                FrameCaptured(
                    at=0.0, image=np.zeros((2, 2, 3), np.uint8), seq=i, source="s", monotonic=0.0
                )
            )
        await asyncio.sleep(0)
        await clock.advance(3.25)
        snap = health.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert snap["uptime_s"] == 3.25
    assert snap["tasks"] == {
        "idle": {"state": "running", "restarts": 0, "crashes": 0, "last_error": None, "failing": False}
    }
    assert snap["frames_dropped"] == {"queue:recognition": 2, "camera": 4}
    assert snap["sources"]["broken"] == {"error": "ZeroDivisionError"}
    assert snap["bus_published"] == 4  # 3 frames + the idle service's "running" state change
    assert snap["version"] == "0.1.0"
