"""Presence: retained birth, clean offline, state events, outside clients (both brokers)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from facegate.runtime import __version__
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.events import ComponentStateChanged
from facegate.runtime.mqtt import LinkState, MqttLink

from ..fixtures.brokers import BrokerHandle, MosquittoBroker, mosquitto_client
from .util import load, observe, status_is

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _drain(sub: object) -> list[str]:
    states = []
    while (ev := sub.get_nowait()) is not None:  # type: ignore[attr-defined]
        states.append(ev.state)
    return states


@pytest.mark.asyncio
async def test_birth_is_retained_and_seen_by_a_fresh_subscriber(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    loaded = load(tmp_path, broker)
    bus = EventBus()
    clock = SystemClock()
    async with bus.subscribe(ComponentStateChanged, name="t", maxsize=64) as sub:
        link = MqttLink.from_config(loaded, clock=clock, bus=bus)
        assert link.state is LinkState.IDLE
        async with link:
            await asyncio.wait_for(link.wait_connected(), 10)
            async with observe(broker, client_id="fresh") as obs:
                seen = await obs.wait_for(status_is("online"))
        assert link.state is LinkState.CLOSED
        states = _drain(sub)
    assert seen.retain, "a subscriber that arrives later must get the status as retained"
    body = seen.json()
    assert body["device_id"] == "gate-1"
    assert body["site"] == "Building 7"
    assert body["version"] == __version__
    assert body["config_digest"] == loaded.digest
    assert RFC3339.match(body["started_at"]) and RFC3339.match(body["connected_at"])
    assert states == ["connecting", "connected", "closing", "closed"]


@pytest.mark.asyncio
async def test_clean_shutdown_publishes_retained_offline(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    loaded = load(tmp_path, broker)
    async with observe(broker, client_id="watcher") as live:
        async with MqttLink.from_config(loaded, clock=SystemClock()) as link:
            await asyncio.wait_for(link.wait_connected(), 10)
            await live.wait_for(status_is("online"))
        offline = await live.wait_for(status_is("offline"), within=5)
    assert offline.json()["reason"] == "shutdown", "the device said goodbye itself, not the will"
    async with observe(broker, client_id="late") as late:
        retained = await late.wait_for(status_is("offline"))
    assert retained.retain and retained.json()["reason"] == "shutdown"


async def _mosquitto_sub_one(broker: BrokerHandle, protocol: str) -> tuple[str, dict[str, object]]:
    exe = mosquitto_client("mosquitto_sub")
    assert exe is not None, "mosquitto_sub is installed with mosquitto (mosquitto-clients)"
    version = "mqttv5" if protocol == "5" else "mqttv311"
    proc = await asyncio.create_subprocess_exec(
        exe, "-h", broker.host, "-p", str(broker.port), "-V", version,
        "-t", "facegate/v1/+/status", "-v", "-C", "1", "-W", "10",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    topic, _, payload = out.decode().strip().partition(" ")
    return topic, json.loads(payload)


@pytest.mark.mosquitto
@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_mosquitto_sub_sees_retained_online_then_offline(
    mosquitto: MosquittoBroker, tmp_path: Path, protocol: str
) -> None:
    loaded = load(tmp_path, mosquitto, protocol=protocol)
    async with MqttLink.from_config(loaded, clock=SystemClock()) as link:
        await asyncio.wait_for(link.wait_connected(), 10)
        assert link.options.protocol.name == ("V5" if protocol == "5" else "V311")
        topic, body = await _mosquitto_sub_one(mosquitto, protocol)
        assert topic == "facegate/v1/gate-1/status"
        assert body["state"] == "online"
    topic, body = await _mosquitto_sub_one(mosquitto, protocol)
    assert body["state"] == "offline"
