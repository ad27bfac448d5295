"""Anti-passback across readers: this device follows a peer's GRANTED event/access over MQTT."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest
from facegate.handlers.access import AntiPassback, PeerPassages
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.mqtt import MqttLink

from ..fixtures.brokers import MosquittoBroker
from .util import load

pytestmark = pytest.mark.mosquitto


@pytest.mark.asyncio
async def test_peer_exit_reader_resets_the_entry_direction(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    link = MqttLink.from_config(load(tmp_path, mosquitto), clock=SystemClock(), bus=EventBus())
    passback = AntiPassback("hard", 3600.0, SystemClock())
    passback.record("emp-7", "entry")  # entered through this device
    peers = PeerPassages(passback, {"gate-exit": "exit"}, link)
    async with link, asyncio.TaskGroup() as tg:
        await asyncio.wait_for(link.wait_connected(), 30)
        task = tg.create_task(peers.run(), name="test.peers")
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="peer") as peer:
            topic = "facegate/v1/gate-exit/event/access"
            # Until the peer subscription is live at the broker, resend; noise never counts.
            async with asyncio.timeout(30):
                while peers.recorded == 0:
                    await peer.publish(topic, b"{not json", qos=1)
                    denied = {"decision": "denied", "subject_id": "emp-8"}
                    await peer.publish(topic, json.dumps(denied).encode(), qos=1)
                    granted = {"decision": "granted", "subject_id": "emp-7"}
                    await peer.publish(topic, json.dumps(granted).encode(), qos=1)
                    await asyncio.sleep(0.2)
        task.cancel()
    assert not passback.repeats("emp-7", "entry")  # the exit reset it: entering again is fine
    assert passback.repeats("emp-7", "exit")
    assert not passback.repeats("emp-8", "exit"), "a denied decision is not a passage"
