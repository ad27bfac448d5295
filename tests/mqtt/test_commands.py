"""Signed commands over a real Mosquitto: open, replies (MQTT 5 and 3.1.1), refusals, fuzzing."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from facegate.drivers.gpio import SimulatedGpio, build_driver
from facegate.handlers.commands import CommandService, VerbParts, build_command_service, envelope
from facegate.handlers.door import DoorController
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.config.gpio import GpioSection
from facegate.runtime.config.link import CommandsSection
from facegate.runtime.events import DoorEvent, DoorKind, SecurityEvent, SecurityKind
from facegate.runtime.mqtt import MqttLink
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..fixtures.brokers import MosquittoBroker, mosquitto_client
from .util import load, until

pytestmark = pytest.mark.mosquitto
BASE = "facegate/v1/gate-1"
REPLIES = f"{BASE}/reply/op/1"  # inside the device reply subtree: refusals are answered there too


def pub_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


class Device:
    def __init__(
        self,
        link: MqttLink,
        svc: CommandService,
        gpio: SimulatedGpio,
        door: DoorController,
        security: list[SecurityEvent],
        doors: list[DoorEvent] | None = None,
    ) -> None:
        self.link, self.svc, self.gpio, self.door, self.security = link, svc, gpio, door, security
        self.doors: list[DoorEvent] = doors if doors is not None else []

    @property
    def actuations(self) -> int:
        return self.gpio.actuations(GpioSection().relay_line, to=True)


ALICE = Ed25519PrivateKey.generate()


@pytest_asyncio.fixture
async def device(tmp_path: Path, mosquitto: MosquittoBroker) -> AsyncIterator[Device]:
    clock = SystemClock()
    bus = EventBus()
    link = MqttLink.from_config(load(tmp_path, mosquitto, protocol="5"), clock=clock, bus=bus)
    section = GpioSection()
    gpio = build_driver(section, clock)
    assert isinstance(gpio, SimulatedGpio)
    security: list[SecurityEvent] = []
    async with gpio, link, asyncio.TaskGroup() as tg:
        door = DoorController(section, gpio, bus, clock)
        svc = await build_command_service(
            CommandsSection(operators={"alice": pub_b64(ALICE)}, window_s=30.0),
            link,
            parts=VerbParts(door=door),
            bus=bus,
            clock=clock,
        )

        doors: list[DoorEvent] = []

        async def collect() -> None:
            async with bus.subscribe(SecurityEvent, name="test.security") as sub:
                async for ev in sub:
                    security.append(ev)

        async def collect_doors() -> None:
            async with bus.subscribe(DoorEvent, name="test.doors") as sub:
                async for ev in sub:
                    doors.append(ev)

        tasks = [
            tg.create_task(door.run(), name="test.door"),
            tg.create_task(svc.run(), name="test.commands"),
            tg.create_task(collect(), name="test.collect"),
            tg.create_task(collect_doors(), name="test.collect_doors"),
        ]
        await asyncio.wait_for(link.wait_connected(), 10)
        await asyncio.wait_for(svc.wait_ready(), 5)
        await asyncio.sleep(0.2)  # the SUBSCRIBE reaches the broker
        try:
            yield Device(link, svc, gpio, door, security, doors)
        finally:
            for t in tasks:
                t.cancel()


def now_ms() -> int:
    return int(time.time() * 1000)


def signed(
    verb: str,
    args: dict[str, Any] | None = None,
    *,
    key: Ed25519PrivateKey = ALICE,
    operator: str = "alice",
    **kw: Any,
) -> bytes:
    kw.setdefault("device_id", "gate-1")
    kw.setdefault("ts_ms", now_ms())
    return envelope.encode(envelope.build(verb, args or {}, key=key, operator=operator, **kw))


class Operator:
    """An MQTT 5 client sending commands with a response topic and correlation data."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.n = 0

    async def call(self, verb: str, payload: bytes, within: float = 5.0) -> dict[str, Any]:
        self.n += 1
        corr = str(self.n).encode()
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = REPLIES
        props.CorrelationData = corr
        await self.client.publish(f"{BASE}/cmd/{verb}", payload, qos=1, properties=props)
        async with asyncio.timeout(within):
            async for m in self.client.messages:
                if m.properties is not None and getattr(m.properties, "CorrelationData", None) == corr:
                    assert isinstance(m.payload, bytes)
                    body = json.loads(m.payload)
                    assert isinstance(body, dict)
                    return body
        raise AssertionError("unreachable")


@pytest_asyncio.fixture
async def operator(mosquitto: MosquittoBroker) -> AsyncIterator[Operator]:
    async with aiomqtt.Client(
        mosquitto.host, mosquitto.port, identifier="op", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(REPLIES, qos=1)
        yield Operator(client)


@pytest.mark.asyncio
async def test_signed_open_actuates_and_replies_on_response_topic(device: Device, operator: Operator) -> None:
    opened = signed("open")
    reply = await operator.call("open", opened)
    assert reply["ok"] is True and reply["code"] == "ok", reply
    assert device.actuations == 1
    # The door event names the command once: ``command:<nonce>`` (not command:command:...).
    nonce = json.loads(opened)["nonce"]
    await until(lambda: any(e.kind is DoorKind.UNLOCKED for e in device.doors), within=10)
    assert [e.cause for e in device.doors if e.kind is DoorKind.UNLOCKED] == [f"command:{nonce}"]
    assert (await operator.call("lockdown", signed("lockdown")))["ok"]
    refused = await operator.call("open", signed("open"))
    assert refused["code"] == "locked_down" and device.actuations == 1
    assert (await operator.call("release", signed("release")))["ok"]


@pytest.mark.asyncio
async def test_bad_commands_are_refused_without_actuation(device: Device, operator: Operator) -> None:
    mallory = Ed25519PrivateKey.generate()
    replayed = signed("open")
    cases = {
        "bad_signature": signed("open", key=mallory),
        "unknown_operator": signed("open", key=mallory, operator="mallory"),
        "wrong_device": signed("open", device_id="gate-2"),
        "stale": signed("open", ts_ms=now_ms() - 120_000),
        "unsigned": envelope.encode(envelope.build("open", {}, device_id="gate-1", ts_ms=now_ms())),
        "verb_mismatch": signed("lockdown"),
    }
    for code, payload in cases.items():
        reply = await operator.call("open", payload)
        assert reply["ok"] is False and reply["code"] == code, (code, reply)
    assert device.actuations == 0
    first = await operator.call("open", replayed)
    assert first["ok"] is True and "replayed" not in first
    # A retry of the same signed command replays its result (issue 10.10) ...
    again = await operator.call("open", replayed)
    assert again["ok"] is True and again["replayed"] is True and again["code"] == "ok"
    # ... but a DIFFERENT envelope reusing the nonce is still a replay.
    nonce = json.loads(replayed)["nonce"]
    reused = await operator.call("open", signed("open", nonce=nonce, ts_ms=now_ms() + 1))
    assert reused["code"] == "replay" and "replayed" not in reused
    assert device.actuations == 1

    def rejected() -> list[SecurityEvent]:
        return [e for e in device.security if e.kind is SecurityKind.COMMAND_REJECTED]

    await until(lambda: len(rejected()) >= len(cases) + 1, within=60)  # the collector task copies them
    assert len(rejected()) == len(cases) + 1


def _fuzz_payloads() -> list[bytes]:
    """Hypothesis-generated hostile payloads, collected once (deterministic, no database)."""
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )
    envelope_like = st.fixed_dictionaries(
        {"verb": st.sampled_from(["open", "lockdown", "set", "ping", "erase", 7, None])},
        optional={
            "v": json_values,
            "device_id": st.sampled_from(["gate-1", "gate-2", 3]),
            "ts": json_values,
            "nonce": json_values,
            "operator": st.sampled_from(["alice", "x", 1]),
            "args": json_values,
            "sig": st.text(max_size=90),
            "reply_to": st.sampled_from(["facegate/v1/gate-1/status", "#", "ok/x"]),
        },
    )
    strategy = st.one_of(
        st.binary(max_size=200),
        # Oversized: hypothesis cannot draw a megabyte, so it draws the size and a seed byte.
        st.tuples(st.integers(1_048_577, 1_100_000), st.binary(min_size=1, max_size=1)).map(
            lambda t: b'{"verb":"open","pad":"' + t[1] * t[0] + b'"}'
        ),
        json_values.map(lambda v: json.dumps(v).encode()),
        envelope_like.map(lambda v: json.dumps(v).encode()),
        st.text(max_size=50).map(lambda t: t.encode("utf-16")),
    )
    out: list[bytes] = []

    @given(strategy)
    @settings(max_examples=120, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def collect(p: bytes) -> None:
        out.append(p)

    collect()
    return out


@pytest.mark.asyncio
async def test_fuzzed_payloads_get_error_replies_and_never_actuate(
    device: Device, operator: Operator
) -> None:
    payloads = _fuzz_payloads()
    assert any(len(p) > 1_048_576 for p in payloads)
    codes: dict[str, int] = {}
    for p in payloads:
        reply = await operator.call("open", p)
        if reply["ok"]:  # only a genuine unsigned ping may succeed
            assert reply["verb"] == "ping"
        codes[reply["code"]] = codes.get(reply["code"], 0) + 1
    assert device.actuations == 0
    assert device.door.locked_down is False
    assert {"bad_json", "not_utf8"} & set(codes), codes


@pytest.mark.asyncio
async def test_mqtt311_reply_to_with_mosquitto_clients(device: Device, mosquitto: MosquittoBroker) -> None:
    sub_bin, pub_bin = mosquitto_client("mosquitto_sub"), mosquitto_client("mosquitto_pub")
    if sub_bin is None or pub_bin is None:
        pytest.skip("mosquitto clients not installed")
    port = str(mosquitto.port)
    pub = [pub_bin, "-h", mosquitto.host, "-p", port, "-V", "mqttv311", "-q", "1"]
    # mosquitto_sub says nothing when its SUBSCRIBE is acknowledged, and a reply sent
    # before that is lost. So it also subscribes to a retained marker: the broker sends
    # the marker only once both filters are in place, then the command goes out.
    ready = "ops/alice-ready"
    await asyncio.to_thread(subprocess.run, [*pub, "-r", "-t", ready, "-m", "1"], check=True)
    sub = await asyncio.create_subprocess_exec(
        sub_bin, "-h", mosquitto.host, "-p", port, "-V", "mqttv311", "-q", "1", "-v",
        "-t", "ops/alice", "-t", ready, "-C", "2", "-W", "120",
        stdout=asyncio.subprocess.PIPE,
    )
    assert sub.stdout is not None
    try:
        first = await asyncio.wait_for(sub.stdout.readline(), 60)
        assert first.decode().split(" ")[0] == ready, first
        payload = signed("open", reply_to="ops/alice", correlation_id="c-77")
        cmd = [*pub, "-t", f"{BASE}/cmd/open", "-s"]
        await asyncio.to_thread(subprocess.run, cmd, input=payload, check=True)
        line = await asyncio.wait_for(sub.stdout.readline(), 60)
    finally:
        if sub.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                sub.kill()
        await sub.wait()
        await asyncio.to_thread(subprocess.run, [*pub, "-r", "-n", "-t", ready], check=True)
    topic, _, body = line.decode().partition(" ")
    assert topic == "ops/alice", line
    reply = json.loads(body)
    assert reply["correlation_id"] == "c-77" and reply["ok"] is True and reply["verb"] == "open"
    assert device.actuations == 1
