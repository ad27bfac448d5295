"""Reconnect after the broker is stopped and started again on the same port (both brokers)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.events import ComponentStateChanged
from facegate.runtime.mqtt import InboundMessage, LinkState, MqttLink
from structlog.testing import capture_logs

from ..fixtures.brokers import BrokerHandle
from .util import load, observe, status_is, until


@pytest.mark.asyncio
async def test_reconnect_republishes_birth_and_logs_each_change_once(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    loaded = load(tmp_path, broker, reconnect_min_s=0.05, reconnect_max_s=0.2)
    bus = EventBus()
    received: list[InboundMessage] = []

    async def on_cmd(msg: InboundMessage) -> None:
        received.append(msg)

    async with bus.subscribe(ComponentStateChanged, name="t", maxsize=64) as sub:
        with capture_logs() as logs:
            link = MqttLink.from_config(loaded, clock=SystemClock(), bus=bus)
            await link.subscribe("facegate/v1/gate-1/cmd/+", on_cmd)
            async with link:
                await asyncio.wait_for(link.wait_connected(), 10)
                async with observe(broker, client_id="first") as obs:
                    first = (await obs.wait_for(status_is("online"))).json()
                await broker.astop()
                await until(lambda: link.state is LinkState.RECONNECTING)
                # Several attempts fail while the broker is down (max delay 0.2 s).
                await asyncio.sleep(1.5)
                assert link.state is LinkState.RECONNECTING
                await broker.astart()
                await asyncio.wait_for(link.wait_connected(), 10)
                assert link.connection_number == 2
                async with observe(broker, client_id="second") as obs:
                    again = await obs.wait_for(
                        lambda s: status_is("online")(s)
                        and s.json()["connected_at"] != first["connected_at"]
                    )
                    assert again.json()["started_at"] == first["started_at"]
                # Subscriptions survive the broker restart (clean sessions: re-subscribed).
                async with aiomqtt.Client(broker.host, broker.port, identifier="op") as op:
                    await op.publish("facegate/v1/gate-1/cmd/ping", b"{}", qos=1)
                await until(lambda: bool(received), within=5)
        states = []
        while (ev := sub.get_nowait()) is not None:
            states.append(ev.state)

    assert received[0].topic == "facegate/v1/gate-1/cmd/ping"
    assert states == [
        "connecting", "connected", "reconnecting", "connected", "closing", "closed"
    ]
    changes = [e for e in logs if e["event"] == "mqtt.link.state"]
    assert [e["new"] for e in changes] == states, "each change is logged exactly once"
    lost = [e for e in changes if e["new"] == "reconnecting"]
    assert len(lost) == 1 and lost[0]["log_level"] == "warning"
    restored = changes[3]
    assert restored["attempts"] >= 3, "retries happened but were not logged one by one"
    assert restored["down_s"] > 1.0
    assert not [e for e in logs if e["log_level"] in {"warning", "error"} and e is not lost[0]]
