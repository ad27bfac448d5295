"""Routes changed while the link awaits its connect-time SUBACK reach the broker (real Mosquitto).

``subscribe()``/``unsubscribe()`` talk to the broker only once the link is CONNECTED; until
then the connect path subscribes the routes. A change made while that path waits for the
broker's SUBACK must not fall between the two: a command topic added then would be silently
deaf until the next reconnect. :class:`.ackgate.AckGate` holds the SUBACK so the change lands
exactly in that wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
import pytest_asyncio
from facegate.runtime.clock import SystemClock
from facegate.runtime.mqtt import InboundMessage, LinkState, MqttLink

from ..fixtures.brokers import MosquittoBroker
from .ackgate import AckGate
from .util import load, until

pytestmark = pytest.mark.mosquitto

CMD = "facegate/v1/gate-1/cmd"


class Rig:
    """A link connected through an AckGate, stopped while its connect-time SUBACK is held."""

    def __init__(self, link: MqttLink, gate: AckGate, broker: MosquittoBroker) -> None:
        self.link, self.gate, self.broker = link, gate, broker
        self.received: list[str] = []

    async def handler(self, message: InboundMessage) -> None:
        self.received.append(message.topic)

    async def send(self, *topics: str) -> None:
        """Publish on ``topics`` in order from an outside client (the broker keeps that order)."""
        async with aiomqtt.Client(self.broker.host, self.broker.port, identifier="operator") as op:
            for topic in topics:
                await op.publish(topic, b"{}", qos=1)


@pytest_asyncio.fixture
async def held(mosquitto: MosquittoBroker, tmp_path: Path) -> AsyncIterator[Rig]:
    async with AckGate(mosquitto.host, mosquitto.port) as gate:
        loaded = load(tmp_path, mosquitto, host=gate.host, port=gate.port)
        link = MqttLink.from_config(loaded, clock=SystemClock())
        rig = Rig(link, gate, mosquitto)
        await link.subscribe(f"{CMD}/marker", rig.handler)
        await link.subscribe(f"{CMD}/gone", rig.handler)
        gate.hold()
        async with link:
            await asyncio.wait_for(gate.held.wait(), 30)  # the broker has the SUBSCRIBE, the link waits
            assert link.state is LinkState.CONNECTING
            yield rig


@pytest.mark.asyncio
async def test_a_route_added_while_the_suback_is_awaited_receives_messages(held: Rig) -> None:
    await held.link.subscribe(f"{CMD}/late", held.handler)
    held.gate.release()
    await asyncio.wait_for(held.link.wait_connected(), 30)
    await held.send(f"{CMD}/late", f"{CMD}/marker")
    await until(lambda: f"{CMD}/marker" in held.received, within=30)
    # The marker was published after 'late' by the same client: 'late' had its turn first.
    assert held.received == [f"{CMD}/late", f"{CMD}/marker"]


@pytest.mark.asyncio
async def test_a_route_removed_while_the_suback_is_awaited_is_unsubscribed(held: Rig) -> None:
    await held.link.unsubscribe(f"{CMD}/gone")
    held.gate.release()
    await asyncio.wait_for(held.link.wait_connected(), 30)
    await held.send(f"{CMD}/gone", f"{CMD}/marker")
    await until(lambda: f"{CMD}/marker" in held.received, within=30)
    # No handler would run for it anyway; the broker must not keep sending it either.
    assert held.gate.delivered.count(f"{CMD}/gone") == 0
