"""No MQTT password in logs or payloads; the embedded broker's guard rails."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import pytest
import structlog
from facegate.runtime.clock import SystemClock
from facegate.runtime.config import ConfigError, load_config
from facegate.runtime.logs import configure_logging
from facegate.runtime.mqtt import EmbeddedBroker, EmbeddedBrokerError, LinkState, MqttLink

from ..fixtures.brokers import BrokerHandle, free_port
from .util import load, observe, until

PASSWORD = "s3cret-Passw0rd-xyz"


@pytest.fixture
def captured_logs() -> io.StringIO:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    mqtt_logger = logging.getLogger("mqtt")  # aiomqtt/paho protocol log
    configure_logging(device_id="gate-1", level="debug", fmt="json", stream=stream)
    mqtt_logger.setLevel(logging.DEBUG)
    yield stream
    mqtt_logger.setLevel(logging.NOTSET)
    root.handlers[:], root.level = saved[0], saved[1]
    structlog.reset_defaults()


@pytest.mark.asyncio
async def test_password_never_reaches_logs_or_payloads(
    broker: BrokerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    captured_logs: io.StringIO,
) -> None:
    monkeypatch.setenv("FG_TEST_MQTT_PASSWORD", PASSWORD)
    loaded = load(
        tmp_path, broker, username="gate-1", password={"env": "FG_TEST_MQTT_PASSWORD"},
        reconnect_min_s=0.05, reconnect_max_s=0.1,
    )
    assert loaded.config.mqtt.password is not None
    async with observe(broker, "#") as obs:
        link = MqttLink.from_config(loaded, clock=SystemClock())
        assert PASSWORD not in repr(link.options)
        async with link:
            await asyncio.wait_for(link.wait_connected(), 10)
            # A failure path too: errors and retries are logged with details.
            await broker.astop()
            await until(lambda: link.state is LinkState.RECONNECTING)
            await asyncio.sleep(0.3)
            await broker.astart()
            await asyncio.wait_for(link.wait_connected(), 10)
            structlog.get_logger("facegate.test").info("probe", mqtt_password=PASSWORD)
    out = captured_logs.getvalue()
    assert "mqtt.link.state" in out and "reconnecting" in out, "logging was captured"
    assert "probe" in out
    assert PASSWORD not in out
    assert all(PASSWORD.encode() not in s.payload for s in obs.messages)


def test_embedded_config_must_be_loopback(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[device]\nid = "gate-1"\n[mqtt]\nbroker = "embedded"\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "mqtt.host"
    with pytest.raises(EmbeddedBrokerError):
        EmbeddedBroker("0.0.0.0", 1883)


@pytest.mark.asyncio
async def test_embedded_broker_port_zero_and_port_in_use() -> None:
    async with EmbeddedBroker("127.0.0.1", 0) as first:
        assert first.port > 0 and first.running
        with pytest.raises(EmbeddedBrokerError, match=str(first.port)):
            await EmbeddedBroker("127.0.0.1", first.port).start()
    assert not first.running


@pytest.mark.asyncio
async def test_embedded_broker_as_a_service_with_the_link(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "demo.toml"
    path.write_text(
        f'[device]\nid = "gate-1"\n[mqtt]\nbroker = "embedded"\nport = {port}\nprotocol = "5"\n'
    )
    loaded = load_config(path)
    broker = EmbeddedBroker(loaded.config.mqtt.host, port)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(broker.run(), name="mqtt.broker")
        link = MqttLink.from_config(loaded, clock=SystemClock())
        async with link:
            await asyncio.wait_for(link.wait_connected(), 10)
            assert link.options.protocol.name == "V311", "amqtt speaks 3.1.1 only"
        task.cancel()
    assert not broker.running
