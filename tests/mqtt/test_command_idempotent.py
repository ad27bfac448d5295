"""Issue 10.10: a retried actuating command replays its result and never actuates twice.

Real Mosquitto, real SQLite store (the ledger is ``storage.CommandResults``),
simulated GPIO lines (the lowest seam). The retry after a device restart
within the command window is answered from the database, not by the relay.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from facegate.drivers.gpio import SimulatedGpio, build_driver
from facegate.handlers.commands import VerbParts, build_command_service
from facegate.handlers.door import DoorController
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.config.gpio import GpioSection
from facegate.runtime.config.link import CommandsSection
from facegate.runtime.mqtt import MqttLink
from facegate.storage import KekSource, KekSourceKind, Store
from facegate.storage.crypto import new_key
from facegate.storage.kek import encode_key
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..fixtures.brokers import MosquittoBroker
from .test_commands import ALICE, BASE, REPLIES, now_ms, pub_b64, signed
from .util import load

pytestmark = pytest.mark.mosquitto


@asynccontextmanager
async def running_device(
    tmp_path: Path, mosquitto: MosquittoBroker, kek: KekSource
) -> AsyncIterator[SimulatedGpio]:
    """One device life: store + link + door + command service; yields its GPIO."""
    clock = SystemClock()
    bus = EventBus()
    link = MqttLink.from_config(load(tmp_path, mosquitto, protocol="5"), clock=clock, bus=bus)
    section = GpioSection()
    gpio = build_driver(section, clock)
    assert isinstance(gpio, SimulatedGpio)
    async with Store(tmp_path / "dev.db", kek, clock=clock) as store, gpio, link, asyncio.TaskGroup() as tg:
        door = DoorController(section, gpio, bus, clock)
        svc = await build_command_service(
            CommandsSection(operators={"alice": pub_b64(ALICE)}, window_s=60.0),
            link,
            parts=VerbParts(door=door),
            bus=bus,
            clock=clock,
            nonce_store=store.kv,
            result_store=store.command_results,
        )
        tasks = [
            tg.create_task(door.run(), name="test.door"),
            tg.create_task(svc.run(), name="test.commands"),
        ]
        await asyncio.wait_for(link.wait_connected(), 10)
        await asyncio.wait_for(svc.wait_ready(), 5)
        await asyncio.sleep(0.2)  # the SUBSCRIBE reaches the broker
        try:
            yield gpio
        finally:
            for t in tasks:
                t.cancel()


async def call(mosquitto: MosquittoBroker, verb: str, payload: bytes, corr: bytes) -> dict[str, Any]:
    async with aiomqtt.Client(
        mosquitto.host, mosquitto.port, identifier=f"op-{corr.decode()}", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(REPLIES, qos=1)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = REPLIES
        props.CorrelationData = corr
        await client.publish(f"{BASE}/cmd/{verb}", payload, qos=1, properties=props)
        async with asyncio.timeout(15):
            async for m in client.messages:
                if m.properties is not None and getattr(m.properties, "CorrelationData", None) == corr:
                    assert isinstance(m.payload, bytes)
                    body = json.loads(m.payload)
                    assert isinstance(body, dict)
                    return body
    raise AssertionError("unreachable")


def relay_pulses(gpio: SimulatedGpio) -> int:
    return gpio.actuations(GpioSection().relay_line, to=True)


@pytest.mark.asyncio
@pytest.mark.timeout(90)
async def test_retry_replays_result_without_second_actuation_even_after_restart(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEGATE_TEST_KEK", encode_key(new_key()))
    kek = KekSource(kind=KekSourceKind.ENV, env="FACEGATE_TEST_KEK")
    opened = signed("open")
    async with running_device(tmp_path, mosquitto, kek) as gpio:
        first = await call(mosquitto, "open", opened, b"1")
        assert first["ok"] is True and first["code"] == "ok" and "replayed" not in first
        assert relay_pulses(gpio) == 1
        retry = await call(mosquitto, "open", opened, b"2")
        assert retry["replayed"] is True and retry["ok"] is True and retry["code"] == "ok"
        assert retry["result"] == first["result"] and retry["verb"] == "open"
        assert relay_pulses(gpio) == 1
    # The device restarts (new process state, same database) inside the time window.
    async with running_device(tmp_path, mosquitto, kek) as gpio:
        after = await call(mosquitto, "open", opened, b"3")
        assert after["replayed"] is True and after["ok"] is True and after["result"] == first["result"]
        assert relay_pulses(gpio) == 0
        # The ledger is per signed command: a fresh one still actuates, and a
        # different envelope reusing the nonce is refused as a replay.
        nonce = json.loads(opened)["nonce"]
        reused = await call(mosquitto, "open", signed("open", nonce=nonce, ts_ms=now_ms() + 5), b"4")
        assert reused["code"] == "replay" and relay_pulses(gpio) == 0
        fresh = await call(mosquitto, "open", signed("open"), b"5")
        assert fresh["ok"] is True and "replayed" not in fresh
        assert relay_pulses(gpio) == 1
