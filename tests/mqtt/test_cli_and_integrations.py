"""``facegate operator keygen``, ``facegate cmd``, ``facegate fleet watch`` against a device on
Mosquitto; telemetry metric fields; event names only when config turns them on; HA discovery."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
import pytest_asyncio
from facegate.drivers.gpio import SimulatedGpio
from facegate.handlers.commands import first_error
from facegate.handlers.reporting.codec import EventCodec, decode
from facegate.handlers.reporting.homeassistant import HomeAssistantDiscovery, lock_config_topic
from facegate.handlers.reporting.metrics import LinkMetrics
from facegate.runtime.app.cli.cmd_cmd import load_key
from facegate.runtime.app.device import Device
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import ManualClock, SystemClock
from facegate.runtime.config import load_config
from facegate.runtime.events import FrameCaptured
from facegate.runtime.health import HealthMonitor
from facegate.runtime.mqtt import MqttLink
from facegate.storage import EventClass, Store

from ..fixtures.brokers import MosquittoBroker
from .device_util import KEK_ENV, device_config, fresh_kek
from .durable_util import access, kek_source, open_store
from .util import load, observe, status_is, until

pytestmark = pytest.mark.mosquitto
CLI = [sys.executable, "-m", "facegate.runtime.app.cli"]


async def run_cli(*args: str, within: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest_asyncio.fixture
async def operator_key(tmp_path: Path) -> AsyncIterator[Path]:
    key = tmp_path / "alice.key"
    code, out, _ = await run_cli("operator", "keygen", "alice", "--out", str(key))
    assert code == 0 and "[commands.operators]" in out and 'alice = "' in out
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again, _, err = await run_cli("operator", "keygen", "alice", "--out", str(key))
    assert again == 2 and "refusing to overwrite" in err
    yield key


@pytest_asyncio.fixture
async def device(
    tmp_path: Path, mosquitto: MosquittoBroker, operator_key: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Device]:
    monkeypatch.setenv(KEK_ENV, fresh_kek())
    cfg = device_config(
        tmp_path,
        mosquitto,
        operators={"alice": load_key(operator_key)},
        cache_dir=None,
        recognition=False,
        extra="[homeassistant]\ndiscovery = true\nlock = true\n",
    )
    async with Device(load_config(cfg), handle_signals=False) as dev:
        assert dev.parts.mqtt is not None and dev.parts.mqtt.commands is not None
        await asyncio.wait_for(dev.parts.mqtt.commands.wait_ready(), 30)
        await asyncio.wait_for(dev.parts.mqtt.link.wait_connected(), 30)
        await asyncio.sleep(0.3)
        yield dev
        dev.request_shutdown("test over")


@pytest.mark.asyncio
async def test_cmd_client_signs_sends_and_prints_the_reply(
    device: Device, mosquitto: MosquittoBroker, operator_key: Path, tmp_path: Path
) -> None:
    broker = f"{mosquitto.host}:{mosquitto.port}"
    gpio = device.parts.gpio
    assert isinstance(gpio, SimulatedGpio)
    before = gpio.actuations(17, to=True)
    code, out, err = await run_cli(
        "cmd", "open", "--key", str(operator_key), "--broker", broker, "--device", "gate-1"
    )
    assert code == 0, err
    reply = json.loads(out)
    assert reply["ok"] is True and reply["verb"] == "open" and first_error("reply", reply) is None
    assert gpio.actuations(17, to=True) == before + 1

    code, out, _ = await run_cli("cmd", "ping", "--broker", broker, "--protocol", "3.1.1")
    assert code == 0 and json.loads(out)["result"]["pong"] is True

    stranger = tmp_path / "mallory.key"
    await run_cli("operator", "keygen", "mallory", "--out", str(stranger))
    code, out, _ = await run_cli("cmd", "open", "--key", str(stranger), "--broker", broker)
    assert code == 1 and json.loads(out)["code"] == "unknown_operator"
    assert gpio.actuations(17, to=True) == before + 1  # type: ignore[attr-defined]  # refused: no actuation

    code, out, _ = await run_cli(
        "cmd", "keys/rotate", "--key", str(operator_key), "--broker", broker, "--protocol", "3.1.1"
    )
    assert code == 1 and json.loads(out)["code"] == "not_supported_while_running"
    code, _, err = await run_cli("cmd", "open", "--broker", broker)
    assert code == 2 and "needs --key" in err


@pytest.mark.asyncio
async def test_fleet_watch_shows_the_device(device: Device, mosquitto: MosquittoBroker) -> None:
    env_cols = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "200"
    try:
        code, out, err = await run_cli(
            "fleet", "watch", "--broker", f"{mosquitto.host}:{mosquitto.port}", "--seconds", "2"
        )
    finally:
        if env_cols is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = env_cols
    assert code == 0, err
    assert "gate-1" in out and "online" in out, out


@pytest.mark.asyncio
async def test_homeassistant_discovery_retained_lock_only_with_a_bridge(
    device: Device, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    # The device has lock = true but no lock_bridge: no lock entity, sensors only.
    assert device.parts.mqtt is not None and device.parts.mqtt.homeassistant is not None
    ha: HomeAssistantDiscovery = device.parts.mqtt.homeassistant
    await until(lambda: ha.published_for > 0, within=15)
    async with observe(mosquitto, "homeassistant/#", client_id="ha") as obs:  # joins late: retained only
        await obs.wait_for(lambda s: s.topic.endswith("outbox_backlog/config"))
        await obs.settle()  # every retained config has arrived
    topics = {m.topic for m in obs.messages}
    assert all(m.retain for m in obs.messages)
    assert not any("/lock/" in t for t in topics), topics
    for m in obs.messages:
        config = m.json()
        assert config["availability_topic"] == "facegate/v1/gate-1/status"
        assert config["availability_template"] == "{{ value_json.state }}"
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")

    # A second device: a lock discovered earlier is removed when no bridge is configured,
    # and published (commanding a topic that is not cmd/) when one is.
    (tmp_path / "b").mkdir()
    link = MqttLink.from_config(
        load(tmp_path / "b", mosquitto, device_id="gate-2"), clock=SystemClock(), bus=EventBus()
    )
    stale = lock_config_topic(link.topics)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="seed") as seed:
        await seed.publish(stale, b'{"name": "old lock"}', qos=1, retain=True)
    async with link, asyncio.TaskGroup() as tg:
        for lock in (False, True):
            ha2 = HomeAssistantDiscovery(link, clock=SystemClock(), prefix="homeassistant", lock=lock)
            task = tg.create_task(ha2.run(), name="test.ha")
            await until(lambda h=ha2: h.published_for > 0, within=15)  # bound per loop
            task.cancel()
            async with observe(mosquitto, "homeassistant/lock/#", client_id=f"ha-{lock}") as obs2:
                await obs2.settle()  # the retained configs, sent on subscribe, have arrived
            retained = [m for m in obs2.messages if m.topic == stale and m.payload]
            if not lock:
                assert retained == [], "without a bridge the lock entity must be absent"
            else:
                config = retained[0].json()
                assert retained[0].retain and config["command_topic"] == "facegate/v1/gate-2/ha/lock/set"
                assert config["availability_topic"] == "facegate/v1/gate-2/status"
    # Availability follows status: the link's clean offline makes the entities unavailable.
    async with observe(mosquitto, "facegate/v1/gate-2/status", client_id="ha3") as obs3:
        await obs3.wait_for(status_is("offline", "facegate/v1/gate-2/status"))


TELEMETRY_KEYS = [  # the payload's keys and their order, as before issue 9.4 composed it from health()
    "device_id", "version", "started_at", "uptime_s", "tasks", "restarts", "queues", "bus_published",
    "frames_dropped", "sources", "fps", "latency_ms", "outbox_backlog", "gallery_size",
]


@pytest.mark.asyncio
async def test_metrics_fill_the_telemetry_contract_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_store(tmp_path / "gate.db", kek_source(monkeypatch)) as store:
        await _metrics_fill_the_contract_fields(store)


async def _metrics_fill_the_contract_fields(store: Store) -> None:
    clock = ManualClock()
    bus = EventBus()
    for i in range(7):
        await store.outbox.append(f"facegate/v1/gate-1/event/access/{i}", b"{}", klass=EventClass.ACCESS)
    metrics = LinkMetrics(bus, clock, outbox=store.outbox)
    health = HealthMonitor(clock=clock, bus=bus, device_id="gate-1")
    health.register("door", lambda: {"state": "locked"})
    health.include(metrics.health)
    for seq in range(0, 31):  # 30 frames over 2 s on one source
        frame = np.zeros((4, 4, 3), np.uint8)
        metrics.on_frame(
            FrameCaptured(at=clock.wall(), image=frame, seq=seq, source="colour", monotonic=clock.monotonic())
        )
        await clock.advance(1 / 15)
    metrics.on_access(access(1))
    metrics.on_access(access(2))
    body = health.snapshot()
    assert list(body) == TELEMETRY_KEYS
    assert body["uptime_s"] == round(31 / 15, 3) and body["sources"] == {"door": {"state": "locked"}}
    assert body["fps"]["colour"] == pytest.approx(15.0, rel=0.05)
    assert set(body["latency_ms"]) == {"detect", "embed", "decision"}
    assert body["latency_ms"]["detect"] == 12.0 and body["latency_ms"]["decision"] == 80.0
    assert body["outbox_backlog"] == 7 and body["gallery_size"] == 7
    assert LinkMetrics(bus, clock).health()["outbox_backlog"] == 0  # no store: nothing waits


def test_event_names_only_when_config_turns_them_on() -> None:
    def names(subject_id: str) -> str | None:
        return {"s-1": "Ada Example"}.get(subject_id)

    ev = access(1)  # subject s-1
    off = decode(EventCodec("gate-1", include_names=False, names=names).encode(ev).payload)
    assert "name" not in off and "Ada" not in json.dumps(off)
    on = decode(EventCodec("gate-1", include_names=True, names=names).encode(ev).payload)
    assert on["name"] == "Ada Example" and on["subject_id"] == "s-1"
    no_resolver = decode(EventCodec("gate-1", include_names=True).encode(ev).payload)
    assert "name" not in no_resolver
    assert first_error("event_access", off) is None
