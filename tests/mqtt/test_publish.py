"""The publish/subscribe API the durable outbox and commands (issue 6) build on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest
from facegate.runtime.clock import SystemClock
from facegate.runtime.mqtt import (
    InboundMessage,
    LinkState,
    MqttLink,
    MqttNotConnected,
    MqttTopicError,
)
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..fixtures.brokers import BrokerHandle, EmbeddedBrokerHandle, MosquittoBroker
from .util import in_flight, load, observe, stopped, until


@pytest.mark.asyncio
async def test_publish_while_offline_raises_not_connected(tmp_path: Path) -> None:
    loaded = load(tmp_path, EmbeddedBrokerHandle(port=1))  # nothing listens on port 1
    link = MqttLink.from_config(loaded, clock=SystemClock())
    with pytest.raises(MqttNotConnected):
        await link.publish("event/access", b"{}")
    async with link:
        await asyncio.sleep(0.2)
        assert link.state is LinkState.RECONNECTING
        with pytest.raises(MqttNotConnected):
            await link.publish("event/access", b"{}")


@pytest.mark.asyncio
@pytest.mark.parametrize("suffix", ["", "event/+", "event/#", "a//b", "/a", "$SYS/x", "a/"])
async def test_bad_topic_suffix_is_a_typed_error(tmp_path: Path, suffix: str) -> None:
    link = MqttLink.from_config(load(tmp_path, EmbeddedBrokerHandle(port=1)), clock=SystemClock())
    with pytest.raises(MqttTopicError):
        await link.publish(suffix, b"x")
    with pytest.raises(MqttTopicError):
        await link.subscribe("cmd/#/x", lambda m: asyncio.sleep(0))


@pytest.mark.asyncio
async def test_publish_qos1_returns_after_puback_and_arrives(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    link = MqttLink.from_config(load(tmp_path, broker), clock=SystemClock())
    async with observe(broker, "facegate/v1/gate-1/event/#") as obs, link:
        await asyncio.wait_for(link.wait_connected(), 10)
        for i in range(20):
            await link.publish("event/access", f'{{"n":{i}}}'.encode(), qos=1)
        await obs.wait_for(lambda s: s.payload == b'{"n":19}')
    got = [s.payload for s in obs.messages if s.topic == "facegate/v1/gate-1/event/access"]
    assert got == [f'{{"n":{i}}}'.encode() for i in range(20)], "order is kept on one topic"


@pytest.mark.asyncio
async def test_a_failing_handler_does_not_kill_the_link(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    good: list[bytes] = []

    async def bad(msg: InboundMessage) -> None:
        raise RuntimeError("handler bug")

    async def ok(msg: InboundMessage) -> None:
        good.append(msg.payload)

    async with MqttLink.from_config(load(tmp_path, broker), clock=SystemClock()) as link:
        await link.subscribe("facegate/v1/gate-1/cmd/bad", bad)
        await link.subscribe("facegate/v1/gate-1/cmd/ok", ok)
        await asyncio.wait_for(link.wait_connected(), 10)
        async with aiomqtt.Client(broker.host, broker.port, identifier="op") as op:
            await op.publish("facegate/v1/gate-1/cmd/bad", b"1", qos=1)
            await op.publish("facegate/v1/gate-1/cmd/ok", b"2", qos=1)
        await until(lambda: bool(good), within=5)
        assert link.state is LinkState.CONNECTED
    assert good == [b"2"]


@pytest.mark.mosquitto
@pytest.mark.asyncio
async def test_connection_lost_before_puback_fails_fast_as_not_connected(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """A frozen broker never acknowledges; when it dies the pending publish fails at once."""
    async with MqttLink.from_config(load(tmp_path, mosquitto), clock=SystemClock()) as link:
        await asyncio.wait_for(link.wait_connected(), 10)
        mosquitto.pause()
        await until(lambda: stopped(mosquitto), within=30)
        pending = asyncio.create_task(
            link.publish("event/access", b"{}", qos=1, ack_timeout=60), name="t.publish"
        )
        await until(lambda: in_flight(link) == 1, within=30)  # handed to the client, unacknowledged
        assert not pending.done(), "no PUBACK can come from a stopped broker"
        await mosquitto.akill()
        async with asyncio.timeout(10):  # far below ack_timeout: loss is detected, not waited out
            with pytest.raises(MqttNotConnected):
                await pending
        assert in_flight(link) == 0, "a failed publish is no longer in flight"


@pytest.mark.mosquitto
@pytest.mark.asyncio
async def test_mqtt5_request_reply_properties_round_trip(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    loaded = load(tmp_path, mosquitto, protocol="5")
    requests: list[InboundMessage] = []

    async with MqttLink.from_config(loaded, clock=SystemClock()) as link:

        async def on_cmd(msg: InboundMessage) -> None:
            requests.append(msg)
            assert msg.response_topic is not None
            await link.publish_to(
                msg.response_topic, b'{"ok":true}', correlation_data=msg.correlation_data
            )

        await link.subscribe("facegate/v1/gate-1/cmd/+", on_cmd)
        await asyncio.wait_for(link.wait_connected(), 10)
        async with aiomqtt.Client(
            mosquitto.host, mosquitto.port, identifier="op", protocol=aiomqtt.ProtocolVersion.V5
        ) as op:
            await op.subscribe("ops/replies", qos=1)
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = "ops/replies"
            props.CorrelationData = b"req-42"
            await op.publish("facegate/v1/gate-1/cmd/ping", b"{}", qos=1, properties=props)
            async with asyncio.timeout(5):
                reply = await anext(aiter(op.messages))
    assert requests[0].correlation_data == b"req-42"
    assert reply.payload == b'{"ok":true}'
    assert reply.properties is not None and reply.properties.CorrelationData == b"req-42"
