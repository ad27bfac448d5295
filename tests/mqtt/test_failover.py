"""mqtt.hosts: a device fails over between broker endpoints, keeps its outbox order, reports the endpoint."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest
from facegate.runtime.bus import EventBus
from facegate.runtime.clock import SystemClock
from facegate.runtime.config import ConfigError, load_config
from facegate.runtime.events import ComponentStateChanged
from facegate.runtime.mqtt import MqttLink
from facegate.runtime.mqtt import link as link_module
from facegate.runtime.mqtt.options import client_options
from facegate.testing import MqttProbe, SimDevice, SimOptions
from facegate.testing.fleet import ExternalBroker
from facegate.testing.netfault import LossyLink

from ..fixtures.brokers import MosquittoBroker, mosquitto_binary
from ..runtime.util import write_config
from .util import load

pytestmark = pytest.mark.mosquitto
DEVICE = '[device]\nid = "d"\nsite = "s"\n'


@pytest.fixture
def two_brokers(tmp_path: Path) -> tuple[MosquittoBroker, MosquittoBroker]:
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    a = MosquittoBroker(binary, tmp_path / "a")
    b = MosquittoBroker(binary, tmp_path / "b")
    a.start()
    b.start()
    yield a, b
    a.close()
    b.close()


@pytest.mark.asyncio
async def test_device_fails_over_keeps_order_and_reports_the_endpoint(
    two_brokers: tuple[MosquittoBroker, MosquittoBroker], tmp_path: Path
) -> None:
    a, b = two_brokers
    hosts = (f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}")
    opts = SimOptions(device_id="gate-f", recognition=False, mqtt_hosts=hosts, telemetry_interval_s=0.3)
    async with (
        MqttProbe(b.host, b.port, protocol="5") as on_b,
        MqttProbe(a.host, a.port, protocol="5") as on_a,
    ):
        async with SimDevice(ExternalBroker(a.host, a.port, "5"), tmp_path / "dev", opts) as dev:
            telemetry = await on_a.expect("telemetry", device="gate-f", timeout=30)
            assert telemetry["endpoint"] == hosts[0]
            await dev.door.open()
            await on_a.expect("event/door", kind="forced", timeout=30)
            await dev.door.close()
            await on_a.expect("event/door", kind="closed", timeout=30)
            await a.akill()  # SIGKILL: the first endpoint is gone
            # Events while the link fails over: the outbox holds them, in order.
            for _ in range(3):
                await dev.door.open()
                await asyncio.sleep(0.4)
                await dev.door.close()
                await asyncio.sleep(0.4)
            telemetry = await on_b.expect("telemetry", device="gate-f", endpoint=hosts[1], timeout=60)
            assert telemetry["endpoint"] == hosts[1]
            await on_b.expect("status", device="gate-f", state="online", timeout=30)
            # Everything published before the kill reached A; what B gets that A never had is
            # new. Wait (de-duplicated by event id) until the 6 new door events are all on B:
            # a re-delivered copy of an earlier event must not count as one of them.
            before = {m.json()["event_id"] for m in on_a.messages if m.suffix == "event/door"}

            def new_on_b() -> list[dict[str, str]]:
                doors: dict[str, dict[str, str]] = {}  # first arrival of each event id
                for m in on_b.messages:
                    if m.suffix == "event/door":
                        doors.setdefault(m.json()["event_id"], m.json())
                return [d for eid, d in doors.items() if eid not in before]

            async with asyncio.timeout(60):
                while len(new_on_b()) < 6:  # noqa: ASYNC110  # a condition on recorded messages
                    await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # nothing further (no 7th event) is expected
            after = new_on_b()
            # At least once: what A acknowledged just before dying may come again through B
            # (mqtt.redeliver_window_s); nothing is lost and the outbox order holds.
            assert [d["kind"] for d in after] == ["forced", "closed"] * 3, after
            doors = {m.json()["event_id"]: m.json() for m in on_b.messages if m.suffix == "event/door"}
            ats = [d["at"] for d in doors.values()]
            assert ats == sorted(ats)
        assert on_b.schema_errors == []


def test_hosts_are_validated(tmp_path: Path) -> None:
    bad = write_config(tmp_path, DEVICE + '[mqtt]\nbroker = "external"\nhosts = ["a:1", "nope"]\n')
    with pytest.raises(ConfigError, match=r"mqtt\.hosts\[1\]"):
        load_config(bad)
    good = write_config(tmp_path, DEVICE + '[mqtt]\nbroker = "external"\nhosts = ["b1:1883", "[::1]:1884"]\n',
                        name="good.toml")
    options = client_options(load_config(good).config.mqtt, device_id="d")
    assert options.all_endpoints == (("b1", 1883), ("::1", 1884))
    assert (options.host, options.port) == ("b1", 1883)
    assert "endpoints=2" in repr(options)


@pytest.mark.asyncio
async def test_a_reset_before_connack_fails_over_within_the_connect_bound(
    two_brokers: tuple[MosquittoBroker, MosquittoBroker], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first endpoint accepts TCP, reads CONNECT and resets before any CONNACK (a broker dying
    mid-handshake). aiomqtt notices nothing until its own timeout; mqtt.connect_timeout_s bounds the
    attempt, so the link fails over to the next endpoint at once."""
    a, b = two_brokers
    # The client's own timeout raised to 600 s: without the bound, the first attempt would hang
    # far beyond the 60 s this test waits for the link to come up on B.
    monkeypatch.setattr(link_module, "client_options", functools.partial(client_options, timeout=600.0))
    async with LossyLink(a.host, a.port) as proxy:
        proxy.reset_handshakes = True
        hosts = [f"{proxy.host}:{proxy.port}", f"{b.host}:{b.port}"]
        loaded = load(tmp_path, a, device_id="gate-r", hosts=hosts, connect_timeout_s=1.0)
        bus = EventBus()
        link = MqttLink.from_config(loaded, clock=SystemClock(), bus=bus)
        async with bus.subscribe(ComponentStateChanged, name="test.link-states", maxsize=64) as states:
            async with link:
                await asyncio.wait_for(link.wait_connected(), 60)
                assert link.endpoint == hosts[1]
            seen = []
            while (ev := states.get_nowait()) is not None:
                seen.append((ev.state, ev.detail))
    assert proxy.handshakes_reset >= 1
    reconnecting = [detail for state, detail in seen if state == "reconnecting"]
    assert reconnecting and "no CONNACK within 1 s" in reconnecting[0], seen
